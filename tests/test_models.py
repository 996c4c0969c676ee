"""Parsing is tolerant: missing, extra and wrongly typed fields never raise, and unknown stays unknown."""

from __future__ import annotations

import pytest

from census_exporter.census.models import (
    Skipped,
    Sync,
    SyncRun,
    parse_connection,
    parse_sync,
    parse_sync_run,
    parse_timestamp,
)

RUN_93 = {
    "id": 93,
    "sync_id": 52,
    "source_record_count": 1,
    "records_processed": None,
    "records_updated": None,
    "records_failed": None,
    "records_invalid": 0,
    "created_at": "2021-10-20T02:48:40.373Z",
    "updated_at": "2021-10-20T02:49:53.430Z",
    "completed_at": None,
    "scheduled_execution_time": None,
    "error_code": "JSON_ARRAY_ERROR",
    "error_message": "The array field being used does not appear to be valid JSON",
    "error_detail": "Please make sure ...",
    "status": "failed",
    "current_step": "Running sync",
    "canceled": False,
    "full_sync": True,
    "sync_trigger_reason": {"ui_tag": "Manual", "ui_detail": "Manually triggered by test@getcensus.com"},
}


def run(**fields: object) -> SyncRun:
    parsed = parse_sync_run(RUN_93 | fields)
    assert isinstance(parsed, SyncRun)
    return parsed


def test_failed_run_from_the_docs_keeps_null_counts_unknown() -> None:
    parsed = run()
    assert parsed.status == "failed"
    assert parsed.terminal
    assert parsed.records_processed is None
    assert parsed.records_failed is None
    assert parsed.records_invalid == 0
    assert parsed.error_code == "JSON_ARRAY_ERROR"
    assert parsed.trigger == "Manual"
    # completed_at is null on this failed run, so it ends at updated_at.
    assert parsed.finished_at == pytest.approx(parse_timestamp("2021-10-20T02:49:53.430Z"))
    assert parsed.duration_seconds == pytest.approx(73.057)


def test_timestamps_are_unix_seconds_in_utc() -> None:
    assert parse_timestamp("2021-10-20T02:51:07.546Z") == pytest.approx(1634698267.546)
    assert parse_timestamp("2021-10-20T02:51:07.546") == pytest.approx(1634698267.546)
    assert parse_timestamp("2021-10-20T04:51:07.546+02:00") == pytest.approx(1634698267.546)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(1634698267) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("records_processed", "12"),
        ("records_processed", 12.5),
        ("records_processed", True),
        ("records_processed", -1),
        ("records_processed", {"n": 1}),
    ],
)
def test_a_count_that_is_not_an_integer_is_unknown(field: str, value: object) -> None:
    assert getattr(run(**{field: value}), field) is None


def test_wrong_types_everywhere_do_not_raise() -> None:
    parsed = run(
        status=7,
        created_at=5,
        canceled="no",
        full_sync=None,
        error_code=404,
        sync_trigger_reason="Manual",
        extra_field_from_the_future={"x": 1},
    )
    assert parsed.status == "unknown"
    assert parsed.created_at is None
    assert parsed.canceled is None
    assert parsed.error_code is None
    assert parsed.trigger is None
    assert parsed.duration_seconds is None


@pytest.mark.parametrize("raw", [None, [], "run", {"status": "completed"}, {"id": "abc"}, {"id": 0}])
def test_a_run_without_a_usable_id_is_skipped_with_a_reason(raw: object) -> None:
    parsed = parse_sync_run(raw)
    assert isinstance(parsed, Skipped)
    assert "id" in parsed.reason


def test_statuses_are_lower_cased_and_pending_ones_are_not_terminal() -> None:
    assert run(status="Completed").status == "completed"
    for pending in ("queued", "working", "preparing", "new", "retrying"):
        assert not run(status=pending).terminal
        assert run(status=pending).duration_seconds is None
    assert run(status="cancelled").terminal  # an undocumented status is passed through


def test_sync_with_mode_schedule() -> None:
    sync = parse_sync(
        {
            "id": 15135,
            "label": "New Signups to Leads",
            "operation": "Mirror",
            "source_attributes": {"connection_id": 12, "object": {"type": "table"}},
            "destination_attributes": {"connection_id": 15, "object": "user_data"},
            "mode": {"type": "triggered", "triggers": {"schedule": {"frequency": "daily", "hour": 10}}},
            "paused": False,
        }
    )
    assert sync == Sync(
        id=15135,
        label="New Signups to Leads",
        operation="mirror",
        source_connection_id=12,
        destination_connection_id=15,
        destination_object="user_data",
        schedule="daily",
        paused=False,
    )


@pytest.mark.parametrize(
    ("record", "schedule"),
    [
        ({"mode": {"type": "live"}}, "live"),
        ({"mode": {"type": "triggered", "triggers": {"dbt_cloud": {"job_id": 1}}}}, "dbt_cloud"),
        ({"mode": {"type": "triggered", "triggers": {}}}, "manual"),
        ({"schedule_frequency": "Hourly", "schedule_minute": 5}, "hourly"),
        ({}, ""),
    ],
)
def test_schedule_from_mode_or_legacy_fields(record: dict[str, object], schedule: str) -> None:
    parsed = parse_sync({"id": 1} | record)
    assert isinstance(parsed, Sync)
    assert parsed.schedule == schedule


def test_sync_label_falls_back_to_resource_identifier_then_id() -> None:
    with_identifier = parse_sync({"id": 61, "label": None, "resource_identifier": "sync_61_rid"})
    bare = parse_sync({"id": "62", "label": "  "})
    assert isinstance(with_identifier, Sync)
    assert isinstance(bare, Sync)
    assert with_identifier.label == "sync_61_rid"
    assert bare.label == "sync_62"
    assert bare.paused is None
    assert bare.source_connection_id is None


def test_connections_never_read_connection_details() -> None:
    parsed = parse_connection({"id": 3, "name": "Snowflake", "connection_details": {"user": "X"}})
    assert parsed is not None and not isinstance(parsed, Skipped)
    assert parsed.name == "Snowflake"
    nameless = parse_connection({"id": 4})
    assert not isinstance(nameless, Skipped)
    assert nameless.name == "4"
    assert isinstance(parse_connection({"name": "no id"}), Skipped)
