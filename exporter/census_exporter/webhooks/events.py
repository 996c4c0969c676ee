"""Census sync lifecycle events: the verified body of one webhook, parsed into a frozen dataclass.

Every payload has ``workspace_id``, ``sync_id``, ``sync_run_id`` and ``event`` (integers in Census's
examples; digit strings are taken too). ``sync.completed`` adds ``status`` (``ok`` or ``emergency``); alert
events add ``alert_instance_id`` and texts the exporter does not keep. With API V2 the bodies gain
``group_id`` (a string, the Fivetran group). Only what the exporter uses is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: The documented events; any other is counted as ``other`` (its name is never a label value).
EVENTS = (
    "sync.triggered",
    "sync.started",
    "sync.completed",
    "sync.success",
    "sync.failed",
    "sync.alert.raised",
    "sync.alert.resolved",
)
OTHER_EVENT = "other"
#: Events that say a run ended: its outcome is worth an immediate read.
TERMINAL_EVENTS = frozenset({"sync.completed", "sync.success", "sync.failed"})
#: Events that say a run exists (queued or working): a read shows it unfinished.
START_EVENTS = frozenset({"sync.triggered", "sync.started"})
#: Events about a sync's alerts: they may carry no run.
ALERT_EVENTS = frozenset({"sync.alert.raised", "sync.alert.resolved"})

MAX_ID = 2**63 - 1
MAX_EVENT_CHARS = 64
#: The longest ``group_id`` taken (Census's are two words, such as ``decent_dropsy``).
MAX_GROUP_CHARS = 128


class EventError(ValueError):
    """The body is not a usable event; the message names the field, never its value."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One lifecycle event, as the exporter uses it."""

    #: One of :data:`EVENTS`, or :data:`OTHER_EVENT`.
    event: str
    sync_id: int
    #: ``None`` only for alert events and events outside the documented set that carry none.
    sync_run_id: int | None
    workspace_id: int | None
    alert_instance_id: int | None = None
    #: The V2 group the event is about, when the body names one.
    group_id: str | None = None

    @property
    def dedup_key(self) -> tuple[str, int, int | None, int | None]:
        """Deliveries with the same key are one event (Census may deliver an event again)."""
        return (self.event, self.sync_id, self.sync_run_id, self.alert_instance_id)


def parse_event(body: bytes) -> WebhookEvent:
    """The event in ``body`` (UTF-8 JSON object); :class:`EventError` if malformed or a field is missing."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EventError("the body is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise EventError("the body is not a JSON object")
    raw_event = document.get("event")
    if not isinstance(raw_event, str) or not raw_event or len(raw_event) > MAX_EVENT_CHARS:
        raise EventError("field `event` must be a short string")
    event = raw_event if raw_event in EVENTS else OTHER_EVENT
    sync_id = _id(document, "sync_id", required=True)
    assert sync_id is not None  # required
    run_required = event not in ALERT_EVENTS and event != OTHER_EVENT
    return WebhookEvent(
        event=event,
        sync_id=sync_id,
        sync_run_id=_id(document, "sync_run_id", required=run_required),
        workspace_id=_id(document, "workspace_id", required=False),
        alert_instance_id=_id(document, "alert_instance_id", required=False),
        group_id=_group(document),
    )


def _group(document: dict[str, Any]) -> str | None:
    value = document.get("group_id")
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_GROUP_CHARS:
        raise EventError("field `group_id` must be a short string")
    return value


def _id(document: dict[str, Any], field: str, *, required: bool) -> int | None:
    value = document.get(field)
    if value is None:
        if required:
            raise EventError(f"field `{field}` is required")
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise EventError(f"field `{field}` must be a positive integer id")
    return value
