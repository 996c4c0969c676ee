"""Census API records as frozen dataclasses, and the tolerant parsers that build them.

The Census API has changed shape over the years (capitalised legacy statuses, ``mode`` versus the flat
``schedule_frequency`` fields, null labels, null counts on failed runs, new run statuses). Every parser here
takes whatever JSON arrived and returns either a model or a :class:`Skipped` with a reason; nothing raises
on bad input. A field with the wrong type is treated as unknown (``None``), never guessed.

Values are also held to sane ranges here, once, so nothing downstream can be broken by one odd value: counts
``0..2**53`` (exact in a float64), ids ``1..2**63-1``, times between 2000-01-01 and 2100-01-01. A value out
of range is unknown too, and named in the record's ``problems``. Every text is made valid UTF-8 (lone
surrogates become U+FFFD), loses its control characters, and is bounded to a documented length.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from census_exporter.redaction import redact

_Value = TypeVar("_Value")

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

#: Largest record count accepted: every integer up to it is exact in a float64.
MAX_COUNT = 2**53
#: Largest id accepted (a signed 64-bit integer, what Census's database keys are).
MAX_ID = 2**63 - 1
#: Times outside [2000-01-01, 2100-01-01) UTC are not plausible for a sync run.
EARLIEST_TIMESTAMP = 946_684_800.0
LATEST_TIMESTAMP = 4_102_444_800.0

#: Length bounds (characters) of texts taken from the API. Names: sync label, destination object,
#: source and destination connection names.
NAME_LIMIT = 128
#: Short words: error_code, trigger, operation, schedule and status.
WORD_LIMIT = 64
#: error_message is logged, never exported.
MESSAGE_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that could not be used, and why (the reason is logged, once)."""

    reason: str


#: A connection's id: an integer in V1, a string such as ``glimmering_donkey`` for a V2 activation.
ConnectionId = int | str

#: Longest non-numeric connection id accepted (V2 activation ids are two or three short words).
CONNECTION_ID_LIMIT = 128


@dataclass(frozen=True, slots=True)
class Connection:
    """A source or destination connection: only what labels need."""

    id: ConnectionId
    name: str


@dataclass(frozen=True, slots=True)
class Sync:
    """A Census sync, reduced to what the exporter exports."""

    id: int
    label: str
    operation: str
    source_connection_id: ConnectionId | None
    destination_connection_id: ConnectionId | None
    destination_object: str
    schedule: str
    paused: bool | None
    #: The sync's health as the listing gives it (its ``status``): ``ready`` (never ran), ``up to date`` (the
    #: last run succeeded), ``failing`` (it failed), lower-cased; another word passes through bounded;
    #: ``None`` when the listing said nothing usable.
    health: str | None = None
    #: When Census last changed the sync (``updated_at``); with ``health``, a change the listing shows.
    updated_at: float | None = None
    #: When the sync was created (``created_at``): no run of it can be older.
    created_at: float | None = None
    #: Fields that arrived unusable (out of range, wrong type) and were dropped, for a one-time log line.
    problems: tuple[str, ...] = field(default=(), compare=False)

    def listing_differs(self, other: Sync) -> bool:
        """True when the listing shows a change between ``other`` and this sync: its health or update time."""
        return (self.health, self.updated_at) != (other.health, other.updated_at)

    def health_differs(self, other: Sync) -> bool:
        """True when the listed health changed between ``other`` and this sync."""
        return self.health != other.health


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


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\t\n\r\v\f\x85]")
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
_LONGEST_ID_DIGITS = len(str(MAX_ID))
_LONGEST_TIMESTAMP = 64
_WORD_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{CONNECTION_ID_LIMIT - 1}}}")


def clean_text(value: str) -> str:
    """``value`` as valid UTF-8 without control characters: what a label, a log line or a terminal can take.

    Lone surrogates (which JSON can carry but UTF-8 cannot encode) become U+FFFD; tabs and line breaks
    become spaces; every other control character is dropped. A configured token or workspace key the API
    echoes back becomes ``[REDACTED]``, once here rather than on every scrape.
    """
    value = _LONE_SURROGATE.sub("\ufffd", value)
    value = _LINE_BREAKS.sub(" ", value)
    return redact(_CONTROL_CHARACTERS.sub("", value))


