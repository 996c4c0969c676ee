"""The exposition settings: what each one renders, and workspace totals that count every run exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from census_exporter.census.models.fields import Skipped
from census_exporter.census.models.runs import parse_sync_run
from census_exporter.census.models.syncs import parse_sync
from census_exporter.cli.assembly import parse_config
from census_exporter.collector import CensusCollector
from census_exporter.config import Exposition
from census_exporter.demo import DemoActivity, SimulatedWorkspace, reference_workspace
from census_exporter.ledger import SyncLedger
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.totals import WorkspaceTotals
from tests.conftest import Harness, Scrape, parse_scrape, wait_for

HarnessFactory = Callable[..., Harness]

SETTINGS = {
    "default": Exposition(),
    "everything": Exposition.everything(),
    "histogram off": Exposition(duration_histogram="off"),
    "per sync, no details": Exposition(duration_histogram="sync", record_totals="sync"),
}
RUN_DETAILS = (
    "census_sync_last_run_id",
    "census_sync_last_run_completed_timestamp_seconds",
    "census_sync_last_run_scheduled_timestamp_seconds",
    "census_sync_last_failure_timestamp_seconds",
)
RECORDS = ("records_processed", "records_updated", "records_failed", "records_invalid", "source_records")


def names(scrape: Scrape) -> set[str]:
    return {name for name, _ in scrape.samples}


def sync_series(scrape: Scrape, sync_id: str) -> list[str]:
    return [name for name, labels in scrape.samples if ("sync_id", sync_id) in labels]


def test_by_default_a_sync_has_one_status_series_and_its_run_flags_are_labels(
    harness_factory: HarnessFactory,
) -> None:
    m = harness_factory(reference_workspace()).scrape()
    statuses = m.all("census_sync_last_run_status", sync_id="52")
    assert statuses == {frozenset({("workspace", "default"), ("sync_id", "52"), ("status", "completed")}): 1}
    info = m.all("census_sync_last_run_info", sync_id="52")
    assert [dict(labels) for labels in info] == [
        {
            "workspace": "default",
            "sync_id": "52",
            "trigger": "Manual",
            "error_code": "",
            "full_sync": "true",
            "canceled": "false",
        }
    ]
    exposed = names(m)
    assert not exposed & set(RUN_DETAILS)
    assert not {name for name in exposed if name.startswith("census_sync_run_duration_seconds")}
    assert not {f"census_sync_{name}_total" for name in RECORDS} & exposed
    assert {f"census_workspace_{name}_total" for name in RECORDS} <= exposed
    assert m.value("census_workspace_run_duration_seconds_count", workspace="default") == 0
    assert len(sync_series(m, "52")) <= 20


@pytest.mark.parametrize("setting", SETTINGS.values(), ids=list(SETTINGS))
def test_each_setting_renders_exactly_its_families(
    harness_factory: HarnessFactory, setting: Exposition
) -> None:
    workspace = reference_workspace()
    h = harness_factory(workspace, exposition=setting)
    h.scrape()
    workspace.add_run(52, "failed", error_code="DESTINATION_REJECTED", records=10, records_failed=3)
    workspace.add_run(52, scheduled=True)
    exposed = names(h.scrape())
    histograms = {
        "sync": "census_sync_run_duration_seconds_bucket",
        "workspace": "census_workspace_run_duration_seconds_bucket",
    }
    for where, family in histograms.items():
        assert (family in exposed) == (setting.duration_histogram == where), family
    for name in RECORDS:
        assert (f"census_sync_{name}_total" in exposed) == (setting.record_totals == "sync"), name
        assert (f"census_workspace_{name}_total" in exposed) == (setting.record_totals == "workspace"), name
    for name in RUN_DETAILS:
        assert (name in exposed) == setting.run_details, name


def test_workspace_totals_are_the_sums_of_the_per_sync_totals(harness_factory: HarnessFactory) -> None:
    """The same view rendered both ways: every run counted per sync is counted once per workspace."""
    workspace = SimulatedWorkspace()
    now = [time.time()]
    activity = DemoActivity(workspace, seed=3, syncs=12, clock=lambda: now[0])
    h = harness_factory(workspace)
    h.scrape()
    # Six simulated hours pass between two refreshes: plenty of runs finish (the demo's clock, not a sleep).
    for _ in range(36):
        now[0] += 600
        activity.advance()
    h.refresh()
    view = h.exporter.fleet.view
    per_workspace = parse_scrape(CensusCollector(0.0).render(view).text().decode())
    per_sync = parse_scrape(CensusCollector(0.0, Exposition.everything()).render(view).text().decode())
    counted = sum(per_sync.all("census_sync_run_duration_seconds_count").values())
    assert counted > 0, "the demo finished no run: nothing was compared"
    assert per_workspace.value("census_workspace_run_duration_seconds_count") == counted
    for le in ("60", "600", "+Inf"):
        assert per_workspace.value("census_workspace_run_duration_seconds_bucket", le=le) == sum(
            per_sync.all("census_sync_run_duration_seconds_bucket", le=le).values()
        )
    for name in RECORDS:
        assert per_workspace.value(f"census_workspace_{name}_total") == sum(
            per_sync.all(f"census_sync_{name}_total").values()
        ), name


def test_workspace_totals_keep_the_runs_of_a_sync_that_left(harness_factory: HarnessFactory) -> None:
    """A sum over the syncs listed now would drop when one is deleted, and Prometheus would read the drop
    as a counter reset (rate() adding everything once more)."""
    workspace = reference_workspace()
    workspace.add_sync(60, label="Soon gone")
    workspace.add_run(60)
    h = harness_factory(workspace)
    h.scrape()  # baseline: nothing counted
    workspace.add_run(60, records=40, duration=30.0)
    workspace.add_run(52, records=2, duration=30.0)
    before = h.scrape()
    assert before.value("census_workspace_records_processed_total") == 42
    assert before.value("census_workspace_run_duration_seconds_count") == 2
    workspace.remove_sync(60)

    def gone() -> Scrape | None:
        m = h.scrape()
        return None if m.all("census_sync_info", sync_id="60") else m

    after = wait_for(gone, timeout=30, what="sync 60 leaving the exposition")
    assert after.value("census_workspace_records_processed_total") == 42
    assert after.value("census_workspace_run_duration_seconds_count") == 2
    workspace.add_run(52, records=1, duration=30.0)
    assert h.scrape().value("census_workspace_records_processed_total") == 43


def _snapshot(started: float, runs_processed: dict[int, int]) -> Snapshot:
    """A workspace whose syncs each counted one run that processed the given number of records."""
    syncs = {}
    for sync_id, processed in runs_processed.items():
        sync = parse_sync({"id": sync_id, "label": f"s{sync_id}"})
        ledger = SyncLedger.baseline([])
        run = parse_sync_run(
            {
                "id": 1,
                "sync_id": sync_id,
                "status": "completed",
                "records_processed": processed,
                "created_at": "2024-01-01T00:00:00Z",
                "completed_at": "2024-01-01T00:01:00Z",
            }
        )
        assert not isinstance(sync, Skipped) and not isinstance(run, Skipped)
        ledger = ledger.advance([run]).ledger
        syncs[sync_id] = SyncState(sync=sync, ledger=ledger)
    return Snapshot(workspace="w", syncs=syncs, listed=True, started_monotonic=started)


def test_workspace_totals_never_go_down() -> None:
    totals = WorkspaceTotals()
    assert totals.total(_snapshot(1.0, {1: 10, 2: 5})).records_processed == 15
    # Sync 2 left and sync 1's ledger started again (it left and came back): both keep what they counted.
    assert totals.total(_snapshot(2.0, {1: 3})).records_processed == 18
    # A scrape that took its view before the last swap gets the newer, higher totals.
    assert totals.total(_snapshot(1.5, {1: 10, 2: 5})).records_processed == 18
    # The same view again changes nothing.
    same = _snapshot(3.0, {1: 4})
    assert totals.total(same).records_processed == totals.total(same).records_processed == 19
    totals.forget_except([])
    assert totals.total(replace(same, started_monotonic=4.0)).records_processed == 4


def test_the_flags_and_variables_choose_the_exposition() -> None:
    token = {"CENSUS_API_TOKEN": "secret-token:x"}
    assert parse_config([], token).exposition == Exposition()
    chosen = parse_config(
        ["--census.duration-histogram=off", "--census.run-details"], token | {"CENSUS_RECORD_TOTALS": "sync"}
    )
    assert chosen.exposition == Exposition(duration_histogram="off", record_totals="sync", run_details=True)
