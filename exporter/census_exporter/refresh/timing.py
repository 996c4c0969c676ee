"""A refresh's time, for :class:`~census_exporter.refresh.refresher.Refresher`: the deadline that abandons
one still running ``refresh_timeout_seconds`` after it started, the snapshot a refresh leaves when it ends
without a result (abandoned, or failed by a bug), and when the running refresh can be expected to end (what
the fleet's scrapes plan their waits on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from census_exporter.snapshot import Snapshot
from census_exporter.workers import DaemonPool

__all__ = ["ended_without_result", "expected_finish", "start_deadline"]


def start_deadline(seconds: float, generation: int, abandon: Callable[[], object]) -> threading.Timer:
    """Call ``abandon`` once refresh ``generation`` has run ``seconds``; the refresh cancels the timer if
    it ends first."""
    timer = threading.Timer(seconds, abandon)
    timer.daemon = True
    timer.name = f"census-deadline-{generation}"
    timer.start()
    return timer


def ended_without_result(snapshot: Snapshot, message: str, started: float, now: float) -> Snapshot:
    """``snapshot`` as a refresh started at ``started`` leaves it when it ends at ``now`` without a result:
    the data stays, ``up`` is false with ``message`` as the error, and it counts as refreshed."""
    return replace(
        snapshot,
        up=False,
        refreshed=True,
        last_error=message,
        started_monotonic=started,
        refresh_duration_seconds=now - started,
    )


def expected_finish(
    now: float, triggered: float, started: float | None, last: float | None, runners: DaemonPool | None
) -> float:
    """When the running refresh can be expected to end (monotonic), from how long the last one took.

    ``triggered``: when it was asked for; ``started``: when it got a refresh thread (None: still queued);
    ``last``: how long the workspace's last refresh took (None: none has finished yet). One still queued
    for a refresh thread is expected to wait for the refreshes queued before it (at most the whole backlog
    of ``runners``, shared by the fleet's refresh threads, each taking about as long as this workspace's
    last one) and then take as long as its last one; one already running longer than the last one took, as
    long again as it has run so far. With nothing to learn from (no refresh has finished yet), as long
    again as it has been asked for so far, queued or running: a first refresh that outlasted one scrape's
    budget is not waited for by every later scrape.
    """
    if last is None:
        return now + (now - triggered)
    if started is None:
        queued = 0.0
        if runners is not None:
            queued = runners.backlog() / runners.workers * last
        return now + queued + last
    if started + last >= now:
        return started + last
    return now + (now - started)
