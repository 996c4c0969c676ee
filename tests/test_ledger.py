"""SyncLedger: each run is counted exactly once, when first seen finished."""

from __future__ import annotations

from census_exporter.census.models.runs import SyncRun
from census_exporter.ledger import MAX_PENDING_RUNS_PER_SYNC, REMEMBERED_RUN_IDS, SyncLedger
from census_exporter.run_counters import MAX_UNDOCUMENTED_STATUSES, OTHER_STATUS
from tests.factories import make_run


def run(run_id: int, status: str = "completed", duration: float = 30.0, records: int | None = 10) -> SyncRun:
    finished = status not in ("queued", "working")
    return make_run(
        run_id,
        status,
        sync_id=1,
        created_at=1000.0 + run_id,
        updated_at=1000.0 + run_id + duration,
        completed_at=1000.0 + run_id + duration if finished and status != "failed" else None,
        source_record_count=records,
        records_processed=records,
        records_updated=records,
        records_failed=1 if records else None,
        records_invalid=0,
        canceled=False,
        full_sync=False,
    )


def test_baseline_counts_nothing_but_remembers_outcome_times() -> None:
    ledger = SyncLedger.baseline([run(3), run(2, "failed"), run(4, "working")])
    assert ledger.counters.runs_by_status == {"completed": 0, "failed": 0, "skipped": 0}
    assert ledger.counters.records_processed == 0
    assert ledger.recent_run_ids == (2, 3, 4)
    assert ledger.pending_run_ids == {4}
    assert ledger.last_success_at == 1000.0 + 3 + 30
    assert ledger.last_failure_at == 1000.0 + 2 + 30  # updated_at, since completed_at is null


def test_new_finished_runs_are_counted_once() -> None:
    ledger = SyncLedger.baseline([run(1)])
    update = ledger.advance([run(3), run(2, "failed"), run(1)])
    assert [r.id for r in update.counted] == [2, 3]
    again = update.ledger.advance([run(3), run(2, "failed"), run(1)])
    assert again.counted == ()
    counters = again.ledger.counters
    assert counters.runs_by_status == {"completed": 1, "failed": 1, "skipped": 0}
    assert counters.records_processed == 20
    assert counters.records_failed == 2


def test_working_then_completed_is_counted_when_it_finishes() -> None:
    ledger = SyncLedger.baseline([run(1)])
    seen_working = ledger.advance([run(2, "working")])
    assert seen_working.counted == ()
    assert seen_working.ledger.pending_run_ids == {2}
    still_working = seen_working.ledger.advance([run(2, "working")])
    assert still_working.counted == ()
    finished = still_working.ledger.advance([run(2, "completed", duration=90.0)])
    assert [r.id for r in finished.counted] == [2]
    assert finished.ledger.pending_run_ids == frozenset()
    assert finished.ledger.counters.duration_count == 1
    assert finished.ledger.counters.duration_sum_seconds == 90.0
    # 90 s falls in the (60, 120] bucket, the fourth slot
    assert finished.ledger.counters.duration_bucket_counts[3] == 1
    assert finished.ledger.advance([run(2, "completed", duration=90.0)]).counted == ()


def test_a_run_working_at_startup_is_counted_when_it_finishes() -> None:
    ledger = SyncLedger.baseline([run(5, "queued"), run(4)])
    update = ledger.advance([run(5, "failed"), run(4)])
    assert [r.id for r in update.counted] == [5]
    assert update.ledger.counters.runs_by_status["failed"] == 1


def test_pending_runs_the_api_lost_are_forgotten_uncounted() -> None:
    ledger = SyncLedger.baseline([run(5, "working")])
    assert ledger.pending_missing_from([]) == {5}
    update = ledger.advance([], gone_run_ids=[5])
    assert update.counted == ()
    assert update.ledger.pending_run_ids == frozenset()


def test_unknown_statuses_are_counted_under_their_own_name() -> None:
    update = SyncLedger.baseline([]).advance([run(1, "cancelled")])
    assert update.ledger.counters.runs_by_status["cancelled"] == 1


