"""Webhook deliveries the review found mishandled, over real HTTP: a terminal event that arrives before the
API shows the outcome, a terminal event lost on the way, a flood of unsigned requests from the one address
an Ingress gives every sender, events about syncs the workspace does not watch, a full queue, an event
heard before the full refresh that found its run swapped in, and a signed event naming a bogus run."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from census_exporter.demo.server import API_PREFIX, Fault
from census_exporter.ledger import SyncLedger
from census_exporter.webhooks import intake
from tests.conftest import Harness, Scrape, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-delivery-51c2"


def _start(harness_factory: Callable[..., Harness], syncs: int = 3, **config: Any) -> Harness:
    # The normal poll: a full refresh every second (scrapes start them).
    return start_receiving(
        harness_factory, workspace_with_syncs(syncs), SECRET, **({"cache_ttl": 1.0} | config)
    )


def _post(harness: Harness, payload: dict[str, Any], *, secret: str | None = SECRET) -> httpx.Response:
    return deliver(harness, payload, secret=secret)


def _runs(scrape: Scrape, sync_id: int, status: str) -> float:
    return scrape.value("census_sync_runs_total", sync_id=str(sync_id), status=status) or 0.0


def _requests(scrape: Scrape, result: str) -> float:
    return scrape.value("census_webhook_requests_total", workspace=WORKSPACE, result=result) or 0.0


def _gauge(scrape: Scrape, name: str) -> float | None:
    return scrape.value(name, workspace=WORKSPACE)


def _knows_pending(harness: Harness, sync_id: int, run_id: int) -> bool:
    state = harness.exporter.refresher.snapshot.syncs.get(sync_id)
    return state is not None and state.ledger is not None and run_id in state.ledger.pending_run_ids


def _read_at(harness: Harness, sync_id: int) -> float | None:
    return harness.exporter.refresher.snapshot.syncs[sync_id].runs_read_monotonic


def test_a_failure_announced_while_the_api_says_working_shows_at_the_normal_poll_not_the_reconcile(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory)  # the reconcile interval is its default, an hour
    workspace = harness.workspace
    run_id = int(workspace.add_run(1, "working")["id"])
    # Census says the run failed before its API does.
    assert _post(harness, webhook_event(1, run_id, "sync.failed")).status_code == 202
    wait_for(lambda: _knows_pending(harness, 1, run_id), timeout=10, what="the read the event asked for")
    scrape = harness.scrape()
    assert _gauge(scrape, "census_webhook_reconciling") == 1
    assert _runs(scrape, 1, "failed") == 0
    # Delivered again while the API still says working: not a duplicate, it is taken (and read) again.
    read_at = _read_at(harness, 1)
    assert _post(harness, webhook_event(1, run_id, "sync.failed")).status_code == 202
    wait_for(lambda: _read_at(harness, 1) != read_at, timeout=10, what="the read the redelivery asked for")
    others = {sync_id: harness.simulator.count(rf"/syncs/{sync_id}/sync_runs$") for sync_id in (2, 3)}
    listings = harness.simulator.count(r"/syncs$")

    workspace.finish_run(run_id, "failed", error_code="INVALID_CREDENTIALS")
    # The sync with the unfinished run is polled at normal priority (TTL 1 s), not in an hour.
    wait_for(lambda: _runs(harness.scrape(), 1, "failed") == 1, timeout=15, what="the failure in /metrics")
    assert harness.simulator.count(r"/syncs$") > listings  # a full refresh's poll showed it
    # The syncs without unfinished runs stay on the reconcile interval: not read again.
    assert {sync_id: harness.simulator.count(rf"/syncs/{sync_id}/sync_runs$") for sync_id in (2, 3)} == others
    # Shown now: a delivery again is a duplicate, and the run stays counted once.
    assert _post(harness, webhook_event(1, run_id, "sync.failed")).status_code == 200
    scrape = harness.scrape()
    assert _requests(scrape, "duplicate") == 1
    assert _runs(scrape, 1, "failed") == 1
    assert scrape.value("census_webhook_events_total", workspace=WORKSPACE, event="sync.failed") == 1


def test_a_terminal_event_lost_on_the_way_makes_the_poll_find_the_run_and_fall_back(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory, webhook_announcement_grace_seconds=1.0)
    workspace = harness.workspace
    run_id = int(workspace.add_run(1, "working")["id"])
    assert _post(harness, webhook_event(1, run_id, "sync.started")).status_code == 202
    wait_for(lambda: _knows_pending(harness, 1, run_id), timeout=10, what="the read the event asked for")
    assert _gauge(harness.scrape(), "census_webhook_reconciling") == 1
    # The run fails; its sync.failed is refused (a 429, a network fault) and never delivered again.
    workspace.finish_run(run_id, "failed", error_code="QUERY_TIMEOUT")
    wait_for(
        lambda: _gauge(harness.scrape(), "census_webhook_polling_fallback") == 1,
        timeout=20,
        what="the fallback to full polling",
    )
    scrape = harness.scrape()
    assert _runs(scrape, 1, "failed") == 1
    assert _gauge(scrape, "census_webhook_unannounced_runs_total") == 1
    assert _gauge(scrape, "census_webhook_reconciling") == 0


def test_a_flood_of_unsigned_requests_from_the_ingress_address_does_not_429_a_signed_delivery(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory, webhook_max_requests_per_second=5.0)
    # Behind an Ingress every sender has the controller's address: here 127.0.0.1 for all of them.
    flood = [
        _post(harness, webhook_event(2, 9000 + n, "sync.failed"), secret=None).status_code for n in range(150)
    ]
    assert flood.count(429) >= 100
    assert set(flood) <= {401, 429}
    run_id = int(harness.workspace.add_run(1, "failed")["id"])
    assert _post(harness, webhook_event(1, run_id, "sync.failed")).status_code == 202
    wait_for(lambda: _runs(harness.scrape(), 1, "failed") == 1, timeout=10, what="the signed delivery's run")
    # Signed deliveries are not rate limited at all, however many (the queue bounds them).
    answers = {_post(harness, webhook_event(3, 7000 + n, "sync.started")).status_code for n in range(40)}
    assert answers == {202}
    scrape = harness.scrape()
    assert _requests(scrape, "rate_limited") == flood.count(429)
    assert _requests(scrape, "bad_signature") == flood.count(401)


def test_events_about_syncs_the_workspace_does_not_watch_do_not_make_webhooks_healthy(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory)
    for n in range(5):
        assert _post(harness, webhook_event(404_000 + n, 1, "sync.failed")).status_code == 202
    wait_for(lambda: _requests(harness.scrape(), "unknown_sync") == 5, timeout=10, what="5 unknown_sync")
    scrape = harness.scrape()
    assert _gauge(scrape, "census_webhook_reconciling") == 0  # still full polling
    assert _gauge(scrape, "census_webhook_last_event_timestamp_seconds") is None
    assert _requests(scrape, "accepted") == 0
    # An event about a watched sync does.
    run_id = int(harness.workspace.add_run(1, "completed")["id"])
    assert _post(harness, webhook_event(1, run_id, "sync.success")).status_code == 202
    wait_for(
        lambda: _gauge(harness.scrape(), "census_webhook_reconciling") == 1, timeout=10, what="reconciling"
    )


@pytest.fixture
def stalled_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """A queue of two events whose worker blocks on the first event it takes until released."""
    monkeypatch.setattr(intake, "QUEUE_SIZE", 2)
    entered, release = threading.Event(), threading.Event()
    handle = intake.Dispatcher.handle

    def stalled(self: intake.Dispatcher, target: intake.WebhookTarget, event: Any) -> None:
        entered.set()
        release.wait(timeout=30)
        handle(self, target, event)

    monkeypatch.setattr(intake.Dispatcher, "handle", stalled)
    yield entered, release
    release.set()


def test_a_full_queue_answers_503_and_the_delivery_is_taken_when_sent_again(
    harness_factory: Callable[..., Harness], stalled_worker: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = stalled_worker
    harness = _start(harness_factory, syncs=4)
    runs = {sync_id: int(harness.workspace.add_run(sync_id, "failed")["id"]) for sync_id in range(1, 5)}
    assert _post(harness, webhook_event(1, runs[1], "sync.failed")).status_code == 202
    assert entered.wait(timeout=10)  # the worker holds the first; the queue has room for two more
    assert _post(harness, webhook_event(2, runs[2], "sync.failed")).status_code == 202
    assert _post(harness, webhook_event(3, runs[3], "sync.failed")).status_code == 202
    refused = _post(harness, webhook_event(4, runs[4], "sync.failed"))
    assert refused.status_code == 503
    scrape = harness.scrape()
    assert _requests(scrape, "queue_full") == 1
    # Refused, so not remembered: Census's next delivery of it is taken, not a duplicate.
    release.set()
    wait_for(lambda: _runs(harness.scrape(), 3, "failed") == 1, timeout=10, what="the queued events read")
    assert _post(harness, webhook_event(4, runs[4], "sync.failed")).status_code == 202
    wait_for(
        lambda: all(_runs(harness.scrape(), s, "failed") == 1 for s in runs), timeout=10, what="all four runs"
    )
    assert _requests(harness.scrape(), "duplicate") == 0


def test_an_event_heard_before_the_full_refresh_that_found_its_run_swaps_in_is_not_unannounced(
    harness_factory: Callable[..., Harness],
) -> None:
    """The round reads sync 1 and finds run R; R's event arrives before the round swaps in, and its own
    read is slower than the round. The round's "found, awaiting its event" comes after the event was
    heard: R was announced all the same. Sync 3's run, which no event names, proves the grace passed."""
    grace = 1.0
    harness = start_receiving(
        harness_factory,
        workspace_with_syncs(3),
        SECRET,
        cache_ttl=3600.0,
        webhook_announcement_grace_seconds=grace,
    )
    simulator, workspace = harness.simulator, harness.workspace
    announced = int(workspace.add_run(1, "completed")["id"])
    workspace.add_run(3, "completed")  # found by the round, announced by nothing

    def slow_answer(sync_id: int, delay: float) -> Fault:
        status, body = simulator.answer(f"{API_PREFIX}/syncs/{sync_id}/sync_runs", {})
        return Fault(rf"/syncs/{sync_id}/sync_runs$", status, json.dumps(body).encode(), delay_seconds=delay)

    simulator.inject(slow_answer(2, 3.0))  # holds the round open after it read sync 1
    reads_of_1 = simulator.count(r"/syncs/1/sync_runs$")
    round_done = harness.exporter.refresher.trigger()
    wait_for(lambda: simulator.count(r"/syncs/1/sync_runs$") > reads_of_1, what="the round's read of sync 1")
    simulator.inject(slow_answer(1, 5.0))  # the event's own read ends after the round's swap
    assert deliver(harness, webhook_event(1, announced, "sync.success"), secret=SECRET).status_code == 202
    round_done.result(timeout=30)

    def unannounced() -> float:
        return harness.scrape().value("census_webhook_unannounced_runs_total", workspace=WORKSPACE) or 0.0

    wait_for(lambda: unannounced() >= 1, timeout=15, what="sync 3's run counted unannounced")
    wait_for(lambda: simulator.count(r"/syncs/1/sync_runs$") > reads_of_1 + 1, what="the event's own read")
    assert unannounced() == 1


