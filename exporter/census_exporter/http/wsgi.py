"""The WSGI vocabulary the HTTP modules share: the callable types and the environ keys the listener adds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

REQUEST_ARRIVED_KEY = "census_exporter.request_arrived"
#: True in the environ when the listener's body cap (``ServerLimits.max_body_bytes``) refuses the body.
BODY_OVER_CAP_KEY = "census_exporter.body_over_cap"
