"""Census API records as frozen dataclasses, and the tolerant parsers that build them.

The Census API has changed shape over the years (capitalised legacy statuses, ``mode`` versus the flat
``schedule_frequency`` fields, null labels, null counts on failed runs, new run statuses). Every parser here
takes whatever JSON arrived and returns either a model or a :class:`Skipped` with a reason; nothing raises
on bad input. A field with the wrong type is treated as unknown (``None``), never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Run statuses that mean "not finished yet". ``preparing`` and ``new`` were replaced by ``queued`` and
#: ``retrying`` by ``working``, but old workspaces may still report them. Every other status is terminal,
#: so a status Census invents tomorrow is counted when first seen rather than waited on forever.
PENDING_RUN_STATUSES = frozenset({"queued", "working", "preparing", "new", "retrying"})

#: The documented run statuses, always rendered by the one-hot status gauge.
KNOWN_RUN_STATUSES = ("queued", "working", "completed", "failed", "skipped")

UNKNOWN_STATUS = "unknown"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that could not be used, and why (the reason is logged, once)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Connection:
    """A source or destination connection: only what labels need."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Sync:
    """A Census sync, reduced to what the exporter exports."""

    id: int
    label: str
    operation: str
    source_connection_id: int | None
    destination_connection_id: int | None
    destination_object: str
    schedule: str
    paused: bool | None
    #: Fields that arrived unusable (out of range, wrong type) and were dropped, for a one-time log line.
    problems: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One run of a sync. Counts are ``None`` when Census reported null or a non-integer."""

    id: int
    sync_id: int | None
    status: str
    created_at: float | None
    updated_at: float | None
    completed_at: float | None
    scheduled_execution_time: float | None
    source_record_count: int | None
    records_processed: int | None
    records_updated: int | None
    records_failed: int | None
    records_invalid: int | None
    error_code: str | None
    error_message: str | None
    canceled: bool | None
    full_sync: bool | None
    trigger: str | None
    #: Fields that arrived unusable (out of range, wrong type) and were dropped, for a one-time log line.
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def terminal(self) -> bool:
        """True once the run has finished, whatever the outcome."""
        return self.status not in PENDING_RUN_STATUSES

    @property
    def finished_at(self) -> float | None:
        """When a finished run ended: ``completed_at``, else ``updated_at`` (failed runs lack the first)."""
        if not self.terminal:
            return None
        return self.completed_at if self.completed_at is not None else self.updated_at

    @property
    def duration_seconds(self) -> float | None:
        """How long a finished run took; ``None`` while it runs or when a timestamp is missing."""
        end = self.finished_at
        if end is None or self.created_at is None:
            return None
        return max(0.0, end - self.created_at)


TRUNCATION_MARKER = "…"


def bounded_text(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, the last one a marker when it was cut."""
    if len(value) <= limit:
        return value
    return value[: max(0, limit - 1)] + TRUNCATION_MARKER


def parse_id(value: object) -> int | None:
    """An API id: a positive integer, or a string of digits. Booleans and floats are not ids."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        number = int(value)
        return number if number > 0 else None
    return None


def parse_count(value: object) -> int | None:
    """A record count: a non-negative integer, otherwise unknown."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_bool(value: object) -> bool | None:
    """A JSON boolean, otherwise unknown."""
    return value if isinstance(value, bool) else None


