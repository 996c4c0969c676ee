"""The exporter's own API instrumentation: ``census_api_requests_total`` and
``census_api_request_duration_seconds``.

Unlike the proxied Census data (rendered by :mod:`census_exporter.collector`), these describe the exporter's
own activity, so ordinary client_python Counter and Histogram objects are the right tool.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiRequestMetrics:
    """Counts and times every HTTP attempt the client makes (it implements ``RequestObserver``)."""

    def __init__(self, registry: CollectorRegistry, workspace: str) -> None:
        self._workspace = workspace
        self._requests = Counter(
            "census_api_requests_total",
            "HTTP requests made to the Census API, by endpoint template and response code "
            "(or timeout / connection_error).",
            ["workspace", "endpoint", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "census_api_request_duration_seconds",
            "Latency of HTTP requests to the Census API, by endpoint template.",
            ["workspace", "endpoint"],
            buckets=REQUEST_DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        """Record one attempt."""
        self._requests.labels(self._workspace, endpoint, code).inc()
        self._duration.labels(self._workspace, endpoint).observe(seconds)
