"""What the alerts read beyond the newest run, over real HTTP against the simulator.

The failing streak (``census_sync_last_finished_run_failed``) lasts through retries that are queued,
working or skipped and ends only with a completed run; a sync with no known success says since when
(``census_sync_no_success_since_timestamp_seconds``); the listed health is exported; a run time in the
future never pins the newest run; a working run without ``created_at`` still shows as unfinished; and the
request budget reads a sync whose listing changed first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync
from census_exporter.demo.server import Fault
from census_exporter.demo.workspace import SimulatedWorkspace, iso
from census_exporter.ledger import IMPLAUSIBLE_RUN_ID_JUMP, SyncLedger
from census_exporter.refresh.one_sync import (
    FIRST_READ_LOOKBACK_SECONDS,
    FIRST_READ_PAGES_WITHOUT_SUCCESS,
    newest_run,
)
from census_exporter.refresh.schedule import Priority, plan, priority
from census_exporter.snapshot import SyncState
from tests.conftest import Harness
from tests.factories import make_run, make_sync

SYNC = 7


def failing_series(harness: Harness) -> dict[str, float]:
    """``census_sync_last_finished_run_failed`` of the sync: error_code label -> value."""
    found = harness.scrape().all("census_sync_last_finished_run_failed", sync_id=str(SYNC))
    return {dict(labels)["error_code"]: value for labels, value in found.items()}


def test_a_failing_streak_is_one_series_through_retries_until_a_run_completes(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed")
    harness = harness_factory(workspace)
    harness.refresh()
    assert failing_series(harness) == {"": 0.0}

    first = workspace.add_run(SYNC, "failed", error_code="RATE_LIMITED")
    harness.refresh()
    assert failing_series(harness) == {"RATE_LIMITED": 1.0}
    # The retry starts: the newest run is working, yet the streak (and its error code) stays.
    retry = workspace.add_run(SYNC, "working")
    harness.refresh()
    assert harness.scrape().all("census_sync_last_run_status", sync_id=str(SYNC)) == {
        frozenset({("sync_id", str(SYNC)), ("workspace", "default"), ("status", "working")}): 1.0
    }
    assert failing_series(harness) == {"RATE_LIMITED": 1.0}
    # It fails again with another code, is skipped, is retried: still the one streak the first failure began.
    workspace.update_run(retry["id"], status="failed", error_code="INVALID_CREDENTIALS")
    workspace.add_run(SYNC, "skipped")
    workspace.add_run(SYNC, "queued")
    harness.refresh()
    assert failing_series(harness) == {"RATE_LIMITED": 1.0}
    assert first["id"] < retry["id"]
    # A completed run ends it.
    workspace.add_run(SYNC, "completed")
    harness.refresh()
    assert failing_series(harness) == {"": 0.0}


def test_the_listed_health_is_exported_lower_cased_and_follows_the_runs(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    legacy = {"id": 8, "label": "Legacy", "status": "Up to  Date", "paused": False}
    workspace.add_sync(8, raw=legacy)
    harness = harness_factory(workspace)
    harness.refresh()

    def health(sync_id: int) -> set[str]:
        found = harness.scrape().all("census_sync_health", sync_id=str(sync_id))
        return {dict(labels)["health"] for labels, value in found.items() if value == 1}

    assert health(SYNC) == {"ready"}
    assert health(8) == {"up to date"}
    workspace.add_run(SYNC, "failed", error_code="E")
    harness.refresh()
    assert health(SYNC) == {"failing"}
    workspace.add_run(SYNC, "completed")
    harness.refresh()
    assert health(SYNC) == {"up to date"}


def test_a_sync_that_never_succeeded_says_since_when_from_its_first_read(
    harness_factory: Callable[..., Harness],
) -> None:
    """The first read pages back while no run completed, so a long failing streak shows its full length:
    here a run every 4 minutes, so the 12 pages read hold 20 hours of failures."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Always failing")
    now = time.time()
    runs = 25 * FIRST_READ_PAGES_WITHOUT_SUCCESS
    oldest = now - 240.0 * runs
    for k in range(runs):
        workspace.add_run(SYNC, "failed", created_at=oldest + 240.0 * k, error_code="E")
    harness = harness_factory(workspace)
    harness.refresh()
    scrape = harness.scrape()
    assert scrape.value("census_sync_last_success_timestamp_seconds", sync_id=str(SYNC)) is None
    since = scrape.value("census_sync_no_success_since_timestamp_seconds", sync_id=str(SYNC))
    assert since is not None and abs(since - oldest) < 1.0
    # A success makes it known, and the other series ends.
    workspace.add_run(SYNC, "completed")
    harness.refresh()
    scrape = harness.scrape()
    assert scrape.value("census_sync_no_success_since_timestamp_seconds", sync_id=str(SYNC)) is None
    assert scrape.value("census_sync_last_success_timestamp_seconds", sync_id=str(SYNC)) is not None


