"""The exporter's WSGI app: ``/metrics`` (or the configured path), ``/``, ``/healthz`` and ``/readyz``.

A scrape asks the fleet of watched workspaces for a view within its budget (Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds`` header, or 10 s, minus a safety margin and minus the time the
request already waited), then serves it in the format the ``Accept`` header asks for
(:mod:`census_exporter.http.negotiation`), gzipped when the client accepts it: the Census families rendered
once per view (:mod:`census_exporter.http.view_cache`), followed by the exporter's own metrics rendered
fresh. Authentication and failures are the guard's (:mod:`census_exporter.http.guard`), the listener the
server's (:mod:`census_exporter.http.server`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from census_exporter.collector import CensusCollector
from census_exporter.http.negotiation import OPENMETRICS_ACCEPT, accepts_gzip, canonical_accept
from census_exporter.http.view_cache import ViewRendering
from census_exporter.http.wsgi import REQUEST_ARRIVED_KEY, StartResponse
from census_exporter.landing import render_landing_page
from census_exporter.refresh.fleet import Fleet
from census_exporter.rendering import RenderedFamilies

DEFAULT_SCRAPE_TIMEOUT_SECONDS = 10.0
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0
# Left for rendering and sending, and for a loaded machine: 0.5 s, or 10% of long timeouts.
MIN_SCRAPE_MARGIN_SECONDS = 0.5
SCRAPE_MARGIN_SHARE = 0.1


def scrape_budget(header: str | None, elapsed_seconds: float = 0.0) -> float:
    """Seconds a scrape may still wait for fresh data.

    The scrape timeout is Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds`` header (10 s without
    one, and at most an hour: longer waits are no scrape, and past ``threading.TIMEOUT_MAX`` no wait at
    all); the budget keeps a margin of max(0.5 s, 10%) of it and subtracts ``elapsed_seconds``, the time
    since the request arrived, so the answer leaves before Prometheus gives up.
    """
    timeout = DEFAULT_SCRAPE_TIMEOUT_SECONDS
    if header:
        try:
            value = float(header)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            timeout = min(value, MAX_SCRAPE_TIMEOUT_SECONDS)
    margin = max(MIN_SCRAPE_MARGIN_SECONDS, SCRAPE_MARGIN_SHARE * timeout)
    return max(0.0, timeout - margin - max(0.0, elapsed_seconds))


class ExporterApp:
    """The WSGI application."""

    def __init__(
        self,
        fleet: Fleet,
        collector: CensusCollector,
        registry: CollectorRegistry,
        telemetry_path: str,
        *,
        cache_ttl_seconds: float | None = None,
        own_metrics: Callable[[], RenderedFamilies] = RenderedFamilies,
        demo: bool = False,
    ) -> None:
        self._fleet = fleet
        self._demo = demo
        self._census = ViewRendering(collector)
        self._registry = registry
        self._own_metrics = own_metrics
        self._telemetry_path = telemetry_path
        self._cache_ttl_seconds = cache_ttl_seconds

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"method not allowed\n")
        if path == self._telemetry_path:
            return self._metrics(environ, start_response)
        if path == "/healthz":
            return _respond(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if self._fleet.ready:
                return _respond(start_response, "200 OK", b"ready\n")
            return _respond(start_response, "503 Service Unavailable", b"first refresh pending\n")
        if path == "/":
            # A person watching the page (make demo has no Prometheus) sees it move; the refreshes run in
            # the background under the same TTL and single flight as a scrape's, so this costs no more.
            self._fleet.trigger()
            return _respond(
                start_response,
                "200 OK",
                render_landing_page(
                    self._fleet.view,
                    self._telemetry_path,
                    cache_ttl_seconds=self._cache_ttl_seconds,
                    demo=self._demo,
                ),
                "text/html; charset=utf-8",
            )
        return _respond(start_response, "404 Not Found", b"not found\n")

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrived = environ.get(REQUEST_ARRIVED_KEY) or time.monotonic()
        budget = scrape_budget(
            environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"), time.monotonic() - arrived
        )
        view = self._fleet.view_within(max(0.0, budget - self._census.render_seconds))
        accept = canonical_accept(environ.get("HTTP_ACCEPT", ""))
        encoder, content_type = choose_encoder(accept)
        compress = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        openmetrics = accept == OPENMETRICS_ACCEPT
        # Census data from the per-view cache, then the exporter's own metrics (its API requests and request
        # budget, then the process's from the registry), as they are now.
        own = [*self._own_metrics().chunks(openmetrics), encoder(self._registry)]
        chunks = self._census.body(view, openmetrics, b"".join(own), compress)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(chunk) for chunk in chunks))))
        start_response("200 OK", headers)
        return chunks


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
