"""The webhook receiver's metrics: requests by result, events by type, reads they led to, and health.

Label values are bounded: ``workspace`` is a configured workspace (or empty for a request naming none),
``result`` one of :data:`RESULTS`, ``event`` one of the documented events or ``other``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from census_exporter.refresh.announcements import AnnouncementStatus
from census_exporter.rendering import Family, FamilyBlocks, RenderedFamilies, label_text, sample
from census_exporter.webhooks.events import EVENTS, OTHER_EVENT

#: Every ``result`` of census_webhook_requests_total.
RESULTS = (
    "accepted",
    "unknown_sync",
    "duplicate",
    "rate_limited",
    "method_not_allowed",
    "unknown_workspace",
    "too_large",
    "length_required",
    "unsupported_media_type",
    "bad_signature",
    "malformed",
    "wrong_workspace",
    "queue_full",
)

REQUESTS = Family(
    "census_webhook_requests_total",
    "counter",
    "Webhook deliveries received, by workspace (empty when the path names none) and result.",
)
EVENTS_FAMILY = Family(
    "census_webhook_events_total",
    "counter",
    "Verified, new webhook events, by workspace and event (the documented sync.* events, or other).",
)
READS = Family(
    "census_webhook_reads_total",
    "counter",
    "Webhook events that led to an immediate read of their sync (the others showed nothing new, or were "
    "about syncs the workspace does not watch).",
)
LAST_EVENT = Family(
    "census_webhook_last_event_timestamp_seconds",
    "gauge",
    "Unix time of the last verified webhook event about a watched sync of the workspace (absent before the "
    "first).",
)
RECONCILING = Family(
    "census_webhook_reconciling",
    "gauge",
    "1 while webhooks are healthy and syncs without events are read only every reconcile interval; 0 on "
    "full polling.",
)
FALLBACK = Family(
    "census_webhook_polling_fallback",
    "gauge",
    "1 while the workspace is back on full polling because a run went unannounced by any webhook.",
)
UNANNOUNCED = Family(
    "census_webhook_unannounced_runs_total",
    "counter",
    "Runs found by polling that no webhook event announced within the grace period (counted per sync).",
)
FAMILIES = (REQUESTS, EVENTS_FAMILY, READS, LAST_EVENT, RECONCILING, FALLBACK, UNANNOUNCED)


class WebhookMetrics:
    """Counters of the receiver; the health gauges are read from each workspace's announcements."""

    def __init__(
        self,
        workspaces: Iterable[str],
        status: Callable[[str], AnnouncementStatus | None],
    ) -> None:
        self._workspaces = tuple(sorted(workspaces))
        self._status = status
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._events: dict[tuple[str, str], int] = {}
        self._reads: dict[str, int] = dict.fromkeys(self._workspaces, 0)
        for workspace in self._workspaces:
            for result in RESULTS:
                self._requests[(workspace, result)] = 0
            for event in (*EVENTS, OTHER_EVENT):
                self._events[(workspace, event)] = 0

    def request(self, workspace: str, result: str) -> None:
        """Count one delivery (``workspace`` is empty when it names no configured one)."""
        with self._lock:
            key = (workspace, result)
            self._requests[key] = self._requests.get(key, 0) + 1

    def event(self, workspace: str, event: str) -> None:
        """Count one new verified event."""
        with self._lock:
            key = (workspace, event)
            self._events[key] = self._events.get(key, 0) + 1

    def read(self, workspace: str) -> None:
        """Count one event that led to a read."""
        with self._lock:
            self._reads[workspace] = self._reads.get(workspace, 0) + 1

    def render(self) -> RenderedFamilies:
        """Every family as it is now."""
        blocks = FamilyBlocks(FAMILIES)
        with self._lock:
            requests = sorted(self._requests.items())
            events = sorted(self._events.items())
            reads = sorted(self._reads.items())
        lines: list[tuple[int, str]] = []
        for (workspace, result), count in requests:
            labels = label_text([("workspace", workspace), ("result", result)])
            lines.append((0, sample(REQUESTS.name, labels, count)))
        for (workspace, event), count in events:
            labels = label_text([("workspace", workspace), ("event", event)])
            lines.append((1, sample(EVENTS_FAMILY.name, labels, count)))
        for workspace, count in reads:
            lines.append((2, sample(READS.name, label_text([("workspace", workspace)]), count)))
        for workspace in self._workspaces:
            status = self._status(workspace)
            if status is None:
                continue
            labels = label_text([("workspace", workspace)])
            if status.last_event_timestamp is not None:
                lines.append((3, sample(LAST_EVENT.name, labels, status.last_event_timestamp)))
            lines.append((4, sample(RECONCILING.name, labels, status.reconciling)))
            lines.append((5, sample(FALLBACK.name, labels, status.fallback)))
            lines.append((6, sample(UNANNOUNCED.name, labels, status.unannounced_runs)))
        blocks.add(lines)
        return blocks.rendered()