def parse_text(value: object) -> str | None:
    """A non-empty string, otherwise unknown."""
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def parse_timestamp(value: object) -> float | None:
    """An ISO-8601 time such as ``2021-10-20T02:51:07.546Z`` as Unix seconds; naive times are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_status(value: object) -> str:
    """A run status, lower-cased (legacy APIs capitalise); anything unusable becomes ``unknown``."""
    text = parse_text(value)
    return text.lower() if text else UNKNOWN_STATUS


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_connection(raw: object) -> Connection | Skipped:
    """A source or destination. The name falls back to the id; ``connection_details`` is never read."""
    record = _mapping(raw)
    connection_id = parse_id(record.get("id"))
    if connection_id is None:
        return Skipped("connection without a usable id")
    name = parse_text(record.get("name")) or parse_text(record.get("label")) or str(connection_id)
    return Connection(id=connection_id, name=name)


def describe_schedule(record: Mapping[str, Any]) -> str:
    """One short word for how a sync is started, from ``mode`` or, on old syncs, the flat legacy fields.

    ``live`` for live syncs; the schedule frequency (``hourly``, ``daily``, ``expression``, ...) when there is
    one; otherwise the first trigger kind (``dbt_cloud``, ``fivetran``, ``sync_sequence``); ``manual`` when
    nothing starts it; empty when the API said nothing usable.
    """
    mode = record.get("mode")
    if isinstance(mode, Mapping):
        mode_type = parse_text(mode.get("type"))
        if mode_type and mode_type.lower() == "live":
            return "live"
        triggers = _mapping(mode.get("triggers"))
        frequency = parse_text(_mapping(triggers.get("schedule")).get("frequency"))
        if frequency:
            return frequency.lower()
        for kind, value in sorted(triggers.items()):
            if value and kind != "schedule":
                return str(kind)
        return "manual" if mode_type else ""
    legacy = parse_text(record.get("schedule_frequency"))
    if legacy:
        return legacy.lower()
    return ""


def _destination_object(value: object) -> str:
    text = parse_text(value)
    if text:
        return text
    # Some destinations describe the object as a mapping; its name is what people recognise.
    nested = _mapping(value)
    return parse_text(nested.get("name")) or parse_text(nested.get("full_name")) or ""


def parse_sync(raw: object) -> Sync | Skipped:
    """A sync from ``GET /syncs``. The label falls back to ``resource_identifier``, then ``sync_<id>``."""
    record = _mapping(raw)
    sync_id = parse_id(record.get("id"))
    if sync_id is None:
        return Skipped("sync without a usable id")
    label = (
        parse_text(record.get("label")) or parse_text(record.get("resource_identifier")) or f"sync_{sync_id}"
    )
    source = _mapping(record.get("source_attributes"))
    destination = _mapping(record.get("destination_attributes"))
    return Sync(
        id=sync_id,
        label=label,
        operation=(parse_text(record.get("operation")) or "").lower(),
        source_connection_id=parse_id(source.get("connection_id")),
        destination_connection_id=parse_id(destination.get("connection_id")),
        destination_object=_destination_object(destination.get("object")),
        schedule=describe_schedule(record),
        paused=parse_bool(record.get("paused")),
    )


def parse_sync_run(raw: object) -> SyncRun | Skipped:
    """A run from ``GET /syncs/{id}/sync_runs`` or ``GET /sync_runs/{id}``.

    Fields deliberately dropped: ``error_detail`` (free text; used only when ``error_message`` is empty),
    ``sync_trigger_reason.ui_detail`` (may carry an email address), ``current_step`` (free text), and
    ``source_record_updates``/``_deletes``/``_invalids`` (newer, optional breakdowns of the source count).
    """
    record = _mapping(raw)
    run_id = parse_id(record.get("id"))
    if run_id is None:
        return Skipped("sync run without a usable id")
    trigger = _mapping(record.get("sync_trigger_reason"))
    return SyncRun(
        id=run_id,
        sync_id=parse_id(record.get("sync_id")),
        status=parse_status(record.get("status")),
        created_at=parse_timestamp(record.get("created_at")),
        updated_at=parse_timestamp(record.get("updated_at")),
        completed_at=parse_timestamp(record.get("completed_at")),
        scheduled_execution_time=parse_timestamp(record.get("scheduled_execution_time")),
        source_record_count=parse_count(record.get("source_record_count")),
        records_processed=parse_count(record.get("records_processed")),
        records_updated=parse_count(record.get("records_updated")),
        records_failed=parse_count(record.get("records_failed")),
        records_invalid=parse_count(record.get("records_invalid")),
        error_code=parse_text(record.get("error_code")),
        error_message=parse_text(record.get("error_message")) or parse_text(record.get("error_detail")),
        canceled=parse_bool(record.get("canceled")),
        full_sync=parse_bool(record.get("full_sync")),
        trigger=parse_text(trigger.get("ui_tag")),
    )