def test_a_run_created_in_2098_does_not_stay_the_newest(harness_factory: Callable[..., Harness]) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    future = workspace.add_run(SYNC, "failed", error_code="E")
    workspace.update_run(
        future["id"], created_at="2098-01-01T00:00:00.000Z", updated_at="2098-01-01T00:01:00Z"
    )
    harness = harness_factory(workspace)
    harness.refresh()
    for _ in range(5):
        workspace.add_run(SYNC, "completed")
        harness.refresh()
    scrape = harness.scrape()
    statuses = scrape.all("census_sync_last_run_status", sync_id=str(SYNC))
    assert {dict(labels)["status"] for labels in statuses} == {"completed"}
    assert failing_series(harness) == {"": 0.0}
    created = scrape.value("census_sync_last_run_created_timestamp_seconds", sync_id=str(SYNC))
    assert created is not None and created < time.time() + 60


def test_a_working_run_without_created_at_still_shows_as_unfinished(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed")
    hanging = workspace.add_run(SYNC, "working")
    workspace.update_run(hanging["id"], created_at=None)
    harness = harness_factory(workspace)
    before = time.time()
    harness.refresh()
    harness.refresh()
    oldest = harness.scrape().value(
        "census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id=str(SYNC)
    )
    # Measured from when the exporter first saw it, and kept across refreshes (not reset each time).
    assert oldest is not None and before - 1.0 <= oldest <= time.time()
    harness.refresh()
    assert (
        harness.scrape().value(
            "census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id=str(SYNC)
        )
        == oldest
    )


def sync(sync_id: int, health: str | None = "up to date", updated_at: float | None = 1.0) -> Sync:
    return make_sync(sync_id, health=health, updated_at=updated_at)


def test_the_budget_reads_first_a_sync_whose_listing_changed_since_its_last_read() -> None:
    read_at = {n: float(n) for n in range(1, 11)}
    states = [
        SyncState(
            sync=sync(n),
            ledger=SyncLedger.baseline([]),
            runs_read_monotonic=read_at[n],
            read_sync=sync(n),
        )
        for n in range(1, 11)
    ]
    # Sync 10, read most recently, turns failing in the listing: it goes first, before older reads.
    states[9] = SyncState(
        sync=sync(10, health="failing", updated_at=2.0),
        ledger=SyncLedger.baseline([]),
        runs_read_monotonic=10.0,
        read_sync=sync(10),
    )
    assert priority(states[9], 0.0, 60.0) == Priority.HEALTH_CHANGED
    assert plan(states, 2, 0.0, 60.0) == [10, 1]
    # A changed update time alone is a change too, ranked below a run already waited on: a sync whose
    # updated_at moves on every listing must not crowd out the syncs with a working run.
    states[8] = SyncState(
        sync=sync(9, updated_at=5.0),
        ledger=SyncLedger.baseline([]),
        runs_read_monotonic=9.0,
        read_sync=sync(9),
    )
    assert priority(states[8], 0.0, 60.0) == Priority.LISTING_UPDATED
    working = SyncState(
        sync=sync(3),
        ledger=SyncLedger.baseline([run(30, "working")]),
        runs_read_monotonic=3.0,
        read_sync=sync(3),
    )
    states[2] = working
    assert priority(working, 0.0, 60.0) == Priority.UNFINISHED_RUN
    assert plan(states, 4, 0.0, 60.0)[:2] == [10, 3], "health change, then the working run"


def run(run_id: int, status: str, created_at: float | None = None, error_code: str | None = None) -> SyncRun:
    return make_run(run_id, status, sync_id=1, created_at=created_at, error_code=error_code)


def test_the_newest_run_is_the_highest_id_but_not_an_implausible_one() -> None:
    assert newest_run([run(3, "completed", created_at=4e9), run(5, "failed", created_at=1e9)]).id == 5  # type: ignore[union-attr]
    bogus = 5 + IMPLAUSIBLE_RUN_ID_JUMP + 1
    assert newest_run([run(bogus, "failed"), run(5, "completed"), run(4, "completed")]).id == 5  # type: ignore[union-attr]
    assert newest_run([run(bogus, "failed")]).id == bogus  # type: ignore[union-attr]
    assert newest_run([]) is None


def test_the_streak_follows_run_ids_not_the_order_runs_finish_in() -> None:
    ledger = SyncLedger.baseline([run(1, "completed")])
    assert ledger.failing is False
    # Run 2 is still working when run 3 fails; run 2 then completes: run 3 is the newest outcome.
    ledger = ledger.advance([run(2, "working"), run(3, "failed", error_code="A")]).ledger
    assert (ledger.failing, ledger.failing_error_code) == (True, "A")
    ledger = ledger.advance([run(2, "completed"), run(3, "failed", error_code="A")]).ledger
    assert (ledger.failing, ledger.failing_error_code) == (True, "A")
    ledger = ledger.advance([run(4, "failed", error_code="B")]).ledger
    assert (ledger.failing, ledger.failing_error_code) == (True, "A")
    ledger = ledger.advance([run(5, "completed")]).ledger
    assert (ledger.failing, ledger.failing_error_code) == (False, None)
    assert SyncLedger.baseline([run(1, "skipped")]).failing is None


def test_no_success_since_is_the_oldest_run_seen_and_ends_with_a_success() -> None:
    ledger = SyncLedger.baseline([run(1, "failed", created_at=100.0), run(2, "failed", created_at=200.0)])
    assert ledger.no_success_since == 100.0
    ledger = ledger.advance([run(3, "failed", created_at=300.0)]).ledger
    assert ledger.no_success_since == 100.0
    finished = dataclasses.replace(run(4, "completed", created_at=400.0), completed_at=460.0)
    ledger = ledger.advance([finished]).ledger
    assert ledger.no_success_since is None and ledger.last_success_at == 460.0


def test_one_implausibly_high_run_id_never_pins_the_streak(harness_factory: Callable[..., Harness]) -> None:
    """A run id far above the others is not "the newest": it neither starts a streak nor hides later ones."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed", run_id=1)
    harness = harness_factory(workspace)
    harness.refresh()
    workspace.add_run(SYNC, "failed", run_id=1 + 2 * IMPLAUSIBLE_RUN_ID_JUMP, error_code="BOGUS")
    harness.refresh()
    assert failing_series(harness) == {"": 0.0}
    workspace.add_run(SYNC, "failed", run_id=2, error_code="RATE_LIMITED")
    harness.refresh()
    assert failing_series(harness) == {"RATE_LIMITED": 1.0}
    workspace.add_run(SYNC, "completed", run_id=3)
    harness.refresh()
    assert failing_series(harness) == {"": 0.0}


def test_a_first_read_whose_deeper_page_fails_keeps_what_the_newer_pages_showed(
    harness_factory: Callable[..., Harness],
) -> None:
    """Paging back is a bonus: an error on page 2 must not leave a failing sync without any run data."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Always failing")
    now = time.time()
    for k in range(60):
        workspace.add_run(SYNC, "failed", created_at=now - 3600.0 * (60 - k), error_code="E")
    harness = harness_factory(workspace)
    runs_path = f"/syncs/{SYNC}/sync_runs"

    def fail_from_the_second_page(path: str, query: dict[str, list[str]]) -> None:
        if path.endswith(runs_path) and query.get("page", ["1"]) == ["1"]:
            harness.simulator.inject(Fault(runs_path, status=500, times=-1))

    harness.simulator.after_answer = fail_from_the_second_page
    harness.refresh()
    harness.simulator.after_answer = None
    harness.simulator.clear_faults()
    scrape = harness.scrape()
    assert failing_series(harness) == {"E": 1.0}
    assert scrape.value("census_sync_last_run_status", sync_id=str(SYNC), status="failed") == 1.0
    since = scrape.value("census_sync_no_success_since_timestamp_seconds", sync_id=str(SYNC))
    assert since is not None and since < now - 3600.0 * 24, "the oldest run of the page that was read"


