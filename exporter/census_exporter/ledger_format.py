"""The state file's format (``--storage.path``, :mod:`census_exporter.storage`): each value encoded as JSON,
and read back checked against the ledger's own caps, so a file that is damaged or not the exporter's is
refused (:class:`Unusable`) rather than restored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from census_exporter.census.models.fields import NAME_LIMIT, WORD_LIMIT, ConnectionId, check_connection_id
from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import (
    MAX_PENDING_RUNS_PER_SYNC,
    REMEMBERED_FINGERPRINTS,
    REMEMBERED_RUN_IDS,
    SyncLedger,
)
from census_exporter.run_counters import MAX_UNDOCUMENTED_STATUSES, RunCounters
from census_exporter.run_ids import RunIds

#: Statuses one ledger can count under: the documented ones, the undocumented cap and ``other``.
_MAX_STATUSES = 16 + MAX_UNDOCUMENTED_STATUSES
MAX_ID = 2**63 - 1
_MAX_COUNT = 2**63 - 1
#: A stored time later than this past the clock now is not one the exporter stored (a clock set back a day
#: or less still restores).
_MAX_FUTURE_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Which Census workspace a state file belongs to, beyond its label: a directory pointed at another
    account's workspace with the same label must not continue its counts.

    ``scope`` is the Census workspace id (``workspace:123``) or V2 group id (``group:abc``) when known;
    without one the token tells workspaces apart, stored only as a salted hash (a rotated token starts
    afresh).
    """

    api_url: str
    scope: str | None = None
    token: Callable[[], str] | None = field(default=None, repr=False, compare=False)


class Unusable(Exception):
    """A state file that cannot be restored; the message says why."""


# ----------------------------------------------------------------------------- identity


def same_census_workspace(document: Mapping[str, Any], identity: Identity) -> bool:
    """Whether the state file ``document`` is of the Census workspace ``identity`` names."""
    if document.get("api_url") != identity.api_url or document.get("scope") != identity.scope:
        return False
    salt, stored = document.get("salt"), document.get("token_sha256")
    if identity.scope is not None or identity.token is None:
        return identity.scope is not None or stored is None
    if not isinstance(salt, str) or not isinstance(stored, str):
        return False
    return secrets.compare_digest(stored, token_digest(identity, salt) or "")


def token_digest(identity: Identity, salt: str) -> str | None:
    """The salted hash of the current token (None: no token source, or it cannot be read now)."""
    if identity.token is None:
        return None
    try:
        token = identity.token()
    except Exception:  # noqa: BLE001 - an unreadable token file is reported where requests are made
        return None
    return hashlib.sha256(f"{salt}:{token}".encode("utf-8", "surrogatepass")).hexdigest()


# ----------------------------------------------------------------------------- encoding


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def ledger_json(ledger: SyncLedger) -> dict[str, Any]:
    ids = list(ledger.recent_run_ids)
    return {
        # Ascending ids as the first and then the gaps: a third of the size of the ids themselves.
        "recent": [ids[0], *(b - a for a, b in itertools.pairwise(ids))] if ids else [],
        "floor_run_id": ledger.floor_run_id,
        "pending": sorted(ledger.pending_run_ids),
        "pending_seen": {str(run_id): at for run_id, at in sorted(ledger.pending_seen_at.items())},
        "last_pending_lookup": ledger.last_pending_lookup,
        "counters": counters_json(ledger.counters),
        "last_success_at": ledger.last_success_at,
        "last_failure_at": ledger.last_failure_at,
        "newest_outcome_run_id": ledger.newest_outcome_run_id,
        "failing": ledger.failing,
        "failing_error_code": ledger.failing_error_code,
        "earliest_run_at": ledger.earliest_run_at,
        "watched_since": ledger.watched_since,
        "counted_fingerprints": list(ledger.counted_fingerprints),
    }


def sync_json(sync: Sync) -> dict[str, Any]:
    """The sync's definition as listed (what its series are labelled with while it is awaited)."""
    return {
        "label": sync.label,
        "operation": sync.operation,
        "source": sync.source_connection_id,
        "destination": sync.destination_connection_id,
        "object": sync.destination_object,
        "schedule": sync.schedule,
        "paused": sync.paused,
        "health": sync.health,
        "updated_at": sync.updated_at,
        "created_at": sync.created_at,
    }


def decode_sync(value: Any, sync_id: int) -> Sync:
    if not isinstance(value, dict):
        raise Unusable("a sync definition is not an object")
    paused = value.get("paused")
    if paused not in (None, True, False):
        raise Unusable("paused")
    return Sync(
        id=sync_id,
        label=_text(value.get("label"), "label", NAME_LIMIT),
        operation=_text(value.get("operation"), "operation", WORD_LIMIT, empty=True),
        source_connection_id=_connection(value.get("source"), "source"),
        destination_connection_id=_connection(value.get("destination"), "destination"),
        destination_object=_text(value.get("object"), "object", NAME_LIMIT, empty=True),
        schedule=_text(value.get("schedule"), "schedule", NAME_LIMIT, empty=True),
        paused=paused,
        health=_optional_word(value.get("health"), "health"),
        updated_at=_optional_time(value.get("updated_at"), "updated_at"),
        created_at=_optional_time(value.get("created_at"), "created_at"),
    )


def counters_json(counters: RunCounters) -> dict[str, Any]:
    return {
        "runs": dict(sorted(counters.runs_by_status.items())),
        "records": list(counters.record_totals()),
        "durations": list(counters.duration_bucket_counts),
        "duration_sum": counters.duration_sum_seconds,
        "superseded_failures": counters.superseded_failures,
    }


