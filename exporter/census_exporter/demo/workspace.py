"""SimulatedWorkspace: syncs, runs and connections held in the Census API's own JSON shapes.

Tests build exact situations with it (add a run, finish it, delete a sync); the demo activity generator
drives it over time. It stores raw dicts on purpose: it plays the API, and the API speaks JSON.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as the API writes times: ``2021-10-20T02:51:07.546Z``."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SimulatedWorkspace:
    """A Census workspace in memory. Every method is thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.syncs: dict[int, JSON] = {}
        self.runs: dict[int, list[JSON]] = {}
        self.runs_by_id: dict[int, JSON] = {}
        self.sources: dict[int, JSON] = {}
        self.destinations: dict[int, JSON] = {}
        self._next_run_id = 1
        self._last_created = 0.0
        self._next_sync_id = 1
        #: Syncs built by :meth:`add_sync` (not ``raw``): their ``status`` follows their runs, as in Census.
        self._derived_health: set[int] = set()
        #: Syncs built by :meth:`add_sync` (not ``raw``): dated back to their oldest run.
        self._built: set[int] = set()
        #: Called with a run each time one is added or changes (the webhook sender listens here).
        self.run_listeners: list[Callable[[JSON], None]] = []

    def announce_run(self, record: JSON) -> None:
        """Tell the listeners that ``record`` was added or changed."""
        for listener in self.run_listeners:
            listener(dict(record))

    def number_runs_from(self, first_run_id: int) -> None:
        """Give runs added without an id ids from ``first_run_id`` on (run ids are unique across groups)."""
        with self.lock:
            self._next_run_id = max(self._next_run_id, first_run_id)

    # ------------------------------------------------------------------ connections

    def add_source(self, source_id: int, name: str, kind: str = "snowflake") -> JSON:
        """A source connection (``connection_details`` included, as the API sends it)."""
        record = {
            "id": source_id,
            "name": name,
            "label": None,
            "type": kind,
            "connection_details": {"account": "acme-xy12345", "user": "CENSUS_USER"},
        }
        with self.lock:
            self.sources[source_id] = record
        return record

    def add_destination(self, destination_id: int, name: str, kind: str = "salesforce") -> JSON:
        """A destination connection."""
        record = {"id": destination_id, "name": name, "type": kind, "connection_details": {}}
        with self.lock:
            self.destinations[destination_id] = record
        return record

    # ------------------------------------------------------------------ syncs

    def add_sync(
        self,
        sync_id: int | None = None,
        *,
        label: str | None = "Sync",
        operation: str = "upsert",
        source_id: int | None = None,
        destination_id: int | None = None,
        destination_object: str = "Contact",
        schedule: str | None = "hourly",
        paused: bool = False,
        raw: JSON | None = None,
    ) -> JSON:
        """A sync in the current API shape (``mode``), or exactly ``raw`` if given."""
        with self.lock:
            if sync_id is None:
                sync_id = self._next_sync_id
            self._next_sync_id = max(self._next_sync_id, sync_id + 1)
            now = iso(self.clock())
            mode: JSON = {"type": "triggered", "triggers": {}}
            if schedule == "live":
                mode = {"type": "live", "triggers": {}}
            elif schedule:
                mode["triggers"] = {"schedule": {"frequency": schedule, "hour": 0, "minute": 15}}
            record: JSON = (
                raw
                if raw is not None
                else {
                    "id": sync_id,
                    "label": label,
                    "resource_identifier": f"sync_{sync_id}",
                    "status": "ready",
                    "created_at": now,
                    "updated_at": now,
                    "operation": operation,
                    "source_attributes": {
                        "connection_id": source_id,
                        "object": {"type": "table", "table_schema": "analytics", "table_name": "t"},
                    },
                    "destination_attributes": {
                        "connection_id": destination_id,
                        "object": destination_object,
                    },
                    "mappings": [],
                    "mode": mode,
                    "paused": paused,
                }
            )
            self.syncs[sync_id] = record
            self.runs.setdefault(sync_id, [])
            if raw is None:
                self._built.add(sync_id)
                self._derived_health.add(sync_id)
                self._derive_health(sync_id)
            return record

    def _derive_health(self, sync_id: int) -> None:
        """The sync's ``status`` as Census reports it: ``ready`` until a run finished, then ``failing`` when
        the newest completed or failed run failed, else ``up to date``; ``updated_at`` moves with it."""
        sync = self.syncs.get(sync_id)
        if sync is None or sync_id not in self._derived_health:
            return
        outcomes = [run for run in self.runs.get(sync_id, []) if run.get("status") in ("completed", "failed")]
        newest = max(outcomes, key=lambda run: int(run["id"]), default=None)
        health = "ready" if newest is None else ("failing" if newest["status"] == "failed" else "up to date")
        if sync.get("status") != health:
            sync["status"] = health
            sync["updated_at"] = iso(self.clock())

    def hold_listing(self, sync_id: int) -> None:
        """Stop the sync's listed ``status`` and ``updated_at`` following its runs, as when Census's sync
        list lags its runs: the exporter then learns of a run only by reading the sync's runs."""
        with self.lock:
            self._derived_health.discard(sync_id)

    def _date_back(self, sync_id: int, run_created_at: Any) -> None:
        """A sync built by :meth:`add_sync` is at least as old as its oldest run, as in Census."""
        sync = self.syncs.get(sync_id)
        if sync is None or sync_id not in self._built or not isinstance(run_created_at, str):
            return
        if isinstance(sync.get("created_at"), str) and run_created_at < sync["created_at"]:
            sync["created_at"] = run_created_at

    def update_sync(self, sync_id: int, **fields: Any) -> None:
        """Change fields of a sync (``paused=True``, ``label=...``)."""
        with self.lock:
            self.syncs[sync_id].update(fields)

    def remove_sync(self, sync_id: int, *, keep_runs_endpoint: bool = False) -> None:
        """Delete a sync; its runs endpoint then answers 404 unless ``keep_runs_endpoint``."""
        with self.lock:
            self.syncs.pop(sync_id, None)
            if not keep_runs_endpoint:
                for run in self.runs.pop(sync_id, []):
                    self.runs_by_id.pop(run["id"], None)

    # ------------------------------------------------------------------ runs

    def add_run(
        self,
        sync_id: int,
        status: str = "completed",
        *,
        run_id: int | None = None,
        created_at: float | None = None,
        duration: float | None = 60.0,
        records: int | None = 100,
        records_failed: int | None = 0,
        records_invalid: int | None = 0,
        error_code: str | None = None,
        error_message: str | None = None,
        scheduled: bool = False,
        trigger: str | None = "Schedule",
        full_sync: bool = False,
        canceled: bool = False,
        raw: JSON | None = None,
    ) -> JSON:
        """Append a run (the newest) to a sync, in the API's shape, and return it."""
        with self.lock:
            if raw is not None:
                record = dict(raw)
            else:
                if run_id is None:
                    run_id = self._next_run_id
                # Census stamps runs to the millisecond; two runs of one sync never share a creation time.
                # A millisecond after the last one written, in its middle: a float 1 ms past the last can
                # truncate to the same written time (x.0239999 and x.024 both write .023).
                created = (
                    (max(math.floor(self.clock() * 1000), math.floor(self._last_created * 1000) + 1) + 0.5)
                    / 1000
                    if created_at is None
                    else created_at
                )
                self._last_created = max(self._last_created, created)
                finished = status not in ("queued", "working")
                completed = created + (duration or 0.0) if finished else None
                failed = status == "failed"
                record = {
                    "id": run_id,
                    "sync_id": sync_id,
                    "source_record_count": records,
                    "records_processed": None if failed else (records if finished else None),
                    "records_updated": None
                    if failed or not finished
                    else (records or 0) - (records_failed or 0) - (records_invalid or 0),
                    "records_failed": None if failed else (records_failed if finished else None),
                    "records_invalid": records_invalid if finished else None,
                    "created_at": iso(created),
                    "updated_at": iso(completed if completed is not None else created),
                    "completed_at": None if failed else iso(completed),
                    "scheduled_execution_time": iso(created) if scheduled else None,
                    "error_code": error_code,
                    "error_message": error_message,
                    "error_detail": error_message,
                    "status": status,
                    "current_step": None if finished else "Loading data into destination service",
                    "canceled": canceled,
                    "full_sync": full_sync,
                    "sync_trigger_reason": {
                        "ui_tag": trigger,
                        "ui_detail": "Triggered by ops@example.com",
                    }
                    if trigger
                    else None,
                }
            self._next_run_id = max(self._next_run_id, int(record["id"]) + 1)
            self._date_back(sync_id, record.get("created_at"))
            self.runs.setdefault(sync_id, []).append(record)
            self.runs_by_id[int(record["id"])] = record
            self._derive_health(sync_id)
        self.announce_run(record)
        return record

    def update_run(self, run_id: int, **fields: Any) -> JSON:
        """Change fields of a run in place (finish it, fail it)."""
        with self.lock:
            record = self.runs_by_id[run_id]
            record.update(fields)
            if isinstance(record.get("sync_id"), int):
                self._derive_health(record["sync_id"])
        self.announce_run(record)
        return record

    def finish_run(
        self,
        run_id: int,
        status: str = "completed",
        *,
        duration: float = 60.0,
        records: int = 100,
        records_failed: int = 0,
        records_invalid: int = 0,
        error_code: str | None = None,
    ) -> JSON:
        """Move a queued or working run to a terminal status."""
        with self.lock:
            record = self.runs_by_id[run_id]
            created = datetime.fromisoformat(record["created_at"]).timestamp()
            completed = created + duration
            failed = status == "failed"
            record.update(
                status=status,
                updated_at=iso(completed),
                completed_at=None if failed else iso(completed),
                source_record_count=records,
                records_processed=None if failed else records,
                records_updated=None if failed else records - records_failed - records_invalid,
                records_failed=None if failed else records_failed,
                records_invalid=records_invalid,
                error_code=error_code,
                error_message="Simulated failure" if failed else None,
                current_step=None,
            )
        self.announce_run(record)
        return record

    def runs_newest_first(self, sync_id: int) -> list[JSON] | None:
        """The sync's runs, newest first; ``None`` if the sync's runs endpoint would 404."""
        with self.lock:
            runs = self.runs.get(sync_id)
            if runs is None:
                return None
            return sorted(runs, key=lambda run: (str(run.get("created_at")), run.get("id", 0)))[::-1]