def test_a_run_time_from_before_the_sync_existed_is_unknown(harness_factory: Callable[..., Harness]) -> None:
    """A run "created in 2001" for a sync created minutes ago fakes neither an age nor a stuck run."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="New sync")
    now = time.time()
    workspace.add_run(SYNC, "failed", created_at=978307200.0, error_code="E")  # 2001-01-01
    workspace.add_run(SYNC, "failed", created_at=now - 120.0, error_code="E")
    workspace.add_run(SYNC, "working", created_at=946684800.0)  # 2000-01-01
    workspace.update_sync(SYNC, created_at=iso(now - 600.0))
    harness = harness_factory(workspace)
    harness.refresh()
    scrape = harness.scrape()
    since = scrape.value("census_sync_no_success_since_timestamp_seconds", sync_id=str(SYNC))
    assert since is not None and abs(since - (now - 120.0)) < 1.0, "the 2001 run is not the oldest seen"
    unfinished = scrape.value(
        "census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id=str(SYNC)
    )
    assert unfinished is not None and unfinished >= now - 5.0, "the working run counts from when it was seen"


def test_the_first_read_stops_paging_back_once_its_runs_span_the_alert_threshold(
    harness_factory: Callable[..., Harness],
) -> None:
    """A sync failing hourly for 10 days: the first read stops once the runs it read go back 25 hours."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Failing for days")
    now = time.time()
    for k in range(240):
        workspace.add_run(SYNC, "failed", created_at=now - 3600.0 * (240 - k), error_code="E")
    harness = harness_factory(workspace)
    harness.refresh()
    since = harness.scrape().value("census_sync_no_success_since_timestamp_seconds", sync_id=str(SYNC))
    assert since is not None and since <= now - FIRST_READ_LOOKBACK_SECONDS
    assert since > now - 3600.0 * 240, "it did not read all ten days"
    assert harness.simulator.count(f"/syncs/{SYNC}/sync_runs") < FIRST_READ_PAGES_WITHOUT_SUCCESS
