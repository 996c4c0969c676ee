"""Sync runs: the :class:`SyncRun` model, run statuses, and the parser of ``/sync_runs`` records."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from census_exporter.census.models.fields import (
    MESSAGE_LIMIT,
    WORD_LIMIT,
    Fields,
    Skipped,
    Unusable,
    bounded_text,
    check_text,
    mapping,
    parse_text,
    record_id,
)

#: Run statuses that mean "not finished yet". ``preparing`` and ``new`` were replaced by ``queued`` and
#: ``retrying`` by ``working``, but old workspaces may still report them. Every other status is terminal,
#: so a status Census invents tomorrow is counted when first seen rather than waited on forever.
PENDING_RUN_STATUSES = frozenset({"queued", "working", "preparing", "new", "retrying", "unreported"})

#: The status of a run whose status field is missing, null or blank: not known yet, so not finished (a run
#: that briefly reads null must not be counted as finished, and its real end then missed).
UNREPORTED_STATUS = "unreported"

#: The documented run statuses, always rendered by the one-hot status gauge.
KNOWN_RUN_STATUSES = ("queued", "working", "completed", "failed", "skipped")

UNKNOWN_STATUS = "unknown"


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


def parse_status(value: object) -> str:
    """A run status, lower-cased (legacy APIs capitalise).

    Missing, null or blank is ``unreported`` (not finished yet); anything else unusable is ``unknown``
    (finished, outcome unknown).
    """
    checked = check_text(value, WORD_LIMIT)
    if checked is None:
        return UNREPORTED_STATUS
    if isinstance(checked, Unusable):
        return UNKNOWN_STATUS
    # Bounded again: lower-casing can lengthen a text ("İ" becomes two characters). Interned: every run
    # holds one, and a few words cover them all.
    return sys.intern(bounded_text(checked.lower(), WORD_LIMIT))


def _status(fields: Fields) -> str:
    """The run status (see :func:`parse_status`); a missing one is noted as a problem."""
    status = parse_status(fields.record.get("status"))
    if status == UNREPORTED_STATUS:
        fields.problems.append("status missing; the run is treated as not finished yet")
    return status


def parse_sync_run(raw: object) -> SyncRun | Skipped:
    """A run from ``GET /syncs/{id}/sync_runs`` or ``GET /sync_runs/{id}``.

    Fields deliberately dropped: ``error_detail`` (free text; used only when ``error_message`` is empty),
    ``sync_trigger_reason.ui_detail`` (may carry an email address), ``current_step`` (free text), and
    ``source_record_updates``/``_deletes``/``_invalids`` (newer, optional breakdowns of the source count).
    """
    record = mapping(raw)
    run_id = record_id(record, "sync run")
    if isinstance(run_id, Skipped):
        return run_id
    fields = Fields(record)
    trigger = mapping(record.get("sync_trigger_reason"))
    return SyncRun(
        id=run_id,
        sync_id=fields.id("sync_id"),
        status=_status(fields),
        created_at=fields.timestamp("created_at"),
        updated_at=fields.timestamp("updated_at"),
        completed_at=fields.timestamp("completed_at"),
        scheduled_execution_time=fields.timestamp("scheduled_execution_time"),
        source_record_count=fields.count("source_record_count"),
        records_processed=fields.count("records_processed"),
        records_updated=fields.count("records_updated"),
        records_failed=fields.count("records_failed"),
        records_invalid=fields.count("records_invalid"),
        error_code=fields.text("error_code", WORD_LIMIT),
        error_message=fields.text("error_message", MESSAGE_LIMIT)
        or fields.text("error_detail", MESSAGE_LIMIT),
        canceled=fields.flag("canceled"),
        full_sync=fields.flag("full_sync"),
        trigger=parse_text(trigger.get("ui_tag"), WORD_LIMIT),
        problems=tuple(fields.problems),
    )