@dataclass(frozen=True, slots=True)
class Unusable:
    """A field that arrived but cannot be used, and why (``"out of range"``): it becomes unknown."""

    why: str


def _known(checked: _Value | Unusable | None) -> _Value | None:
    return None if isinstance(checked, Unusable) else checked


def check_id(value: object) -> int | Unusable | None:
    """An API id in ``1..MAX_ID``: an integer or a string of ASCII digits; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > _LONGEST_ID_DIGITS:
            return Unusable("out of range")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return Unusable("not an integer")
    return value if 1 <= value <= MAX_ID else Unusable("out of range")


def check_connection_id(value: object) -> ConnectionId | Unusable | None:
    """A connection id: an API id (:func:`check_id`), or a V2 activation's word id (``glimmering_donkey``).

    Connection ids only key names, never order anything, so a non-numeric one is as good as a number.
    """
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        if not _WORD_ID.fullmatch(value):
            return Unusable("not an id")
        return value
    return check_id(value)


def _non_numeric_id(what: str, value: object) -> Skipped | None:
    """Why a record whose id is a non-numeric string is skipped, or None for any other id.

    Runs are counted exactly once by ordering their ids; a word id cannot be ordered, so such records
    cannot be counted yet (docs/census-api-versions.md, known limits).
    """
    if not isinstance(value, str) or value.isdigit() or not _WORD_ID.fullmatch(value):
        return None
    shown = bounded_text(value, WORD_LIMIT)
    return Skipped(f"{what} id {shown!r} is not numeric; V2 non-numeric ids are not supported yet")


def check_count(value: object) -> int | Unusable | None:
    """A record count in ``0..MAX_COUNT``; floats (even ``1e400`` or NaN) are not counts."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return Unusable("not an integer")
    return value if 0 <= value <= MAX_COUNT else Unusable("out of range")


def check_bool(value: object) -> bool | Unusable | None:
    """A JSON boolean; ``None`` when absent."""
    if value is None or isinstance(value, bool):
        return value
    return Unusable("not a boolean")


def check_timestamp(value: object) -> float | Unusable | None:
    """An ISO-8601 time (naive means UTC) as Unix seconds within the plausible range."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    if not isinstance(value, str) or len(value) > _LONGEST_TIMESTAMP:
        return Unusable("not a time")
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    except (ValueError, OverflowError):
        return Unusable("not a time")
    return seconds if EARLIEST_TIMESTAMP <= seconds < LATEST_TIMESTAMP else Unusable("out of range")


def check_text(value: object, limit: int) -> str | Unusable | None:
    """A cleaned (:func:`clean_text`), stripped, bounded string; ``None`` when absent or blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        return Unusable("not a string")
    stripped = clean_text(value).strip()
    return bounded_text(stripped, limit) if stripped else None


def parse_id(value: object) -> int | None:
    """An API id: an integer in ``1..MAX_ID``, or a string of digits. Booleans and floats are not ids."""
    return _known(check_id(value))


def parse_count(value: object) -> int | None:
    """A record count: an integer in ``0..MAX_COUNT``, otherwise unknown."""
    return _known(check_count(value))


def parse_bool(value: object) -> bool | None:
    """A JSON boolean, otherwise unknown."""
    return _known(check_bool(value))


def parse_text(value: object, limit: int = NAME_LIMIT) -> str | None:
    """A non-empty string, cleaned and bounded to ``limit`` characters, otherwise unknown."""
    return _known(check_text(value, limit))


def parse_timestamp(value: object) -> float | None:
    """An ISO-8601 time such as ``2021-10-20T02:51:07.546Z`` as Unix seconds; naive times are UTC."""
    return _known(check_timestamp(value))


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


