"""The exporter against the Census API simulator, over real HTTP on loopback."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from census_exporter.census.models.fields import parse_timestamp
from census_exporter.config import Exposition
from census_exporter.demo import Fault, SimulatedWorkspace, reference_workspace
from tests.conftest import TEST_TOKEN, Harness

HarnessFactory = Callable[..., Harness]


@pytest.fixture
def harness_factory(harness_factory: HarnessFactory) -> HarnessFactory:
    """These tests check every per-sync series: each harness exports all of them unless told otherwise."""
    return functools.partial(harness_factory, exposition=Exposition.everything())


def ts(text: str) -> float:
    value = parse_timestamp(text)
    assert value is not None
    return value


def test_documented_example_sync_52_exact_values(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    m = h.scrape()
    ids = {"workspace": "default", "sync_id": "52"}

    assert m.value("census_up", workspace="default") == 1
    assert m.value("census_syncs", workspace="default") == 1
    info = m.all("census_sync_info", **ids)
    assert list(info.values()) == [1]
    assert dict(next(iter(info))) == ids | {
        "label": "New Signups to Leads",
        "operation": "upsert",
        "source": "Snowflake Production",
        "destination": "Salesforce",
        "destination_object": "Lead",
        "schedule": "daily",
    }
    assert m.value("census_sync_paused", **ids) == 0
    statuses = {
        dict(labels)["status"]: value for labels, value in m.all("census_sync_last_run_status", **ids).items()
    }
    assert statuses == {"completed": 1}  # one series per sync: the newest run's status
    assert m.value("census_sync_last_run_id", **ids) == 94
    assert m.value("census_sync_last_run_created_timestamp_seconds", **ids) == pytest.approx(1634698267.546)
    assert m.value("census_sync_last_run_completed_timestamp_seconds", **ids) == pytest.approx(
        ts("2021-10-20T02:52:29.234Z")
    )
    assert m.value("census_sync_last_run_duration_seconds", **ids) == pytest.approx(81.688)
    assert m.value("census_sync_last_run_scheduled_timestamp_seconds", **ids) is None  # manual run
    for name, expected in [
        ("census_sync_last_run_source_records", 1),
        ("census_sync_last_run_records_processed", 1),
        ("census_sync_last_run_records_updated", 1),
        ("census_sync_last_run_records_failed", 0),
        ("census_sync_last_run_records_invalid", 0),
    ]:
        assert m.value(name, **ids) == expected, name
    run_info = {"trigger": "Manual", "error_code": "", "full_sync": "true", "canceled": "false"}
    assert m.value("census_sync_last_run_info", **ids, **run_info) == 1
    assert m.value("census_sync_last_success_timestamp_seconds", **ids) == pytest.approx(
        ts("2021-10-20T02:52:29.234Z")
    )
    # Run 93 failed with completed_at null: its failure time is updated_at.
    assert m.value("census_sync_last_failure_timestamp_seconds", **ids) == pytest.approx(
        ts("2021-10-20T02:49:53.430Z")
    )
    # Runs that had finished before the exporter started are not counted; counters start at 0.
    for status in ("completed", "failed", "skipped"):
        assert m.value("census_sync_runs_total", **ids, status=status) == 0
    assert m.value("census_sync_records_processed_total", **ids) == 0
    assert m.value("census_sync_run_duration_seconds_count", **ids) == 0
    assert m.value("census_api_requests_total", endpoint="/syncs/{id}/sync_runs", code="200") == 1
    # ui_detail carries an email address and error_message free text: neither may be exported.
    assert "getcensus.com" not in m.text
    assert "JSON Array" not in m.text


def test_runs_finishing_between_scrapes_are_counted_once(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    h.workspace.add_run(
        52, "completed", run_id=95, records=50, records_failed=5, records_invalid=2, duration=120
    )
    h.workspace.add_run(52, "failed", run_id=96, error_code="INVALID_CREDENTIALS")
    ids = {"sync_id": "52"}
    for _ in range(3):  # no double counting across refreshes
        m = h.scrape()
        assert m.value("census_sync_runs_total", **ids, status="completed") == 1
        assert m.value("census_sync_runs_total", **ids, status="failed") == 1
        assert m.value("census_sync_records_processed_total", **ids) == 50
        assert m.value("census_sync_records_updated_total", **ids) == 43
        assert m.value("census_sync_records_failed_total", **ids) == 5
        assert m.value("census_sync_records_invalid_total", **ids) == 2
        assert m.value("census_sync_source_records_total", **ids) == 150  # 50 + the failed run's 100
        assert m.value("census_sync_run_duration_seconds_count", **ids) == 2
        assert m.value("census_sync_run_duration_seconds_bucket", **ids, le="120") == 2
        assert m.value("census_sync_run_duration_seconds_bucket", **ids, le="60") == 1
    assert m.value("census_sync_last_run_status", **ids, status="failed") == 1
    assert (
        m.value("census_sync_last_run_info", **ids, trigger="Schedule", error_code="INVALID_CREDENTIALS") == 1
    )
    assert m.value("census_sync_last_run_records_processed", **ids) is None  # null on the failed run
    # The last success stays known although the newest run failed.
    assert m.value("census_sync_last_success_timestamp_seconds", **ids) is not None


def test_working_then_completed(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    h.workspace.add_run(52, "working", run_id=200)
    m = h.scrape()
    assert m.value("census_sync_last_run_status", sync_id="52", status="working") == 1
    assert m.value("census_sync_last_run_duration_seconds", sync_id="52") is None
    assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 0
    h.workspace.finish_run(200, "completed", duration=300, records=7)
    for _ in range(2):
        m = h.scrape()
        assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 1
        assert m.value("census_sync_records_processed_total", sync_id="52") == 7
    assert m.value("census_sync_last_run_duration_seconds", sync_id="52") == pytest.approx(300)


def test_a_burst_larger_than_a_page_is_counted_in_full(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    for n in range(130):
        h.workspace.add_run(52, "skipped" if n % 10 == 0 else "completed", records=1)
    m = h.scrape()
    assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 117
    assert m.value("census_sync_runs_total", sync_id="52", status="skipped") == 13
    assert h.simulator.count(r"/syncs/52/sync_runs") >= 1 + 6  # baseline page, then at least 6 pages


def test_a_pending_run_that_scrolled_out_of_the_page_is_fetched_by_id(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory(reference_workspace())
    h.workspace.add_run(52, "working", run_id=300)
    h.scrape()
    for _ in range(40):  # push run 300 off the first pages
        h.workspace.add_run(52, "completed")
    h.scrape()
    h.workspace.finish_run(300, "failed", records=0)
    m = h.scrape()
    assert h.simulator.count(r"^/api/v1/sync_runs/300$") == 1
    assert m.value("census_sync_runs_total", sync_id="52", status="failed") == 1
    assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 40


def test_deleted_syncs_leave_the_output(harness_factory: HarnessFactory) -> None:
    workspace = reference_workspace()
    workspace.add_sync(60, label="Soon gone")
    workspace.add_sync(61, label="Runs endpoint 404s")
    workspace.add_run(60)
    workspace.add_run(61)
    h = harness_factory(workspace)
    m = h.scrape()
    assert m.value("census_syncs") == 3
    assert m.all("census_sync_last_run_id", sync_id="60")
    workspace.remove_sync(60)  # leaves the list
    with workspace.lock:  # still listed, but its runs are gone
        del workspace.runs[61]
    m = h.scrape()
    assert m.value("census_syncs") == 2  # 60 left the list; 61 is still listed, so one 404 proves nothing
    assert not [key for key in m.samples if ("sync_id", "60") in key[1]]
    assert m.all("census_sync_last_run_id", sync_id="61")
    assert m.value("census_up") == 0
    workspace.remove_sync(61)
    m = h.scrape()
    assert m.value("census_syncs") == 1  # unlisted and answering 404: gone
    assert not [key for key in m.samples if ("sync_id", "61") in key[1]]
    assert m.value("census_up") == 1  # a 404 on a deleted sync is not an API fault


def test_a_sync_that_never_ran_has_info_and_zero_counters_but_no_status(
    harness_factory: HarnessFactory,
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(7, label="Brand new", paused=True)
    m = harness_factory(workspace).scrape()
    assert m.value("census_sync_info", sync_id="7", label="Brand new") == 1
    assert m.value("census_sync_paused", sync_id="7") == 1
    assert m.all("census_sync_last_run_status", sync_id="7") == {}
    assert m.value("census_sync_runs_total", sync_id="7", status="failed") == 0


def baselined_with_a_healthy_sync(harness_factory: HarnessFactory) -> Harness:
    """Sync 52 from the Census docs plus sync 70 with one run, scraped once (the baseline)."""
    workspace = reference_workspace()
    workspace.add_sync(70, label="Healthy")
    workspace.add_run(70)
    h = harness_factory(workspace)
    h.scrape()
    return h


def test_partial_failure_keeps_the_last_good_data(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = baselined_with_a_healthy_sync(harness_factory)
    workspace = h.workspace
    h.simulator.inject(Fault(r"/syncs/52/sync_runs", status=503, times=-1))
    workspace.add_run(70)
    with caplog.at_level(logging.WARNING):
        m = h.scrape()
    assert m.value("census_up") == 0
    assert m.value("census_sync_last_run_id", sync_id="52") == 94  # kept
    assert m.value("census_sync_runs_total", sync_id="70", status="completed") == 1  # others refreshed
    assert m.value("census_last_refresh_timestamp_seconds") is not None  # from the good refresh
    assert m.value("census_api_requests_total", endpoint="/syncs/{id}/sync_runs", code="503") >= 1
    warnings = [r for r in caplog.records if "refresh incomplete" in r.getMessage()]
    assert len(warnings) == 1
    assert "GET /syncs/{id}/sync_runs: HTTP 503" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # an expected fault: one line, no traceback
    h.scrape()  # the same failure again is not logged again
    assert len([r for r in caplog.records if "refresh incomplete" in r.getMessage()]) == 1
    h.simulator.clear_faults()
    assert h.scrape().value("census_up") == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(r"^/api/v1/syncs$", status=200, body=b"<html>maintenance</html>", times=-1),
        Fault(r"^/api/v1/syncs$", status=200, body=b'{"status":"success","data":{"oops":1}}', times=-1),
        Fault(r"^/api/v1/syncs$", status=500, times=-1),
        Fault(
            r"/sync_runs",
            status=200,
            body=b'{"status":"success","data":[1, "x", null, {"id": true}]}',
            times=-1,
        ),
    ],
    ids=["html", "data-not-a-list", "http-500", "junk-runs"],
)
def test_bad_input_never_crashes_and_keeps_data(harness_factory: HarnessFactory, fault: Fault) -> None:
    h = harness_factory(reference_workspace(), refresh_timeout_seconds=5.0)
    assert h.scrape().value("census_up") == 1
    h.simulator.inject(fault)
    m = h.scrape()
    assert m.value("census_sync_last_run_id", sync_id="52") == 94
    assert h.get("/healthz").status_code == 200
    if fault.pattern.endswith("/sync_runs"):
        # Unusable run records are skipped; the refresh itself succeeded.
        assert m.value("census_up") == 1
    else:
        assert m.value("census_up") == 0


def test_rejected_token_is_reported_once_and_never_leaks(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "secret-token:wrong-but-still-secret"
    h = harness_factory(reference_workspace(), token=wrong)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            m = h.scrape()
    assert m.value("census_up") == 0
    assert m.value("census_api_requests_total", endpoint="/sources", code="401") == 3
    assert h.get("/readyz").status_code == 200  # ready: scraped and showing census_up 0
    lines = [r.getMessage() for r in caplog.records if "rejected the token" in r.getMessage()]
    assert lines == ["Census API rejected the token (401)"]
    assert wrong not in caplog.text and wrong not in m.text
    assert TEST_TOKEN not in caplog.text


def test_syncs_listed_over_several_pages_in_both_pagination_styles(harness_factory: HarnessFactory) -> None:
    for style in ("pagination", "next_link"):
        workspace = SimulatedWorkspace()
        for sync_id in range(1, 231):
            workspace.add_sync(sync_id, label=f"s{sync_id}")
        m = harness_factory(workspace, pagination_style=style).scrape()
        assert m.value("census_syncs") == 230, style
        assert len(m.all("census_sync_info")) == 230


def test_a_failed_run_is_logged_once_with_its_error(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    long_message = "Destination rejected the batch: " + "x" * 500
    h.workspace.add_run(
        52, "failed", run_id=401, error_code="DESTINATION_RATE_LIMITED", error_message=long_message
    )
    with caplog.at_level(logging.WARNING):
        h.scrape()
        h.scrape()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync run failed")]
    assert len(lines) == 1
    line = lines[0]
    for part in (
        "sync_id=52",
        "label='New Signups to Leads'",
        "run_id=401",
        "error_code=DESTINATION_RATE_LIMITED",
    ):
        assert part in line
    assert "Destination rejected the batch" in line
    assert "x" * 201 not in line and line.endswith("…'")  # truncated


def test_an_undocumented_status_gets_its_own_series(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    h.workspace.add_run(52, "Cancelled", run_id=500, canceled=True)
    m = h.scrape()
    statuses = {dict(k)["status"]: v for k, v in m.all("census_sync_last_run_status", sync_id="52").items()}
    assert statuses == {"cancelled": 1}
    assert m.value("census_sync_runs_total", sync_id="52", status="cancelled") == 1
    assert m.value("census_sync_last_run_info", sync_id="52", canceled="true") == 1


def test_a_hanging_run_stays_visible_after_later_runs_are_skipped(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.scrape()
    hanging = h.workspace.add_run(52, "working", run_id=600, created_at=1_700_000_000.0)
    m = h.scrape()
    assert (
        m.value("census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id="52")
        == 1_700_000_000.0
    )
    for _ in range(30):  # later scheduled runs are skipped while it hangs, pushing it off the first page
        h.workspace.add_run(52, "skipped", records=None, duration=0)
    m = h.scrape()
    assert m.value("census_sync_last_run_status", sync_id="52", status="skipped") == 1
    assert (
        m.value("census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id="52")
        == 1_700_000_000.0
    )
    h.workspace.finish_run(int(hanging["id"]), "completed")
    m = h.scrape()
    assert m.value("census_sync_oldest_unfinished_run_created_timestamp_seconds", sync_id="52") is None
    assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 1


def test_a_bug_met_by_one_sync_does_not_cost_the_others_their_refresh(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = baselined_with_a_healthy_sync(harness_factory)
    workspace = h.workspace
    refresher = h.exporter.refresher
    original = refresher._one_sync.run

    def buggy(sync, previous, deadline):  # type: ignore[no-untyped-def]
        if sync.id == 52:
            raise ZeroDivisionError("division by zero")
        return original(sync, previous, deadline)

    monkeypatch.setattr(refresher._one_sync, "run", buggy)
    workspace.add_run(70)
    with caplog.at_level(logging.INFO):
        m = h.scrape()
        h.scrape()
    assert m.value("census_up") == 0
    assert m.value("census_sync_runs_total", sync_id="70", status="completed") == 1  # refreshed
    assert m.value("census_sync_last_run_id", sync_id="52") == 94  # kept
    lines = [r for r in caplog.records if "refresh failed unexpectedly" in r.getMessage()]
    assert len(lines) == 1 and "ZeroDivisionError" in lines[0].getMessage()
    assert lines[0].exc_info is None


def test_a_sync_that_stays_gone_is_logged_once(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = reference_workspace()
    workspace.add_sync(61, label="Runs endpoint 404s")
    with workspace.lock:
        del workspace.runs[61]
    h = harness_factory(workspace)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            h.scrape()
        assert len([r for r in caplog.records if "404 although it is listed" in r.getMessage()]) == 1
        workspace.remove_sync(61)
        for _ in range(3):
            h.scrape()
    assert len([r for r in caplog.records if "is gone (404)" in r.getMessage()]) == 1


def test_rate_limited_then_served_over_real_http(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    h.simulator.inject(Fault(r"^/api/v1/syncs$", status=429, headers=(("Retry-After", "1"),), times=1))
    m = h.scrape()
    assert m.value("census_up") == 1  # retried after Retry-After, within the refresh
    assert m.value("census_api_requests_total", endpoint="/syncs", code="429") == 1
    assert m.value("census_api_requests_total", endpoint="/syncs", code="200") == 1


def test_token_file_rotation_recovers_without_restart(
    harness_factory: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from census_exporter.config import TokenSource

    token_file = tmp_path / "token"
    token_file.write_text("secret-token:revoked-one\n")
    h = harness_factory(reference_workspace(), token_source=TokenSource(path=str(token_file)))
    with caplog.at_level(logging.INFO):
        assert h.scrape().value("census_up") == 0
        token_file.write_text(TEST_TOKEN + "\n")  # the Secret is rotated in place
        os.utime(token_file, ns=(1, 2))
        m = h.scrape()
    assert m.value("census_up") == 1
    assert m.value("census_sync_last_run_id", sync_id="52") == 94
    messages = [r.getMessage() for r in caplog.records]
    assert any("rejected the token (401)" in line for line in messages)
    assert "Census API refresh succeeded again" in messages
    assert "revoked-one" not in caplog.text
