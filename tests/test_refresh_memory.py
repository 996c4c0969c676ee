"""What a refresh keeps alive: at thousands of syncs, copies and leftovers decide the peak memory."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from census_exporter.census.client import CensusClient
from census_exporter.census.listing import Listing, RunsPage
from census_exporter.census.models.runs import SyncRun, parse_status, parse_sync_run
from census_exporter.census.models.syncs import Sync, parse_sync
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.ledger import REMEMBERED_RUN_IDS, SyncLedger
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.refresh.reading import QUEUED_READS_PER_WORKER
from census_exporter.run_counters import RunCounters
from census_exporter.run_ids import RunIds
from census_exporter.workers import DaemonPool
from tests.conftest import TEST_TOKEN


class TrackedRecord(dict[str, Any]):
    """A raw record that can be watched through a weak reference (a plain dict cannot)."""


#: Futures the refreshers' worker pools handed out, held weakly (the pools' own, not other tests' leftovers).
_submitted: weakref.WeakSet[Future[Any]] = weakref.WeakSet()


def count_futures() -> int:
    """Futures handed out by a worker pool (:data:`_submitted`) that are still pending or running: queued
    work. A finished future a worker thread has not yet let go of is no read waiting (counting those made
    the bound flaky: 9 most of the time, 15 for an instant)."""
    gc.collect()
    return sum(not future.done() for future in list(_submitted))


class TrackingAPI:
    """The real client; notes, at every runs request, how many raw sync records are still alive."""

    def __init__(self, client: CensusClient) -> None:
        self.client = client
        self.records: list[weakref.ref[TrackedRecord]] = []
        self.alive_while_reading_runs: list[int] = []
        self.futures_while_reading_runs: list[int] = []

    def list_syncs(self, deadline: float) -> Listing:
        listing = self.client.list_syncs(deadline)
        items = [TrackedRecord(item) for item in listing.items]
        self.records = [weakref.ref(item) for item in items]
        return Listing(items, complete=listing.complete)

    def list_sources(self, deadline: float) -> Listing:
        return self.client.list_sources(deadline)

    def list_destinations(self, deadline: float) -> Listing:
        return self.client.list_destinations(deadline)

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        gc.collect()
        self.alive_while_reading_runs.append(sum(ref() is not None for ref in self.records))
        self.futures_while_reading_runs.append(count_futures())
        return self.client.list_sync_runs(sync_id, page, per_page, deadline)

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        return self.client.get_sync_run(run_id, deadline)


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """Leave what existed before the test (pytest, every imported module) out of the collections the tests
    run at every runs request: what they count is made during the test, and a full collection of the
    whole heap, hundreds of times, took 30 s on a loaded machine."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
def workspace() -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2, 3):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    return workspace


@pytest.fixture
def tracked(workspace: SimulatedWorkspace) -> Iterator[tuple[TrackingAPI, Refresher]]:
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    api = TrackingAPI(client)
    refresher = Refresher(api, RefreshSettings(cache_ttl_seconds=0, concurrency=1))
    try:
        yield api, refresher
    finally:
        refresher.close()
        client.close()
        simulator.close()


def test_the_raw_sync_listing_is_released_before_the_runs_are_read(
    tracked: tuple[TrackingAPI, Refresher],
) -> None:
    api, refresher = tracked
    for _ in range(2):  # the first refresh (baseline) and a steady one
        snapshot = refresher.trigger().result(timeout=10)
        assert snapshot.up and sorted(snapshot.syncs) == [1, 2, 3]
    assert len(api.alive_while_reading_runs) == 6
    assert api.alive_while_reading_runs == [0] * 6


