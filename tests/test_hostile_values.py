"""One odd value never breaks a scrape: it is rejected at the model boundary, and if a value that cannot be
rendered gets past it anyway, only that sync's series are left out of that scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest
from cachetools import LRUCache

from census_exporter import collector
from census_exporter.census.models.fields import NAME_LIMIT, WORD_LIMIT
from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync
from census_exporter.collector import CensusCollector
from census_exporter.config import Exposition
from census_exporter.demo import reference_workspace
from census_exporter.ledger import DEFAULT_DURATION_BUCKETS, SyncLedger
from census_exporter.rendering import RenderedFamilies
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import FleetView, Snapshot, SyncState
from tests.conftest import Harness, parse_scrape
from tests.factories import make_run, make_sync

HarnessFactory = Callable[..., Harness]


def sync(sync_id: int, label: str = "ok") -> Sync:
    return make_sync(sync_id, label=label, destination_object="Lead", schedule="daily")


def finished_run(run_id: int, records: int = 10) -> SyncRun:
    return make_run(
        run_id,
        created_at=1_700_000_000.0,
        updated_at=1_700_000_060.0,
        completed_at=1_700_000_060.0,
        source_record_count=records,
        records_processed=records,
        records_updated=records,
        records_failed=0,
        records_invalid=0,
        canceled=False,
        full_sync=False,
        trigger="Schedule",
    )


def state(sync_id: int, run: SyncRun, label: str = "ok") -> SyncState:
    ledger = SyncLedger.baseline([]).advance([run]).ledger
    return SyncState(sync=sync(sync_id, label), latest_run=run, ledger=ledger)


def hostile_snapshot() -> Snapshot:
    """Sync 1 is fine; 2, 3 and 4 each hold one value no parser would let through, built by hand."""
    healthy = state(1, finished_run(11))
    huge_counter = SyncState(
        sync=sync(2),
        latest_run=finished_run(12),
        ledger=SyncLedger(
            recent_run_ids=(12,),
            pending_run_ids=frozenset(),
            counters=replace(RunCounters.zero(len(DEFAULT_DURATION_BUCKETS)), records_processed=10**400),
        ),
    )
    huge_last_run = state(3, finished_run(13, records=10**400))
    surrogate_label = state(4, finished_run(14), label="bad \ud800 label")
    syncs = {s.sync.id: s for s in (healthy, huge_counter, huge_last_run, surrogate_label)}
    return Snapshot(workspace="default", syncs=syncs, up=True, refreshed=True, listed=True)


FORMATS = [RenderedFamilies.text, RenderedFamilies.openmetrics]


@pytest.mark.parametrize("encode", FORMATS, ids=["text", "openmetrics"])
def test_a_sync_whose_values_cannot_render_loses_only_its_own_series(
    encode: Callable[[RenderedFamilies], bytes],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The log-once memory is process-wide; start from a fresh one so that each encoder's test sees it.
    monkeypatch.setattr(collector, "_logged_unrenderable", LRUCache(maxsize=16))
    census = CensusCollector(60.0, Exposition.everything())
    view = FleetView((hostile_snapshot(),))
    with caplog.at_level(logging.WARNING, logger="census_exporter.collector"):
        text = encode(census.render(view)).decode()
        census.render(view)  # every new view renders again; the log says it once
    assert 'census_sync_info{destination="",destination_object="Lead",label="ok"' in text
    assert 'census_sync_records_processed_total{sync_id="1",workspace="default"} 10.0' in text
    assert 'census_sync_last_run_records_processed{sync_id="1",workspace="default"} 10.0' in text
    assert 'census_up{workspace="default"} 1.0' in text
    assert 'census_syncs{workspace="default"} 4.0' in text
    for bad in ("2", "3", "4"):
        assert f'sync_id="{bad}"' not in text  # all or nothing per sync: no half-rendered sync
    lines = [r for r in caplog.records if "left out of the scrape" in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in lines) == ["2", "3", "4"]
    assert all(r.exc_info is None for r in lines)


@pytest.mark.parametrize("encode", FORMATS, ids=["text", "openmetrics"])
def test_workspace_totals_leave_out_only_the_counts_that_cannot_render(
    encode: Callable[[RenderedFamilies], bytes],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector, "_logged_unrenderable", LRUCache(maxsize=16))
    census = CensusCollector(60.0)  # the default: per workspace
    view = FleetView((hostile_snapshot(),))
    with caplog.at_level(logging.WARNING, logger="census_exporter.collector"):
        text = encode(census.render(view)).decode()
        census.render(view)
    # Syncs 2 and 3 counted 10**400 records: the workspace totals are those of syncs 1 and 4.
    assert 'census_workspace_records_processed_total{workspace="default"} 20.0' in text
    assert 'census_sync_paused{sync_id="2",workspace="default"} 0.0' in text  # its own series render
    lines = [r for r in caplog.records if "left out of the scrape" in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in lines) == ["2", "3", "4"]


def test_hostile_api_values_never_fail_a_scrape_over_http(harness_factory: HarnessFactory) -> None:
    workspace = reference_workspace()
    huge = "L" * 1_000_000
    workspace.add_sync(60, label="lone \ud800 surrogate", destination_object="Obj\udc00ect")
    workspace.add_sync(61, label=huge, destination_object=huge)
    workspace.add_sync(62, label="huge counts")
    h = harness_factory(workspace, exposition=Exposition.everything())
    h.scrape()  # baseline
    workspace.add_run(
        62,
        raw={
            "id": 500,
            "sync_id": 62,
            "status": "completed",
            "records_processed": 10**400,
            "records_updated": 10**400,
            "source_record_count": 1,
            "created_at": "2021-10-20T02:51:07.546Z",
            "completed_at": "2021-10-20T02:52:07.546Z",
            "error_code": "E" * 1_000_000,
        },
    )
    workspace.add_run(60, "failed", error_code="bad \ud800 code", trigger="Sched\x00ule")
    workspace.add_run(61, "S" * 5000)
    for _ in range(3):
        response = h.get("/metrics")
        assert response.status_code == 200
        m = parse_scrape(response.text)
        assert m.value("census_up") == 1
        assert max(len(line) for line in response.text.splitlines()) < 2000
        # The documented example is intact.
        assert m.value("census_sync_last_run_id", sync_id="52") == 94
        assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 0
    info_60 = dict(next(iter(m.all("census_sync_info", sync_id="60"))))
    assert info_60["label"] == "lone \ufffd surrogate" and info_60["destination_object"] == "Obj\ufffdect"
    assert m.value("census_sync_last_run_info", sync_id="60", error_code="bad \ufffd code") == 1
    info_61 = dict(next(iter(m.all("census_sync_info", sync_id="61"))))
    assert len(info_61["label"]) == NAME_LIMIT and info_61["label"].endswith("\u2026")
    statuses_61 = [dict(labels)["status"] for labels in m.all("census_sync_last_run_status", sync_id="61")]
    assert len(statuses_61) == 1 and len(statuses_61[0]) == WORD_LIMIT
    # The out-of-range counts are unknown (absent), the run itself is counted once.
    assert m.value("census_sync_last_run_records_processed", sync_id="62") is None
    assert m.value("census_sync_records_processed_total", sync_id="62") == 0
    assert m.value("census_sync_last_run_source_records", sync_id="62") == 1
    assert m.value("census_sync_runs_total", sync_id="62", status="completed") == 1
    code_62 = dict(next(iter(m.all("census_sync_last_run_info", sync_id="62"))))["error_code"]
    assert len(code_62) == WORD_LIMIT


def test_openmetrics_scrape_survives_hostile_values_too(harness_factory: HarnessFactory) -> None:
    workspace = reference_workspace()
    workspace.add_sync(60, label="lone \ud800 surrogate")
    h = harness_factory(workspace)
    response = h.get("/metrics", Accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert response.status_code == 200
    assert "lone \ufffd surrogate" in response.text and response.text.endswith("# EOF\n")
