"""A sync missing from one listing keeps its ledger and series until it is confirmed gone."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from census_exporter.census.client import CensusClient
from census_exporter.census.listing import Listing, RunsPage
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.refresh import (
    GONE_AFTER_MISSING_LISTINGS,
    GONE_AFTER_MISSING_SECONDS,
    LIST_CHANGED_ERROR,
    Refresher,
    RefreshSettings,
)
from census_exporter.snapshot import SyncState
from tests.conftest import TEST_TOKEN, Harness

HarnessFactory = Callable[..., Harness]


def delete_after_first_page(
    sync_id: int, workspace: SimulatedWorkspace
) -> Callable[[str, dict[str, list[str]]], None]:
    """An after_answer hook that deletes ``sync_id`` once, right after page 1 of /syncs was answered."""
    armed = threading.Event()
    armed.set()

    def hook(path: str, query: dict[str, list[str]]) -> None:
        if path.endswith("/syncs") and query.get("page") == ["1"] and armed.is_set():
            armed.clear()
            workspace.remove_sync(sync_id)

    return hook


def test_a_sync_shifted_out_of_a_listing_keeps_counting_its_runs(harness_factory: HarnessFactory) -> None:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 151):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    h = harness_factory(workspace)
    h.refresh()  # baseline: nothing counted
    assert h.scrape().value("census_sync_runs_total", sync_id="101", status="completed") == 0

    # Sync 1 is deleted right after page 1 is served: sync 101 moves onto page 1 and no page shows it.
    h.simulator.after_answer = delete_after_first_page(1, workspace)
    workspace.add_run(101)
    workspace.add_run(101)
    h.refresh()
    snapshot = h.exporter.refresher.snapshot
    assert 1 not in snapshot.syncs  # really deleted: its runs endpoint answers 404
    shifted = snapshot.syncs[101]
    assert shifted.ledger is not None and shifted.ledger.counters.runs_by_status["completed"] == 2

    workspace.add_run(101)
    m = h.scrape()
    assert m.value("census_sync_runs_total", sync_id="101", status="completed") == 3
    assert m.value("census_syncs") == 149
    assert m.value("census_up") == 1


class ShiftingListing:
    """The real client, except that sync listings can be made to miss syncs or be reported incomplete."""

    def __init__(self, client: CensusClient) -> None:
        self.client = client
        self.hidden: set[int] = set()
        self.complete = True

    def list_syncs(self, deadline: float) -> Listing:
        items = [item for item in self.client.list_syncs(deadline).items if item["id"] not in self.hidden]
        return Listing(items, complete=self.complete)

    def list_sources(self, deadline: float) -> Listing:
        return self.client.list_sources(deadline)

    def list_destinations(self, deadline: float) -> Listing:
        return self.client.list_destinations(deadline)

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        return self.client.list_sync_runs(sync_id, page, per_page, deadline)

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        return self.client.get_sync_run(run_id, deadline)


@pytest.fixture
def shifting() -> Iterator[tuple[SimulatedWorkspace, ShiftingListing, Refresher, list[float]]]:
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    api = ShiftingListing(client)
    skipped = [0.0]  # seconds the test moved the refresher's clock ahead of the client's
    refresher = Refresher(
        api, RefreshSettings(cache_ttl_seconds=0), clock=lambda: time.monotonic() + skipped[0]
    )
    try:
        yield workspace, api, refresher, skipped
    finally:
        refresher.close()
        client.close()
        simulator.close()


def test_an_incomplete_listing_keeps_every_sync_and_turns_census_up_to_0(
    shifting: tuple[SimulatedWorkspace, ShiftingListing, Refresher, list[float]],
) -> None:
    workspace, api, refresher, _ = shifting
    refresher.trigger().result(timeout=10)
    api.hidden, api.complete = {2}, False
    workspace.add_run(2)
    snapshot = refresher.trigger().result(timeout=10)
    assert not snapshot.up
    assert snapshot.last_error == f"GET /syncs: {LIST_CHANGED_ERROR}"
    state = snapshot.syncs[2]
    assert state.missing_listings == 0  # an incomplete listing proves nothing about absence
    assert state.ledger is not None and state.ledger.counters.runs_by_status["completed"] == 1


def test_a_sync_still_answering_is_dropped_only_after_the_grace_period(
    shifting: tuple[SimulatedWorkspace, ShiftingListing, Refresher, list[float]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace, _, refresher, skipped = shifting
    refresher.trigger().result(timeout=10)
    workspace.remove_sync(2, keep_runs_endpoint=True)  # unlisted, but its runs still answer
    for listings in range(1, GONE_AFTER_MISSING_LISTINGS + 1):
        workspace.add_run(2)
        snapshot = refresher.trigger().result(timeout=10)
        assert snapshot.up
        state = snapshot.syncs[2]
        assert state.missing_listings == listings
        assert state.ledger is not None and state.ledger.counters.runs_by_status["completed"] == listings
    skipped[0] += GONE_AFTER_MISSING_SECONDS - 60  # enough listings, not yet long enough
    assert 2 in refresher.trigger().result(timeout=10).syncs
    skipped[0] += 60
    with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
        snapshot = refresher.trigger().result(timeout=10)
    assert set(snapshot.syncs) == {1}
    assert [r.getMessage() for r in caplog.records] == [
        "sync 2 (s2) has not been listed for 5 refreshes; dropping its series"
    ]

    workspace.add_sync(2, label="s2")  # listed again later: a fresh baseline, nothing counted twice
    snapshot = refresher.trigger().result(timeout=10)
    ledger = snapshot.syncs[2].ledger
    assert ledger is not None and ledger.counters.runs_by_status["completed"] == 0


def test_an_incomplete_first_listing_after_a_restart_keeps_every_restored_sync_counting(
    shifting: tuple[SimulatedWorkspace, ShiftingListing, Refresher, list[float]],
) -> None:
    workspace, api, before, _ = shifting
    before.trigger().result(timeout=10)
    workspace.add_run(2)
    stored = before.trigger().result(timeout=10).syncs  # what --storage.path would have restored
    assert stored[2].ledger is not None and stored[2].ledger.counters.runs_by_status["completed"] == 1
    workspace.add_run(2)  # finished while "down"
    api.hidden, api.complete = {2}, False
    restarted = Refresher(
        api,
        RefreshSettings(cache_ttl_seconds=0),
        restored={
            sync_id: SyncState(sync=state.sync, ledger=state.ledger) for sync_id, state in stored.items()
        },
    )
    try:
        snapshot = restarted.trigger().result(timeout=10)
        assert snapshot.last_error == f"GET /syncs: {LIST_CHANGED_ERROR}"
        state = snapshot.syncs[2]
        assert state.missing_listings == 0  # an incomplete listing proves nothing about absence
        assert state.ledger is not None and state.ledger.counters.runs_by_status["completed"] == 2
        api.hidden, api.complete = set(), True
        workspace.add_run(2)
        again = restarted.trigger().result(timeout=10).syncs[2]
        assert again.ledger is not None and again.ledger.counters.runs_by_status["completed"] == 3
    finally:
        restarted.close()
