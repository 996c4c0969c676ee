"""Syncs: the :class:`Sync` model and the parser of ``GET /syncs`` records (label, schedule, health)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from census_exporter.census.models.fields import (
    NAME_LIMIT,
    WORD_LIMIT,
    ConnectionId,
    Fields,
    Skipped,
    bounded_text,
    clean_text,
    mapping,
    parse_text,
    record_id,
)


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
        triggers = mapping(mode.get("triggers"))
        frequency = parse_text(mapping(triggers.get("schedule")).get("frequency"), WORD_LIMIT)
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
    nested = mapping(value)
    return parse_text(nested.get("name"), NAME_LIMIT) or parse_text(nested.get("full_name"), NAME_LIMIT) or ""


def parse_sync(raw: object) -> Sync | Skipped:
    """A sync from ``GET /syncs``. The label falls back to ``resource_identifier``, then ``sync_<id>``."""
    record = mapping(raw)
    sync_id = record_id(record, "sync")
    if isinstance(sync_id, Skipped):
        return sync_id
    fields = Fields(record)
    label = (
        fields.text("label", NAME_LIMIT)
        or fields.text("resource_identifier", NAME_LIMIT)
        or f"sync_{sync_id}"
    )
    operation = fields.text("operation", WORD_LIMIT)
    source = mapping(record.get("source_attributes"))
    destination = mapping(record.get("destination_attributes"))
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