class _Fields:
    """Reads one record's fields, collecting what arrived unusable as ``problems``."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.problems: list[str] = []

    def take(self, name: str, checked: _Value | Unusable | None) -> _Value | None:
        """The checked value, or ``None`` with a problem noted when it was unusable."""
        if isinstance(checked, Unusable):
            self.problems.append(f"{name} {checked.why}")
            return None
        return checked

    def id(self, name: str, record: Mapping[str, Any] | None = None) -> int | None:
        """An id field (of ``record``, default this one)."""
        return self.take(name, check_id((self.record if record is None else record).get(name)))

    def count(self, name: str) -> int | None:
        """A record-count field."""
        return self.take(name, check_count(self.record.get(name)))

    def timestamp(self, name: str) -> float | None:
        """A time field."""
        return self.take(name, check_timestamp(self.record.get(name)))

    def flag(self, name: str) -> bool | None:
        """A boolean field."""
        return self.take(name, check_bool(self.record.get(name)))

    def connection_id(self, record: Mapping[str, Any]) -> ConnectionId | None:
        """The ``connection_id`` of ``record`` (a sync's source or destination attributes)."""
        checked = check_connection_id(record.get("connection_id"))
        if isinstance(checked, Unusable):
            self.problems.append(f"connection_id {checked.why}")
            return None
        return checked

    def text(self, name: str, limit: int) -> str | None:
        """A text field, cleaned and bounded."""
        return self.take(name, check_text(self.record.get(name), limit))

    def status(self) -> str:
        """The run status (see :func:`parse_status`); a missing one is noted as a problem."""
        status = parse_status(self.record.get("status"))
        if status == UNREPORTED_STATUS:
            self.problems.append("status missing; the run is treated as not finished yet")
        return status


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_connection(raw: object) -> Connection | Skipped:
    """A source or destination. The name falls back to the id; ``connection_details`` is never read."""
    record = _mapping(raw)
    connection_id = check_connection_id(record.get("id"))
    if connection_id is None or isinstance(connection_id, Unusable):
        return Skipped("connection without a usable id")
    name = (
        parse_text(record.get("name"), NAME_LIMIT)
        or parse_text(record.get("label"), NAME_LIMIT)
        or str(connection_id)
    )
    return Connection(id=connection_id, name=name)


def describe_schedule(record: Mapping[str, Any]) -> str:
    """One short word for how a sync is started, from ``mode`` or, on old syncs, the flat legacy fields.

    ``live`` for live syncs; the schedule frequency (``hourly``, ``daily``, ``expression``, ...) when there is
    one; otherwise the first trigger kind (``dbt_cloud``, ``fivetran``, ``sync_sequence``); ``manual`` when
    nothing starts it; empty when the API said nothing usable. Cleaned and bounded like every label.
    """
    return bounded_text(clean_text(_schedule_word(record)).strip(), WORD_LIMIT)


def _schedule_word(record: Mapping[str, Any]) -> str:
    mode = record.get("mode")
    if isinstance(mode, Mapping):
        mode_type = parse_text(mode.get("type"), WORD_LIMIT)
        if mode_type and mode_type.lower() == "live":
            return "live"
        triggers = _mapping(mode.get("triggers"))
        frequency = parse_text(_mapping(triggers.get("schedule")).get("frequency"), WORD_LIMIT)
        if frequency:
            return frequency.lower()
        for kind, value in sorted(triggers.items()):
            if value and kind != "schedule":
                return str(kind)
        return "manual" if mode_type else ""
    legacy = parse_text(record.get("schedule_frequency"), WORD_LIMIT)
    return legacy.lower() if legacy else ""


def _destination_object(value: object) -> str:
    text = parse_text(value, NAME_LIMIT)
    if text:
        return text
    # Some destinations describe the object as a mapping; its name is what people recognise.
    nested = _mapping(value)
    return parse_text(nested.get("name"), NAME_LIMIT) or parse_text(nested.get("full_name"), NAME_LIMIT) or ""


def parse_sync(raw: object) -> Sync | Skipped:
    """A sync from ``GET /syncs``. The label falls back to ``resource_identifier``, then ``sync_<id>``."""
    record = _mapping(raw)
    sync_id = parse_id(record.get("id"))
    if sync_id is None:
        if word_id := _non_numeric_id("sync", record.get("id")):
            return word_id
        return Skipped("sync without a usable id")
    fields = _Fields(record)
    label = (
        fields.text("label", NAME_LIMIT)
        or fields.text("resource_identifier", NAME_LIMIT)
        or f"sync_{sync_id}"
    )
    operation = fields.text("operation", WORD_LIMIT)
    source = _mapping(record.get("source_attributes"))
    destination = _mapping(record.get("destination_attributes"))
    return Sync(
        id=sync_id,
        label=label,
        # Words most syncs share are interned: one copy in the process rather than one per sync.
        operation=sys.intern(bounded_text(operation.lower(), WORD_LIMIT)) if operation else "",
        source_connection_id=fields.connection_id(source),
        destination_connection_id=fields.connection_id(destination),
        destination_object=sys.intern(_destination_object(destination.get("object"))),
        schedule=sys.intern(describe_schedule(record)),
        paused=fields.flag("paused"),
        health=_health(fields.text("status", WORD_LIMIT)),
        updated_at=fields.timestamp("updated_at"),
        created_at=fields.timestamp("created_at"),
        problems=tuple(fields.problems),
    )


def _health(status: str | None) -> str | None:
    """A sync's listed health, lower-cased (older accounts send ``Up to Date``, ``Failing``) and interned."""
    if status is None:
        return None
    return sys.intern(bounded_text(" ".join(status.lower().split()), WORD_LIMIT))


def parse_sync_run(raw: object) -> SyncRun | Skipped:
    """A run from ``GET /syncs/{id}/sync_runs`` or ``GET /sync_runs/{id}``.

    Fields deliberately dropped: ``error_detail`` (free text; used only when ``error_message`` is empty),
    ``sync_trigger_reason.ui_detail`` (may carry an email address), ``current_step`` (free text), and
    ``source_record_updates``/``_deletes``/``_invalids`` (newer, optional breakdowns of the source count).
    """
    record = _mapping(raw)
    run_id = parse_id(record.get("id"))
    if run_id is None:
        if word_id := _non_numeric_id("sync run", record.get("id")):
            return word_id
        return Skipped("sync run without a usable id")
    fields = _Fields(record)
    trigger = _mapping(record.get("sync_trigger_reason"))
    return SyncRun(
        id=run_id,
        sync_id=fields.id("sync_id"),
        status=fields.status(),
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


@dataclass(frozen=True, slots=True)
class OrganizationWorkspace:
    """A V1 workspace as the organization API lists it (``GET /workspaces``), for discovery."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Group:
    """A V2 Fivetran group (what V1 called a workspace) as the groups listing gives it, for discovery.

    ``id`` is kept as the text the API sent (``decent_dropsy``, or digits): it is sent back as the group.
    """

    id: str
    name: str


def parse_organization_workspace(raw: object) -> OrganizationWorkspace | Skipped:
    """A workspace from ``GET /workspaces``: an API id, and a name cleaned like a sync label (else the id).

    ``organization_id``, ``created_at`` and ``notification_emails`` (addresses) are never read.
    """
    record = _mapping(raw)
    workspace_id = parse_id(record.get("id"))
    if workspace_id is None:
        return Skipped("workspace without a usable id")
    return OrganizationWorkspace(
        id=workspace_id, name=parse_text(record.get("name"), NAME_LIMIT) or str(workspace_id)
    )


def parse_group(raw: object) -> Group | Skipped:
    """A group from the V2 groups listing: its id as text, and a name cleaned like a sync label (else the id).

    A string id is kept exactly as sent (``007`` stays ``007``) once it passes as an id; an integer one must
    be an API id (:func:`check_id`).
    """
    record = _mapping(raw)
    group_id = _group_id(record.get("id"))
    if group_id is None:
        return Skipped("group without a usable id")
    return Group(id=group_id, name=parse_text(record.get("name"), NAME_LIMIT) or group_id)


def _group_id(value: object) -> str | None:
    if isinstance(value, str):
        return value if _WORD_ID.fullmatch(value) else None
    checked = _known(check_id(value))
    return None if checked is None else str(checked)
