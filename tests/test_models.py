"""Parsing is tolerant: missing, extra and wrongly typed fields never raise, and unknown stays unknown."""

from __future__ import annotations

import json

import pytest

from census_exporter.census.models.connections import Connection, parse_connection
from census_exporter.census.models.fields import (
    MAX_COUNT,
    MAX_ID,
    MESSAGE_LIMIT,
    NAME_LIMIT,
    TRUNCATION_MARKER,
    WORD_LIMIT,
    Skipped,
    bounded_text,
    clean_text,
    parse_timestamp,
)
from census_exporter.census.models.runs import SyncRun, parse_sync_run
from census_exporter.census.models.syncs import Sync, parse_sync

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


# ---------------------------------------------------------------- sane ranges (one odd value breaks nothing)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (10**400, "records_processed out of range"),
        (MAX_COUNT + 1, "records_processed out of range"),
        (-1, "records_processed out of range"),
        (float("inf"), "records_processed not an integer"),
        (float("nan"), "records_processed not an integer"),
        (-0.0, "records_processed not an integer"),
        (1.5, "records_processed not an integer"),
        ("12", "records_processed not an integer"),
    ],
)
def test_a_count_out_of_range_or_not_an_integer_is_unknown_and_named_as_a_problem(
    value: object, problem: str
) -> None:
    parsed = run(records_processed=value)
    assert parsed.records_processed is None
    assert parsed.problems == (problem,)


def test_the_largest_exact_count_is_kept_and_null_is_no_problem() -> None:
    assert run(records_processed=MAX_COUNT).records_processed == MAX_COUNT
    assert run().problems == ()  # the documented failed run: null counts are normal, not problems


def test_json_nan_and_infinity_literals_never_become_values() -> None:
    body = RUN_93 | {"records_processed": 0, "records_failed": 0, "records_invalid": 0}
    text = json.dumps(body).replace('"records_processed": 0', '"records_processed": NaN')
    text = text.replace('"records_failed": 0', '"records_failed": Infinity')
    text = text.replace('"records_invalid": 0', '"records_invalid": -Infinity')
    parsed = parse_sync_run(json.loads(text))
    assert isinstance(parsed, SyncRun)
    assert (parsed.records_processed, parsed.records_failed, parsed.records_invalid) == (None, None, None)
    assert len(parsed.problems) == 3


@pytest.mark.parametrize(
    "run_id", [10**400, MAX_ID + 1, "9" * 5000, "\u00b2", "\uff11\uff12", float("inf"), float("nan"), 1.0]
)
def test_a_run_id_out_of_range_is_skipped_without_raising(run_id: object) -> None:
    parsed = parse_sync_run(RUN_93 | {"id": run_id})
    assert isinstance(parsed, Skipped)
    assert "id" in parsed.reason


def test_the_largest_id_is_accepted_as_integer_or_digits() -> None:
    assert run(id=MAX_ID).id == MAX_ID
    assert run(id=str(MAX_ID)).id == MAX_ID


def test_a_sync_id_or_connection_id_out_of_range_is_unknown_and_named() -> None:
    assert run(sync_id=10**400).sync_id is None
    assert run(sync_id=10**400).problems == ("sync_id out of range",)
    sync = parse_sync({"id": 1, "source_attributes": {"connection_id": 2**64}, "paused": "yes"})
    assert isinstance(sync, Sync)
    assert sync.source_connection_id is None and sync.paused is None
    assert sync.problems == ("connection_id out of range", "paused not a boolean")
    assert isinstance(parse_sync({"id": 10**400}), Skipped)
    assert isinstance(parse_connection({"id": -5, "name": "x"}), Skipped)


@pytest.mark.parametrize(
    "value",
    [
        "1999-12-31T23:59:59.999Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        "2021-10-20T02:51:07" + "9" * 100_000,
        1634698267,
        float("inf"),
    ],
)
def test_a_time_outside_2000_to_2100_or_unreadable_is_unknown_and_named(value: object) -> None:
    parsed = run(created_at=value)
    assert parsed.created_at is None
    assert len(parsed.problems) == 1 and parsed.problems[0].startswith("created_at ")
    assert len(parsed.problems[0]) < 40  # names the field, never carries the value