def test_null_counts_add_nothing() -> None:
    update = SyncLedger.baseline([]).advance([run(1, "failed", records=None)])
    counters = update.ledger.counters
    assert counters.runs_by_status["failed"] == 1
    assert counters.records_processed == 0
    assert counters.records_failed == 0


def test_undocumented_statuses_are_capped_per_sync_and_the_rest_counted_as_other() -> None:
    odd = [f"odd_{n}" for n in range(MAX_UNDOCUMENTED_STATUSES + 3)]
    runs = [run(number, status) for number, status in enumerate(odd, start=1)]
    update = SyncLedger.baseline([]).advance(
        [*runs, run(20, "completed"), run(21, "odd_0"), run(22, "odd_7")]
    )
    counts = update.ledger.counters.runs_by_status
    assert counts == {
        "completed": 1,
        "failed": 0,
        "skipped": 0,
        "odd_0": 2,
        **dict.fromkeys(odd[1:MAX_UNDOCUMENTED_STATUSES], 1),
        OTHER_STATUS: 4,  # odd_5, odd_6, odd_7 and odd_7 again
    }
    later = update.ledger.advance([run(30, "failed"), run(31, "odd_2"), run(32, "brand_new")])
    assert later.ledger.counters.runs_by_status["failed"] == 1
    assert later.ledger.counters.runs_by_status["odd_2"] == 2
    assert later.ledger.counters.runs_by_status[OTHER_STATUS] == 5
    assert "brand_new" not in later.ledger.counters.runs_by_status


def test_cumulative_duration_counts_add_up_the_buckets_for_the_histogram() -> None:
    durations = [5.0, 45.0, 50.0, 100_000.0]
    update = SyncLedger.baseline([]).advance(
        [run(number, duration=duration) for number, duration in enumerate(durations, start=1)]
    )
    cumulative = update.ledger.counters.cumulative_duration_counts()
    assert cumulative == (1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4)  # 10, 30, 60, ... 21600, +Inf


def test_a_bogus_huge_id_is_one_remembered_id_and_smaller_new_ids_still_count() -> None:
    ledger = SyncLedger.baseline([run(10), run(9)])
    glitch = ledger.advance([run(2**62, "working"), run(11), run(10)])
    assert [r.id for r in glitch.counted] == [11]
    assert glitch.implausible_run_ids == (2**62,)
    gone = glitch.ledger.advance([run(12), run(11)], gone_run_ids=[2**62])
    assert [r.id for r in gone.counted] == [12]
    assert gone.implausible_run_ids == ()
    assert gone.ledger.pending_run_ids == frozenset()


def test_remembered_ids_are_bounded_and_older_ids_count_as_known() -> None:
    ledger = SyncLedger.baseline([run(1)])
    many = ledger.advance([run(run_id) for run_id in range(2, REMEMBERED_RUN_IDS + 100)]).ledger
    assert len(many.recent_run_ids) == REMEMBERED_RUN_IDS
    assert many.knows(5) and many.knows(REMEMBERED_RUN_IDS + 50)
    assert many.advance([run(5), run(REMEMBERED_RUN_IDS + 50)]).counted == ()
    assert not many.knows(REMEMBERED_RUN_IDS + 100)


def test_the_pending_set_is_capped_and_the_oldest_are_dropped() -> None:
    ledger = SyncLedger.baseline([run(1)])
    working = [run(run_id, "working") for run_id in range(2, MAX_PENDING_RUNS_PER_SYNC + 12)]
    update = ledger.advance(working)
    assert len(update.ledger.pending_run_ids) == MAX_PENDING_RUNS_PER_SYNC
    assert update.dropped_pending_run_ids == tuple(range(2, 12))
    assert min(update.ledger.pending_run_ids) == 12


def test_pending_lookups_continue_after_the_last_one_looked_up() -> None:
    ledger = SyncLedger.baseline([run(run_id, "working") for run_id in range(1, 8)])
    assert ledger.pending_lookup_order([1, 2, 3, 4, 5]) == [1, 2, 3, 4, 5]
    after_three = ledger.advance([], last_pending_lookup=3).ledger
    assert after_three.pending_lookup_order([1, 2, 3, 4, 5]) == [4, 5, 1, 2, 3]
    assert after_three.advance([]).ledger.last_pending_lookup == 3  # no lookups: the cursor stays
