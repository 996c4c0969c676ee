"""A failing streak that no scrape showed still pages: when a completed run ends it unseen, its failures
count as superseded (``census_sync_superseded_failed_runs_total``, which ``CensusSyncRunFailed`` reads).

With webhooks a read can see a failed run alone and the next read its successful retry, both between two
scrapes; the end-to-end tests deliver both events over real HTTP and scrape only afterwards."""

from __future__ import annotations

from collections.abc import Callable

from census_exporter.ledger import SyncLedger
from census_exporter.ledger_format import decode_ledger, ledger_json
from census_exporter.refresh.shown import ShownStreaks
from census_exporter.snapshot import Snapshot, SyncState
from tests.conftest import Harness, wait_for
from tests.factories import make_run, make_sync
from tests.webhook_harness import deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-unseen-7d41"


def _failing(ledger: SyncLedger, *run_ids: int) -> SyncLedger:
    return ledger.advance([make_run(run_id, "failed", error_code="E") for run_id in run_ids]).ledger


def test_a_streak_that_ends_unshown_counts_each_of_its_counted_failures_as_superseded() -> None:
    ledger = _failing(SyncLedger.baseline([make_run(1)]), 2)
    assert (ledger.failing, ledger.failing_since_run_id, ledger.streak_failures) == (True, 2, 1)
    ledger = _failing(ledger, 3)  # a retry fails too: the same streak
    assert (ledger.failing_since_run_id, ledger.streak_failures) == (2, 2)
    ended = ledger.advance([make_run(4)], streak_shown=False).ledger
    assert ended.failing is False
    assert (ended.counters.superseded_failures, ended.streak_failures, ended.failing_since_run_id) == (
        2,
        0,
        0,
    )
    assert ended.counters.runs_by_status["failed"] == 2  # counted once, as before


def test_a_streak_a_scrape_showed_is_not_counted_again_when_it_ends() -> None:
    ledger = _failing(SyncLedger.baseline([make_run(1)]), 2, 3)
    ended = ledger.advance([make_run(4)], streak_shown=True).ledger
    assert (ended.failing, ended.counters.superseded_failures) == (False, 0)


def test_failures_before_a_completed_run_in_one_read_are_counted_once() -> None:
    # Run 3 fails and run 4 completes, both new in one read: superseded by the rule of one read alone; the
    # unshown streak adds only run 2, counted by the read before.
    ledger = _failing(SyncLedger.baseline([make_run(1)]), 2)
    ended = ledger.advance([make_run(3, "failed"), make_run(4)], streak_shown=False).ledger
    assert ended.counters.superseded_failures == 2


def test_a_streak_of_the_baseline_counted_nothing_so_it_supersedes_nothing() -> None:
    ledger = SyncLedger.baseline([make_run(1, "failed")])
    assert (ledger.failing, ledger.failing_since_run_id, ledger.streak_failures) == (True, 1, 0)
    ended = ledger.advance([make_run(2)], streak_shown=False).ledger
    assert ended.counters.superseded_failures == 0


def test_a_new_streak_after_a_success_in_one_read_starts_its_own_count() -> None:
    ledger = _failing(SyncLedger.baseline([make_run(1)]), 2)
    ledger = ledger.advance([make_run(3), make_run(4, "failed")], streak_shown=False).ledger
    assert (ledger.failing_since_run_id, ledger.streak_failures, ledger.counters.superseded_failures) == (
        4,
        1,
        1,
    )


def test_the_streak_survives_a_restart() -> None:
    ledger = _failing(SyncLedger.baseline([make_run(1)]), 2, 3)
    restored = decode_ledger(ledger_json(ledger), len(ledger.buckets), True, ledger.buckets)
    assert (restored.failing_since_run_id, restored.streak_failures) == (2, 2)
    assert restored.advance([make_run(4)], streak_shown=False).ledger.counters.superseded_failures == 2


def _snapshot(ledger: SyncLedger) -> Snapshot:
    return Snapshot(workspace="w", syncs={7: SyncState(make_sync(7), ledger=ledger)})


def test_a_streak_is_shown_by_the_current_snapshot_or_one_it_replaced_once_a_scrape_was_served_it() -> None:
    failing = _failing(SyncLedger.baseline([make_run(1)]), 2)
    streaks = ShownStreaks()
    unshown = _snapshot(failing)
    assert not streaks.shown(unshown, 7, 2)
    streaks.replacing(unshown)  # replaced before any scrape: still unshown
    current = _snapshot(failing)
    assert not streaks.shown(current, 7, 2)
    current.mark.shown = True
    assert streaks.shown(current, 7, 2)
    assert not streaks.shown(current, 7, 9)  # another streak of the same sync
    streaks.replacing(current)
    assert streaks.shown(_snapshot(failing), 7, 2)


def _ledger(harness: Harness, sync_id: int) -> SyncLedger | None:
    state = harness.exporter.refresher.snapshot.syncs.get(sync_id)
    return state.ledger if state is not None else None


#: What Prometheus sends with every scrape; a request without it (a person's curl) is not a scrape.
PROMETHEUS = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}


def _failed_then_retried(harness: Harness, between: dict[str, str] | None) -> float | None:
    """Sync 1 fails and its retry completes, each announced by a signed event; what a scrape then shows as
    the sync's superseded failures. ``between``: the headers of a request for /metrics after the failure
    (it asserts the failing streak showed), None for none."""
    workspace = harness.workspace
    failed = int(workspace.add_run(1, "failed", error_code="E_DESTINATION")["id"])
    assert deliver(harness, webhook_event(1, failed, "sync.failed"), secret=SECRET).status_code == 202
    wait_for(
        lambda: (_ledger(harness, 1) or SyncLedger.baseline([])).failing is True, what="the failure read"
    )
    if between is not None:
        shown = harness.scrape(**between).all("census_sync_last_finished_run_failed", sync_id="1")
        assert list(shown.values()) == [1.0]
    retried = int(workspace.add_run(1, "completed")["id"])
    assert deliver(harness, webhook_event(1, retried, "sync.success"), secret=SECRET).status_code == 202
    wait_for(lambda: (_ledger(harness, 1) or SyncLedger.baseline([])).failing is False, what="the retry read")
    scrape = harness.scrape(**PROMETHEUS)
    assert scrape.value("census_sync_runs_total", sync_id="1", status="failed") == 1
    assert list(scrape.all("census_sync_last_finished_run_failed", sync_id="1").values()) == [0.0]
    return scrape.value("census_sync_superseded_failed_runs_total", sync_id="1")


def _receiving(harness_factory: Callable[..., Harness]) -> Harness:
    # Polling would take an hour: only the announced reads see the two runs.
    harness = start_receiving(harness_factory, workspace_with_syncs(2), SECRET, cache_ttl=3600.0)
    harness.scrape(**PROMETHEUS)
    return harness


def test_a_failure_and_its_successful_retry_between_two_scrapes_still_page(
    harness_factory: Callable[..., Harness],
) -> None:
    assert _failed_then_retried(_receiving(harness_factory), between=None) == 1


def test_a_failure_a_scrape_showed_is_not_paged_twice_when_its_retry_succeeds(
    harness_factory: Callable[..., Harness],
) -> None:
    assert _failed_then_retried(_receiving(harness_factory), between=PROMETHEUS) == 0


def test_a_request_without_prometheus_s_header_does_not_count_as_showing_the_failure(
    harness_factory: Callable[..., Harness],
) -> None:
    # Someone's curl of /metrics between the two reads: Prometheus still never saw the failure.
    assert _failed_then_retried(_receiving(harness_factory), between={}) == 1
