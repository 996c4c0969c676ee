"""DemoActivity: about 25 realistic syncs whose runs appear, run and finish as time passes.

Each sync has a fixed interval and offset. Its k-th run is drawn from a random generator seeded with
``(seed, sync id, k)``, so the workspace at any moment is a pure function of the seed, the start time and the
current time: the same seed gives the same history however often the API is polled. Time is compressed so a
person watching ``make demo`` sees runs start and finish within minutes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from census_exporter.demo.workspace import SimulatedWorkspace, iso

SOURCES = [(1, "Snowflake Production", "snowflake"), (2, "BigQuery Analytics", "big_query")]
DESTINATIONS = [
    (11, "Salesforce", "salesforce"),
    (12, "HubSpot", "hubspot"),
    (13, "Google Ads", "google_ads"),
    (14, "Braze", "braze"),
    (15, "Zendesk", "zendesk"),
    (16, "Marketo", "marketo"),
]
# (label, operation, destination id, object, schedule)
SYNC_TEMPLATES = [
    ("Accounts to Salesforce", "upsert", 11, "Account", "hourly"),
    ("Contacts to Salesforce", "upsert", 11, "Contact", "hourly"),
    ("Leads to Salesforce", "update", 11, "Lead", "quarter_hourly"),
    ("Opportunities to Salesforce", "upsert", 11, "Opportunity", "daily"),
    ("Product Usage to Salesforce", "update", 11, "Account", "hourly"),
    ("Contacts to HubSpot", "upsert", 12, "contacts", "hourly"),
    ("Companies to HubSpot", "upsert", 12, "companies", "daily"),
    ("Deals to HubSpot", "mirror", 12, "deals", "hourly"),
    ("Lifecycle Stage to HubSpot", "update", 12, "contacts", "quarter_hourly"),
    ("High-LTV Audience to Google Ads", "mirror", 13, "customer_match", "daily"),
    ("Churn Risk Audience to Google Ads", "mirror", 13, "customer_match", "daily"),
    ("Offline Conversions to Google Ads", "append", 13, "offline_conversions", "hourly"),
    ("Users to Braze", "upsert", 14, "users", "live"),
    ("Events to Braze", "append", 14, "events", "continuous"),
    ("Subscription Status to Braze", "update", 14, "users", "hourly"),
    ("Organizations to Zendesk", "upsert", 15, "organizations", "daily"),
    ("Users to Zendesk", "upsert", 15, "users", "hourly"),
    ("Support Tier to Zendesk", "update", 15, "users", "daily"),
    ("Leads to Marketo", "upsert", 16, "leads", "hourly"),
    ("Program Members to Marketo", "mirror", 16, "program_members", "daily"),
    ("Trial Signups to Salesforce", "insert", 11, "Lead", "expression"),
    ("Health Scores to HubSpot", "update", 12, "companies", "weekly"),
    ("Invoices to Salesforce", "append", 11, "Invoice__c", "daily"),
    ("NPS Responses to Zendesk", "append", 15, "tickets", "hourly"),
    ("Win-back Audience to Braze", "mirror", 14, "segments", "daily"),
]
ERROR_CODES = [
    ("DESTINATION_RATE_LIMITED", "The destination rejected requests: rate limit exceeded."),
    ("INVALID_CREDENTIALS", "Authentication with the destination failed."),
    ("JSON_ARRAY_ERROR", "The array field being used does not appear to be valid JSON."),
    ("SOURCE_QUERY_TIMEOUT", "The source query did not finish in time."),
]
TRIGGERS = ["Schedule", "Schedule", "Schedule", "API Request", "dbt Cloud", "Manual"]
HISTORY_RUNS = 8


@dataclass(frozen=True, slots=True)
class _Plan:
    status: str
    duration: float
    records: int
    failed: int
    invalid: int
    error: tuple[str, str] | None
    trigger: str
    full_sync: bool


class DemoActivity:
    """Keeps a :class:`SimulatedWorkspace` moving; call :meth:`advance` before answering a request."""

    def __init__(
        self,
        workspace: SimulatedWorkspace,
        *,
        seed: int = 0,
        syncs: int = 25,
        start: float | None = None,
        failing_sync_ids: frozenset[int] = frozenset(),
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        first_sync_id: int = 1001,
    ) -> None:
        self.workspace = workspace
        self.seed = seed
        self.clock = clock
        self.failing_sync_ids = failing_sync_ids
        self._lock = threading.Lock()
        self._start = clock() if start is None else start
        self._cursor: dict[int, int] = {}
        self._working: dict[int, tuple[int, float, _Plan]] = {}
        self._interval: dict[int, float] = {}
        self._offset: dict[int, float] = {}
        layout = random.Random(f"{seed}:layout")  # noqa: S311 - simulation, not security
        for source_id, name, kind in SOURCES:
            workspace.add_source(source_id, name, kind)
        for destination_id, name, kind in DESTINATIONS:
            workspace.add_destination(destination_id, name, kind)
        for index in range(syncs):
            label, operation, destination, obj, schedule = SYNC_TEMPLATES[index % len(SYNC_TEMPLATES)]
            if index >= len(SYNC_TEMPLATES):
                label = f"{label} #{index // len(SYNC_TEMPLATES) + 1}"
            sync_id = first_sync_id + index
            workspace.add_sync(
                sync_id,
                label=label,
                operation=operation,
                source_id=SOURCES[index % 2][0],
                destination_id=destination,
                destination_object=obj,
                schedule=schedule,
                paused=index % 12 == 11,
            )
            self._interval[sync_id] = layout.choice([30.0, 45.0, 60.0, 90.0, 120.0]) / time_scale
            self._offset[sync_id] = layout.uniform(0, self._interval[sync_id])
            self._cursor[sync_id] = -HISTORY_RUNS
        self.advance()

    def _plan(self, sync_id: int, k: int) -> _Plan:
        rng = random.Random(f"{self.seed}:{sync_id}:{k}")  # noqa: S311 - simulation
        roll = rng.random()
        duration = rng.uniform(5, 40)
        if rng.random() < 0.05:
            duration = rng.uniform(150, 400)  # a long-running load
        records = int(rng.lognormvariate(7, 1.5))
        failed = int(records * rng.choice([0, 0, 0, 0.001, 0.02, 0.15]))
        invalid = int(records * rng.choice([0, 0, 0, 0.005, 0.05]))
        error = None
        status = "completed"
        if sync_id in self.failing_sync_ids or roll < 0.08:
            status, error = "failed", rng.choice(ERROR_CODES)
        return _Plan(
            status=status,
            duration=duration,
            records=records,
            failed=failed,
            invalid=invalid,
            error=error,
            trigger=rng.choice(TRIGGERS),
            full_sync=rng.random() < 0.1,
        )

    def advance(self) -> None:
        """Start runs that are due and finish runs whose time is up, in time order."""
        now = self.clock()
        with self._lock, self.workspace.lock:
            due: list[tuple[float, int, int]] = []
            for sync_id, first in self._cursor.items():
                sync = self.workspace.syncs.get(sync_id)
                k = first
                while (start := self._run_start(sync_id, k)) <= now:
                    if sync is not None and not sync.get("paused"):
                        due.append((start, sync_id, k))
                    k += 1
                self._cursor[sync_id] = k
            for start, sync_id, k in sorted(due):
                self._finish_due(start)
                self._start_run(sync_id, k, start)
            self._finish_due(now)

    def _run_start(self, sync_id: int, k: int) -> float:
        return self._start + self._offset[sync_id] + k * self._interval[sync_id]

    def _start_run(self, sync_id: int, k: int, start: float) -> None:
        plan = self._plan(sync_id, k)
        if sync_id in self._working:
            self.workspace.add_run(
                sync_id,
                "skipped",
                created_at=start,
                duration=0.0,
                records=None,
                records_failed=None,
                records_invalid=None,
                trigger=plan.trigger,
                scheduled=True,
            )
            return
        run = self.workspace.add_run(
            sync_id,
            "working",
            created_at=start,
            trigger=plan.trigger,
            scheduled=True,
            full_sync=plan.full_sync,
            records=None,
        )
        self._working[sync_id] = (int(run["id"]), start + plan.duration, plan)

    def _finish_due(self, now: float) -> None:
        for sync_id, (run_id, end, plan) in list(self._working.items()):
            if end > now:
                continue
            del self._working[sync_id]
            record = self.workspace.runs_by_id.get(run_id)
            if record is None:
                continue
            failed = plan.status == "failed"
            record.update(
                status=plan.status,
                updated_at=iso(end),
                completed_at=None if failed else iso(end),
                source_record_count=plan.records,
                records_processed=None if failed else plan.records,
                records_updated=None if failed else plan.records - plan.failed - plan.invalid,
                records_failed=None if failed else plan.failed,
                records_invalid=plan.invalid,
                error_code=plan.error[0] if plan.error else None,
                error_message=plan.error[1] if plan.error else None,
                error_detail=plan.error[1] if plan.error else None,
                current_step=None,
            )
            self.workspace.announce_run(record)