def test_times_at_the_edges_of_the_range() -> None:
    assert run(created_at="2000-01-01T00:00:00Z").created_at == 946_684_800.0
    assert run(created_at="2099-12-31T23:59:59Z").created_at == 4_102_444_799.0


# ---------------------------------------------------------------- texts: valid UTF-8, no controls, bounded


def test_clean_text_replaces_lone_surrogates_and_drops_control_characters() -> None:
    assert clean_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_text("one\ntwo\tthree\r") == "one two three "
    assert clean_text("bell\x07 nul\x00 del\x7f c1\x9b") == "bell nul del c1"
    assert clean_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"  # real characters are kept
    clean_text("\ud800").encode("utf-8")  # valid UTF-8 now


def test_every_text_of_a_run_is_valid_utf8_without_controls() -> None:
    parsed = run(
        status="fail\ud800ed",
        error_code="E\ud800\x00RR",
        error_message="line\nbreak\ud83d",
        sync_trigger_reason={"ui_tag": "Man\x1bual"},
    )
    assert parsed.status == "fail\ufffded"
    assert parsed.error_code == "E\ufffdRR"
    assert parsed.error_message == "line break\ufffd"
    assert parsed.trigger == "Manual"


def test_every_text_of_a_sync_and_connection_is_valid_utf8() -> None:
    sync = parse_sync(
        {
            "id": 1,
            "label": "\ud800 label",
            "operation": "UPS\x00ERT",
            "destination_attributes": {"object": "Le\nad\udc00"},
            "mode": {"type": "triggered", "triggers": {"dbt\ud800\x01": {"job_id": 1}}},
        }
    )
    assert isinstance(sync, Sync)
    assert (sync.label, sync.operation, sync.destination_object, sync.schedule) == (
        "\ufffd label",
        "upsert",
        "Le ad\ufffd",
        "dbt\ufffd",
    )
    assert parse_connection({"id": 3, "name": "Snow\ud800"}) == Connection(3, "Snow\ufffd")


def test_bounded_text_keeps_short_texts_and_marks_cut_ones() -> None:
    assert bounded_text("short", 10) == "short"
    assert bounded_text("x" * 10, 10) == "x" * 10
    assert bounded_text("x" * 11, 10) == "x" * 9 + TRUNCATION_MARKER


def test_labels_taken_from_the_api_are_bounded_with_a_marker() -> None:
    huge = "L" * 1_000_000
    sync = parse_sync(
        {
            "id": 1,
            "label": huge,
            "operation": huge,
            "destination_attributes": {"object": huge},
            "mode": {"type": "triggered", "triggers": {"schedule": {"frequency": huge}}},
        }
    )
    assert isinstance(sync, Sync)
    for text, limit in [
        (sync.label, NAME_LIMIT),
        (sync.destination_object, NAME_LIMIT),
        (sync.operation, WORD_LIMIT),
        (sync.schedule, WORD_LIMIT),
    ]:
        assert len(text) == limit and text.endswith(TRUNCATION_MARKER)
    connection = parse_connection({"id": 3, "name": huge})
    assert isinstance(connection, Connection)
    assert len(connection.name) == NAME_LIMIT
    parsed = run(status=huge, error_code=huge, error_message=huge, sync_trigger_reason={"ui_tag": huge})
    for text, limit in [
        (parsed.status, WORD_LIMIT),
        (parsed.error_code, WORD_LIMIT),
        (parsed.trigger, WORD_LIMIT),
        (parsed.error_message, MESSAGE_LIMIT),
    ]:
        assert text is not None and len(text) == limit and text.endswith(TRUNCATION_MARKER)


def test_a_status_that_grows_when_lower_cased_stays_bounded() -> None:
    status = run(status="\u0130" * 1000).status  # "İ".lower() is two characters
    assert len(status) == WORD_LIMIT and status.endswith(TRUNCATION_MARKER)