# ----------------------------------------------------------------------------- decoding


def decode_ledger(
    value: Any, stored_buckets: int, same_buckets: bool, buckets: tuple[float, ...]
) -> SyncLedger:
    if not isinstance(value, dict):
        raise Unusable("a ledger is not an object")
    deltas = _ints(value.get("recent"), "recent", REMEMBERED_RUN_IDS, 0, MAX_ID)
    recent: list[int] = []
    total = 0
    for delta in deltas:
        total += delta
        if total > MAX_ID or (recent and delta == 0):
            raise Unusable("recent run ids out of range")
        recent.append(total)
    pending = _ints(value.get("pending"), "pending", MAX_PENDING_RUNS_PER_SYNC, 0, MAX_ID)
    seen_raw = value.get("pending_seen", {})
    if not isinstance(seen_raw, dict) or len(seen_raw) > MAX_PENDING_RUNS_PER_SYNC:
        raise Unusable("pending_seen")
    seen = {
        checked_int(parse_key(key), "pending run id", 0, MAX_ID): _time(at, "pending_seen")
        for key, at in seen_raw.items()
    }
    failing = value.get("failing")
    if failing not in (None, True, False):
        raise Unusable("failing")
    return SyncLedger(
        recent_run_ids=RunIds(recent),
        pending_run_ids=frozenset(pending),
        counters=decode_counters(value.get("counters"), stored_buckets, same_buckets, buckets),
        last_success_at=_optional_time(value.get("last_success_at"), "last_success_at"),
        last_failure_at=_optional_time(value.get("last_failure_at"), "last_failure_at"),
        buckets=buckets,
        last_pending_lookup=checked_int(
            value.get("last_pending_lookup", 0), "last_pending_lookup", 0, MAX_ID
        ),
        floor_run_id=checked_int(value.get("floor_run_id", 0), "floor_run_id", 0, MAX_ID),
        newest_outcome_run_id=checked_int(value.get("newest_outcome_run_id", 0), "newest_outcome", 0, MAX_ID),
        failing=failing,
        failing_error_code=_optional_word(value.get("failing_error_code"), "failing_error_code"),
        earliest_run_at=_optional_time(value.get("earliest_run_at"), "earliest_run_at"),
        pending_seen_at=MappingProxyType(seen),
        watched_since=_optional_time(value.get("watched_since"), "watched_since"),
        counted_fingerprints=RunIds(
            _ints(
                value.get("counted_fingerprints", []),
                "counted_fingerprints",
                REMEMBERED_FINGERPRINTS,
                -(2**63),
                MAX_ID,
            )
        ),
    )


def decode_counters(
    value: Any, stored_buckets: int, same_buckets: bool, buckets: tuple[float, ...]
) -> RunCounters:
    if not isinstance(value, dict):
        raise Unusable("counters are not an object")
    runs = value.get("runs")
    if not isinstance(runs, dict) or len(runs) > _MAX_STATUSES:
        raise Unusable("run counts")
    by_status = {
        _word(status, "status"): checked_int(count, "run count", 0, _MAX_COUNT)
        for status, count in runs.items()
    }
    records = _ints(value.get("records"), "records", 5, 0, _MAX_COUNT)
    if len(records) != 5:
        raise Unusable("records")
    durations = _ints(value.get("durations"), "durations", stored_buckets + 1, 0, _MAX_COUNT)
    if len(durations) != stored_buckets + 1:
        raise Unusable("duration buckets")
    duration_sum = _float(value.get("duration_sum", 0.0), "duration_sum")
    if duration_sum < 0:
        raise Unusable("duration_sum")
    if not same_buckets:
        durations, duration_sum = [0] * (len(buckets) + 1), 0.0
    superseded = checked_int(value.get("superseded_failures", 0), "superseded_failures", 0, _MAX_COUNT)
    return RunCounters.of(by_status, records, durations, duration_sum, superseded)


# ----------------------------------------------------------------------------- checked reading


def short(value: Any) -> str:
    return repr(value)[:40]


def parse_key(text: Any) -> int:
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise Unusable(f"key {short(text)}")
    return int(text)


def checked_int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Unusable(f"{what} {short(value)}")
    return value


def _ints(value: Any, what: str, most: int, low: int, high: int) -> list[int]:
    if not isinstance(value, list) or len(value) > most:
        raise Unusable(what)
    return [checked_int(item, what, low, high) for item in value]


def _float(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise Unusable(f"{what} {short(value)}")
    return float(value)


def checked_floats(value: Any, what: str, most: int) -> list[float]:
    if not isinstance(value, list) or len(value) > most:
        raise Unusable(what)
    return [_float(item, what) for item in value]


def no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice (two ledgers for one sync) makes the file unusable, not the last."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise Unusable("a key is repeated in one object")
    return document


def _time(value: Any, what: str) -> float:
    """A Unix time no earlier than 1970 and no later than a day from now (the exporter wrote no other)."""
    at = _float(value, what)
    if not 0 <= at <= time.time() + _MAX_FUTURE_SECONDS:
        raise Unusable(f"{what} {short(value)}")
    return at


def _optional_time(value: Any, what: str) -> float | None:
    return None if value is None else _time(value, what)


def _word(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= WORD_LIMIT:
        raise Unusable(f"{what} {short(value)}")
    return value


def _text(value: Any, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or not (value or empty):
        raise Unusable(what)
    return value


def _connection(value: Any, what: str) -> ConnectionId | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or check_connection_id(value) != value:
        raise Unusable(f"{what} connection {short(value)}")
    return value


def _optional_word(value: Any, what: str) -> str | None:
    return None if value is None else _word(value, what)
