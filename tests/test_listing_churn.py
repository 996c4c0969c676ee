"""A sync missing from one listing keeps its ledger and series until it is confirmed gone."""

from __future__ import annotations

import threading
from collections.abc import Callable

from census_exporter.demo import SimulatedWorkspace
from tests.conftest import Harness

HarnessFactory = Callable[..., Harness]


def delete_after_first_page(
    sync_id: int, workspace: SimulatedWorkspace
) -> Callable[[str, dict[str, list[str]]], None]:
    """An after_response hook that deletes ``sync_id`` once, right after page 1 of /syncs was sent."""
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
    h.simulator.after_response = delete_after_first_page(1, workspace)
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