def reference_workspace(clock: Callable[[], float] = time.time) -> SimulatedWorkspace:
    """The example from Census's sync-runs documentation: sync 52 with runs 92, 93 and 94."""
    workspace = SimulatedWorkspace(clock)
    workspace.add_source(12, "Snowflake Production")
    workspace.add_destination(15, "Salesforce")
    workspace.add_sync(
        52,
        label="New Signups to Leads",
        operation="upsert",
        source_id=12,
        destination_id=15,
        destination_object="Lead",
        schedule="daily",
    )
    trigger = {"ui_tag": "Manual", "ui_detail": "Manually triggered by test@getcensus.com"}
    base = {
        "sync_id": 52,
        "source_record_count": 1,
        "scheduled_execution_time": None,
        "canceled": False,
        "full_sync": True,
        "sync_trigger_reason": trigger,
    }
    workspace.add_run(
        52,
        raw=base
        | {
            "id": 92,
            "records_processed": 1,
            "records_updated": 1,
            "records_failed": 0,
            "records_invalid": 0,
            "created_at": "2021-10-20T02:44:35.381Z",
            "updated_at": "2021-10-20T02:45:55.949Z",
            "completed_at": "2021-10-20T02:45:55.947Z",
            "error_code": None,
            "error_message": None,
            "error_detail": None,
            "status": "completed",
        },
    )
    workspace.add_run(
        52,
        raw=base
        | {
            "id": 93,
            "records_processed": None,
            "records_updated": None,
            "records_failed": None,
            "records_invalid": 0,
            "created_at": "2021-10-20T02:48:40.373Z",
            "updated_at": "2021-10-20T02:49:53.430Z",
            "completed_at": None,
            "error_code": "JSON_ARRAY_ERROR",
            "error_message": "The array field being used does not appear to be valid JSON: "
            'Please make sure the field "custom_field:Users" with value "jim" is formatted as a '
            "JSON Array.",
            "error_detail": "Please make sure the field is formatted as a JSON Array.",
            "status": "failed",
            "current_step": "Running sync",
        },
    )
    workspace.add_run(
        52,
        raw=base
        | {
            "id": 94,
            "records_processed": 1,
            "records_updated": 1,
            "records_failed": 0,
            "records_invalid": 0,
            "created_at": "2021-10-20T02:51:07.546Z",
            "updated_at": "2021-10-20T02:52:29.236Z",
            "completed_at": "2021-10-20T02:52:29.234Z",
            "error_code": None,
            "error_message": None,
            "error_detail": None,
            "status": "completed",
        },
    )
    return workspace