def _ledger(harness: Harness, sync_id: int) -> SyncLedger:
    state = harness.exporter.refresher.snapshot.syncs.get(sync_id)
    assert state is not None and state.ledger is not None
    return state.ledger


@pytest.mark.parametrize("jump", [10**15, 10**6], ids=["implausible", "plausible"])
def test_a_bogus_run_id_in_a_signed_event_does_not_hide_the_sync_s_later_unannounced_runs_for_good(
    harness_factory: Callable[..., Harness], jump: int
) -> None:
    """The per-sync memory of the newest run a terminal event named takes any id a signed event carries.
    One event naming a run far ahead (a buggy or hostile sender; another sync's run, as run ids are global)
    makes every later run of that sync look announced: none is counted unannounced, and webhooks that
    stopped delivering for it never fall back. An implausible id must not be remembered; a plausible one
    not for longer than a reconcile interval (the memory is needed only until the round that read the
    sync swaps in). Sync 3's run, announced by nothing either, shows that the grace passed."""
    harness = start_receiving(
        harness_factory,
        workspace_with_syncs(3),
        SECRET,
        cache_ttl=3600.0,
        webhook_announcement_grace_seconds=0.5,
        webhook_reconcile_interval_seconds=0.5,
    )
    workspace = harness.workspace
    bogus = webhook_event(1, _ledger(harness, 1).recent_run_ids[-1] + jump, "sync.success")
    assert deliver(harness, bogus, secret=SECRET).status_code == 202
    reads_of_1 = harness.simulator.count(r"/syncs/1/sync_runs$")
    wait_for(
        lambda: harness.simulator.count(r"/syncs/1/sync_runs$") > reads_of_1, what="the bogus event's read"
    )
    workspace.add_run(1, "completed")  # no event will name these two runs
    workspace.add_run(3, "completed")

    def counted_by_a_round() -> bool:
        harness.refresh()
        return all(
            _ledger(harness, sync_id).counters.runs_by_status.get("completed") == 1 for sync_id in (1, 3)
        )

    wait_for(counted_by_a_round, what="a full round counting both runs")

    def unannounced() -> float:
        return harness.scrape().value("census_webhook_unannounced_runs_total", workspace=WORKSPACE) or 0.0

    wait_for(lambda: unannounced() >= 1, what="sync 3's run counted unannounced")
    wait_for(lambda: unannounced() >= 2, timeout=3, what="sync 1's run counted unannounced too")
