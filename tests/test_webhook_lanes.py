"""Announced reads beside full refreshes, over real HTTP: an event does not wait behind a slow full refresh
round, a round that read the sync before the event does not undo the announced read's count, and a scrape
does not wait for announced reads that cannot finish within its budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Harness, Scrape, parse_scrape, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-lanes-0a9e"


def _start(harness_factory: Callable[..., Harness], syncs: int, **config: Any) -> Harness:
    return start_receiving(harness_factory, workspace_with_syncs(syncs), SECRET, **config)


def _post(harness: Harness, sync_id: int, run_id: int, event: str = "sync.failed") -> httpx.Response:
    return deliver(harness, webhook_event(sync_id, run_id, event, workspace_id=1), secret=SECRET)


def _failed(scrape: Scrape, sync_id: int) -> float:
    return scrape.value("census_sync_runs_total", sync_id=str(sync_id), status="failed") or 0.0


class Hold:
    """Holds the simulator's first answer to a path (computed already, not sent) until released."""

    def __init__(self, path_end: str) -> None:
        self.path_end = path_end
        self.armed = False
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: str, query: dict[str, list[str]]) -> None:
        del query
        if self.armed and path.endswith(self.path_end):
            self.armed = False
            self.held.set()
            self.release.wait(timeout=30)


def test_an_event_during_a_slow_full_refresh_is_read_at_once_and_the_round_does_not_undo_it(
    harness_factory: Callable[..., Harness],
) -> None:
    # Full polling (the reconcile interval is over at once), a TTL no scrape reaches: refreshes by hand.
    harness = _start(harness_factory, 3, cache_ttl=3600.0, webhook_reconcile_interval_seconds=0.001)
    hold = Hold("/syncs/1/sync_runs")
    harness.simulator.after_answer = hold
    hold.armed = True
    round_ = harness.exporter.refresher.trigger()
    # The round has read sync 1's runs (no new run yet) and waits for the answer: a slow full refresh.
    assert hold.held.wait(timeout=10)
    run_id = int(harness.workspace.add_run(1, "failed", error_code="INVALID_CREDENTIALS")["id"])
    try:
        assert _post(harness, 1, run_id).status_code == 202
        wait_for(lambda: _failed(harness.scrape(), 1) == 1, timeout=10, what="the event's run in /metrics")
        assert not round_.done(), "the full refresh ended first: the test showed nothing"
    finally:
        hold.release.set()
    snapshot = round_.result(timeout=20)
    # The round read sync 1 before the run existed, from the ledger before the event's read: its older
    # view is not swapped over the newer one, so the counter does not go back.
    assert snapshot.up
    assert _failed(harness.scrape(), 1) == 1
    harness.refresh()
    harness.refresh()
    scrape = harness.scrape()
    assert _failed(scrape, 1) == 1
    assert sum(_failed(scrape, sync_id) for sync_id in (2, 3)) == 0


def test_a_scrape_does_not_wait_for_announced_reads_that_cannot_finish_within_its_budget(
    harness_factory: Callable[..., Harness],
) -> None:
    syncs = 6
    harness = _start(harness_factory, syncs, cache_ttl=1.0)
    run_ids = {sync_id: int(harness.workspace.add_run(sync_id, "failed")["id"]) for sync_id in range(1, 7)}
    slow = threading.Event()

    def slow_runs(path: str, query: dict[str, list[str]]) -> None:
        del query
        if slow.is_set() and path.endswith("/sync_runs"):
            time.sleep(4.0)  # an API (or a request budget) slower than the events come

    # Healthy webhooks first: an event, read at normal speed; full refreshes read no sync now.
    assert _post(harness, 1, run_ids[1]).status_code == 202
    wait_for(lambda: _failed(harness.scrape(), 1) == 1, timeout=10, what="the first event's run")
    assert harness.scrape().value("census_webhook_reconciling", workspace=WORKSPACE) == 1
    harness.simulator.after_answer = slow_runs
    slow.set()
    for sync_id in range(2, syncs + 1):
        assert _post(harness, sync_id, run_ids[sync_id]).status_code == 202
    time.sleep(1.1)  # the snapshot is older than the TTL: the scrape starts a full refresh (a listing only)
    timings = []
    for _ in range(3):
        started = time.monotonic()
        response = harness.http.get(
            harness.base_url + "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "4"}
        )
        timings.append(time.monotonic() - started)
        assert response.status_code == 200
        scrape = parse_scrape(response.text)
        assert scrape.value("census_up") == 1
    # The budget is 3.5 s; the announced reads take 4 s each. Waiting on them would take the whole budget.
    assert max(timings) < 2.0, timings
    slow.clear()
    wait_for(
        lambda: all(_failed(harness.scrape(), s) == 1 for s in range(1, syncs + 1)),
        timeout=30,
        what="every event's run once the reads end",
    )