def test_only_a_window_of_sync_reads_is_queued_at_a_time(
    workspace: SimulatedWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sync_id in range(4, 101):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    original_init, original_submit = DaemonPool.__init__, DaemonPool.submit
    # Only the pools this test makes: a refresher an earlier test closed may still be ending a refresh on
    # its own pool, and its futures are not this refresher's.
    ours: weakref.WeakSet[DaemonPool] = weakref.WeakSet()

    def tracked_init(pool: DaemonPool, workers: int, name: str) -> None:
        original_init(pool, workers, name)
        ours.add(pool)

    def tracked_submit(pool: DaemonPool, function: Any, *args: Any) -> Future[Any]:
        future = original_submit(pool, function, *args)
        if pool in ours:
            _submitted.add(future)
        return future

    monkeypatch.setattr(DaemonPool, "__init__", tracked_init)
    monkeypatch.setattr(DaemonPool, "submit", tracked_submit)
    api = TrackingAPI(client)
    refresher = Refresher(api, RefreshSettings(cache_ttl_seconds=0, concurrency=2))
    try:
        for _ in range(2):
            snapshot = refresher.trigger().result(timeout=30)
            assert snapshot.up and len(snapshot.syncs) == 100
    finally:
        refresher.close()
        client.close()
        simulator.close()
    assert len(api.futures_while_reading_runs) == 200
    # The window, plus the refresh's own future and the caller's (a future per sync would be 100 more).
    assert max(api.futures_while_reading_runs) <= 2 * QUEUED_READS_PER_WORKER + 4


def test_consecutive_snapshots_share_what_did_not_change(
    tracked: tuple[TrackingAPI, Refresher], workspace: SimulatedWorkspace
) -> None:
    _, refresher = tracked
    refresher.trigger().result(timeout=10)
    before = refresher.trigger().result(timeout=10)  # both refreshes saw the same syncs and runs
    workspace.update_sync(2, label="renamed")
    workspace.add_run(3)
    after = refresher.trigger().result(timeout=10)

    unchanged, old = after.syncs[1], before.syncs[1]
    assert unchanged.sync is old.sync
    assert unchanged.latest_run is old.latest_run
    assert unchanged.ledger is old.ledger

    assert after.syncs[2].sync.label == "renamed"
    assert after.syncs[3].latest_run != before.syncs[3].latest_run
    counted = after.syncs[3].ledger
    assert counted is not None and counted.counters.runs_by_status["completed"] == 1


def test_zero_counters_are_one_read_only_instance() -> None:
    zero = RunCounters.zero(3)
    assert RunCounters.zero(3) is zero
    with pytest.raises(TypeError):
        zero.runs_by_status["completed"] = 1  # type: ignore[index]
    counted = zero.add(_finished_run(), (1.0, 2.0, 3.0))
    assert counted.runs_by_status["completed"] == 1
    assert zero.runs_by_status["completed"] == 0


def test_words_every_sync_repeats_are_one_object() -> None:
    first, second = (
        parse_sync({"id": sync_id, "label": f"s{sync_id}", "operation": "UPSERT", "mode": {"type": "live"}})
        for sync_id in (1, 2)
    )
    assert isinstance(first, Sync) and isinstance(second, Sync)
    assert first.operation == "upsert" and first.operation is second.operation
    assert first.schedule == "live" and first.schedule is second.schedule
    assert parse_status("Completed") is parse_status("COMPLETED")


def _finished_run(run_id: int = 7) -> SyncRun:
    run = parse_sync_run(
        {
            "id": run_id,
            "status": "completed",
            "created_at": "2024-01-01T00:00:00Z",
            "completed_at": "2024-01-01T00:00:01Z",
        }
    )
    assert isinstance(run, SyncRun)
    return run


def test_remembered_run_ids_take_about_eight_bytes_each() -> None:
    _ledger_memory(10)  # warms what a first parse caches
    # tracemalloc counts every thread's allocations, and a thread an earlier test left winding down can add
    # a few KB to one reading (seen once in a full run): that noise only adds, so take each size's least.
    fewer = min(_ledger_memory(REMEMBERED_RUN_IDS // 2) for _ in range(3))
    more = min(_ledger_memory(REMEMBERED_RUN_IDS) for _ in range(3))
    # A tuple also keeps a 28-byte int object per id besides its 8-byte slot: 36 bytes an id.
    assert (more - fewer) / (REMEMBERED_RUN_IDS // 2) < 12


def _ledger_memory(run_count: int) -> int:
    """Bytes still allocated after a ledger was made from ``run_count`` runs and the runs were dropped."""
    gc.collect()
    tracemalloc.start()
    try:
        # Made while traced: the ids are new int objects, freed with the runs unless the ledger keeps them.
        runs = [_finished_run(run_id=10**12 + n) for n in range(run_count)]
        ledger = SyncLedger.baseline(runs)
        del runs
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ledger.recent_run_ids) == run_count and ledger.knows(10**12 + run_count - 1)
    return held


def test_packed_run_ids_compare_like_the_tuple_they_hold() -> None:
    ids = RunIds([2, 3, 5])
    assert ids == (2, 3, 5) and ids == (2, 3, 5) and ids == RunIds((2, 3, 5))
    assert ids != (2, 3) and ids != "235"
    assert list(ids[1:]) == [3, 5] and ids[-1] == 5 and len(ids) == 3
    assert hash(ids) == hash(RunIds([2, 3, 5]))
