"""The shared field parsers of every Census record: checked ids, counts, times, booleans and texts.

Values are held to sane ranges here, once, so nothing downstream can be broken by one odd value: counts
``0..2**53`` (exact in a float64), ids ``1..2**63-1``, times between 2000-01-01 and 2100-01-01. A value out
of range is unknown, and named in the record's ``problems`` (:class:`Fields`). Every text is made valid
UTF-8 (lone surrogates become U+FFFD), loses its control characters, and is bounded to a documented length.
A field with the wrong type is treated as unknown (``None``), never guessed. The record parsers of each API
area (:mod:`.syncs`, :mod:`.runs`, :mod:`.connections`, :mod:`.organization`) build on these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from census_exporter.redaction import redact

_Value = TypeVar("_Value")

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
WORD_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{CONNECTION_ID_LIMIT - 1}}}")


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


def known(checked: _Value | Unusable | None) -> _Value | None:
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
        if not WORD_ID.fullmatch(value):
            return Unusable("not an id")
        return value
    return check_id(value)


def non_numeric_id(what: str, value: object) -> Skipped | None:
    """Why a record whose id is a non-numeric string is skipped, or None for any other id.

    Runs are counted exactly once by ordering their ids; a word id cannot be ordered, so such records
    cannot be counted yet (docs/census-api-versions.md, known limits).
    """
    if not isinstance(value, str) or value.isdigit() or not WORD_ID.fullmatch(value):
        return None
    shown = bounded_text(value, WORD_LIMIT)
    return Skipped(f"{what} id {shown!r} is not numeric; V2 non-numeric ids are not supported yet")


def record_id(record: Mapping[str, Any], what: str) -> int | Skipped:
    """The ``id`` of a ``what`` record (``sync``, ``sync run``) as :func:`parse_id` reads it, or why the
    record is skipped: a non-numeric id (:func:`non_numeric_id`), or none that is usable."""
    value = record.get("id")
    parsed = parse_id(value)
    if parsed is not None:
        return parsed
    return non_numeric_id(what, value) or Skipped(f"{what} without a usable id")


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
    return known(check_id(value))


def parse_count(value: object) -> int | None:
    """A record count: an integer in ``0..MAX_COUNT``, otherwise unknown."""
    return known(check_count(value))


def parse_bool(value: object) -> bool | None:
    """A JSON boolean, otherwise unknown."""
    return known(check_bool(value))


def parse_text(value: object, limit: int = NAME_LIMIT) -> str | None:
    """A non-empty string, cleaned and bounded to ``limit`` characters, otherwise unknown."""
    return known(check_text(value, limit))


def parse_timestamp(value: object) -> float | None:
    """An ISO-8601 time such as ``2021-10-20T02:51:07.546Z`` as Unix seconds; naive times are UTC."""
    return known(check_timestamp(value))


class Fields:
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


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
