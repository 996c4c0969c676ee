"""The exporter's own API instrumentation: ``census_api_requests_total`` and
``census_api_request_duration_seconds``, one set of series per workspace.

Unlike the proxied Census data (rendered by :mod:`census_exporter.collector`), these describe the exporter's
own activity, so ordinary client_python Counter and Histogram objects are the right tool.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiRequestMetrics:
    """The two API metric families; :meth:`observer` gives each workspace's client its own view."""

    def __init__(self, registry: CollectorRegistry) -> None:
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
        self._lock = threading.Lock()
        #: The (endpoint, code) and endpoint label values seen per workspace, so they can be removed.
        self._seen: dict[str, tuple[set[tuple[str, str]], set[str]]] = {}

    def observer(self, workspace: str) -> WorkspaceRequestObserver:
        """What one workspace's client reports its requests to (it implements ``RequestObserver``)."""
        return WorkspaceRequestObserver(self, workspace)

    def _record(self, observer: WorkspaceRequestObserver, endpoint: str, code: str, seconds: float) -> None:
        # Under the lock, so a request ending while its workspace is removed cannot bring its series back.
        with self._lock:
            if observer.closed:
                return
            codes, endpoints = self._seen.setdefault(observer.workspace, (set(), set()))
            codes.add((endpoint, code))
            endpoints.add(endpoint)
            self._requests.labels(observer.workspace, endpoint, code).inc()
            self._duration.labels(observer.workspace, endpoint).observe(seconds)

    def _forget(self, observer: WorkspaceRequestObserver) -> None:
        with self._lock:
            observer.closed = True
            codes, endpoints = self._seen.pop(observer.workspace, (set(), set()))
            for endpoint, code in codes:
                self._requests.remove(observer.workspace, endpoint, code)
            for endpoint in endpoints:
                self._duration.remove(observer.workspace, endpoint)


class WorkspaceRequestObserver:
    """Counts and times every HTTP attempt of one workspace's client."""

    def __init__(self, metrics: ApiRequestMetrics, workspace: str) -> None:
        self._metrics = metrics
        self.workspace = workspace
        self.closed = False

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        """Record one attempt."""
        self._metrics._record(self, endpoint, code, seconds)

    def close(self) -> None:
        """Remove this workspace's series; later attempts are not recorded (it is no longer watched)."""
        self._metrics._forget(self)
