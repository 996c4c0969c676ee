"""The client's errors: one flat hierarchy under :class:`CensusAPIError`, each ``str()`` one log-ready line.

Messages name the endpoint template, the host and the cause, never a URL with credentials or a query, and
never the token. Raised by :mod:`census_exporter.census.client` and the layers beneath it.
"""

from __future__ import annotations


class CensusAPIError(Exception):
    """A request that did not produce usable data. ``str()`` is one log-ready line."""

    def __init__(self, endpoint: str, detail: str, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        super().__init__(f"GET {endpoint}: {detail}")


class AuthError(CensusAPIError):
    """401 or 403: the token is wrong, expired or lacks access. Never retried."""


class ForbiddenError(AuthError):
    """403: the token is valid but may not read this resource (a workspace whose key its user cannot read).

    An :class:`AuthError` like any rejection, so callers that stop on a rejected token still do; discovery
    catches it first to skip the one workspace and keep the others.
    """


class NotFoundError(CensusAPIError):
    """404: the resource is gone (a deleted sync or run)."""


class MalformedResponseError(CensusAPIError):
    """The body was not the JSON envelope the API documents."""


class TransientError(CensusAPIError):
    """429, 5xx, timeout or connection failure that outlasted the retries or the deadline."""


class ResponseTooLargeError(CensusAPIError):
    """The body (declared, on the wire or decompressed) exceeded ``max_response_bytes``. Never retried."""


class UnsupportedCallError(CensusAPIError):
    """The call does not exist in this client's dialect (``list_groups`` on V1); raised before any request."""
