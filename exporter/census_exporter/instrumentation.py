"""The exporter's own API instrumentation: ``census_api_requests_total`` and
``census_api_request_duration_seconds``, one set of series per workspace.

Counted here in plain integers and rendered (:mod:`census_exporter.rendering`) only when they changed:
every scrape carries them, and at thousands of syncs re-encoding a few hundred histogram samples through
prometheus_client on each scrape cost about a fifth of a warm scrape's time.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from dataclasses import dataclass, field

from census_exporter.rendering import (
    Family,
    FamilyBlocks,
    RenderedFamilies,
    histogram,
    label_text,
    number,
    sample,
)

REQUEST_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Family(
    "census_api_requests_total",
    "counter",
    "HTTP requests made to the Census API, by endpoint template and response code (or timeout / "
    "connection_error).",
)
DURATIONS = Family(
    "census_api_request_duration_seconds",
    "histogram",
    "Latency of HTTP requests to the Census API, by endpoint template.",
)
#: The ``le`` label values, written as prometheus_client writes a Histogram's (``1.0``, ``+Inf``).
_LE = (*(number(bound) for bound in REQUEST_DURATION_BUCKETS), "+Inf")


@dataclass
class _Durations:
    """One (workspace, endpoint)'s latency histogram: per-bucket (not cumulative) counts and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * len(_LE))
    total_seconds: float = 0.0


class ApiRequestMetrics:
    """The two API metric families; :meth:`observer` gives each workspace's client its own view."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], _Durations] = {}
        #: Bumped by every change, so that a rendering is reused until the next one.
        self._generation = 0
        self._rendered: tuple[int, RenderedFamilies] | None = None

    def observer(self, workspace: str) -> WorkspaceRequestObserver:
        """What one workspace's client reports its requests to (it implements ``RequestObserver``)."""
        return WorkspaceRequestObserver(self, workspace)

    def render(self) -> RenderedFamilies:
        """Both families as they are now."""
        with self._lock:
            if self._rendered is not None and self._rendered[0] == self._generation:
                return self._rendered[1]
            blocks = FamilyBlocks((REQUESTS, DURATIONS))
            for (workspace, endpoint, code), count in sorted(self._requests.items()):
                labels = label_text([("workspace", workspace), ("endpoint", endpoint), ("code", code)])
                blocks.add([(0, sample(REQUESTS.name, labels, count))])
            for (workspace, endpoint), durations in sorted(self._durations.items()):
                blocks.add([(1, line) for line in _histogram_lines(workspace, endpoint, durations)])
            rendered = blocks.rendered()
            self._rendered = (self._generation, rendered)
            return rendered

    def _record(self, observer: WorkspaceRequestObserver, endpoint: str, code: str, seconds: float) -> None:
        # Under the lock, so a request ending while its workspace is removed cannot bring its series back.
        with self._lock:
            if observer.closed:
                return
            key = (observer.workspace, endpoint, code)
            self._requests[key] = self._requests.get(key, 0) + 1
            durations = self._durations.setdefault((observer.workspace, endpoint), _Durations())
            durations.counts[bisect.bisect_left(REQUEST_DURATION_BUCKETS, seconds)] += 1
            durations.total_seconds += seconds
            self._generation += 1

    def _forget(self, observer: WorkspaceRequestObserver) -> None:
        with self._lock:
            observer.closed = True
            self._requests = {key: n for key, n in self._requests.items() if key[0] != observer.workspace}
            self._durations = {key: d for key, d in self._durations.items() if key[0] != observer.workspace}
            self._generation += 1


def _histogram_lines(workspace: str, endpoint: str, durations: _Durations) -> list[str]:
    buckets = list(zip(_LE, itertools.accumulate(durations.counts), strict=True))
    ids = [("workspace", workspace), ("endpoint", endpoint)]
    return histogram(DURATIONS.name, ids, buckets, durations.total_seconds)


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
