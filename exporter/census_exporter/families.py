"""Every ``census_`` family the collector renders, declared once, in exposition order.

The exporter's own API request metrics are declared in :mod:`census_exporter.instrumentation`; every other
``census_*`` family is here, as a :class:`~census_exporter.rendering.Family`. A family whose value is read
straight from a record (a run, a ledger, the counters, the budget) is a :class:`Series`: the family and how
to read its value, one spec type for all of them. Which optional families exist is the
:class:`~census_exporter.config.Exposition`'s choice (:mod:`census_exporter.family_lines`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from census_exporter.census.budget import BudgetUse
from census_exporter.census.models.runs import SyncRun
from census_exporter.ledger import SyncLedger
from census_exporter.rendering import Family
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import SyncState

_Source = TypeVar("_Source")


@dataclass(frozen=True, slots=True)
class Series(Generic[_Source]):
    """A family of one value per sync (or workspace), and how to read that value from ``_Source``."""

    family: Family
    read: Callable[[_Source], float | int | bool | None]


# ----------------------------------------------------------------------------- health of the exporter

BUILD_INFO = Family(
    "census_exporter_build_info",
    "gauge",
    "Version, git revision and branch of census-exporter, the Python version and platform; always 1.",
)
UP = Family(
    "census_up", "gauge", "1 if the last refresh of Census API data finished without any error, else 0."
)
LAST_REFRESH = Family(
    "census_last_refresh_timestamp_seconds",
    "gauge",
    "Unix time at which the last error-free refresh finished.",
)
REFRESH_DURATION = Family(
    "census_refresh_duration_seconds", "gauge", "How long the last refresh of Census API data took."
)
#: Its HELP, like every per-sync family's, says how old the data may be.
SYNCS = Family(
    "census_syncs", "gauge", "Number of syncs watched in the workspace (after its include/exclude filter)."
)
DISCOVERY_UP = Family(
    "census_discovery_up",
    "gauge",
    "1 if the last listing of workspaces (or groups) by this discovery entry had no error, else 0.",
)
DISCOVERY_WORKSPACES = Family(
    "census_discovery_workspaces",
    "gauge",
    "Workspaces (or groups) this discovery entry watches; absent until a listing succeeded.",
)
#: A timestamp, not an age, so that it belongs to the view and its rendering is cached with the rest; an
#: age would have to be rendered anew on every scrape.
DATA_TIMESTAMP = Family(
    "census_sync_data_timestamp_seconds",
    "gauge",
    "Unix time at which this sync's runs were last read successfully; absent before the first read. "
    "time() minus it is the age of the sync's data.",
)

# ----------------------------------------------------------------------------- per sync

SYNC_INFO = Family(
    "census_sync_info", "gauge", "Descriptive attributes of a sync; always 1. Join on sync_id."
)
PAUSED = Family("census_sync_paused", "gauge", "1 if the sync is paused, else 0.")
HEALTH = Family(
    "census_sync_health",
    "gauge",
    "Health of the sync as the sync list reports it (ready, up to date, failing, ...): one series per sync, "
    "labelled with it; always 1.",
)
LAST_RUN_STATUS = Family(
    "census_sync_last_run_status",
    "gauge",
    "Status of the newest run: one series per sync, labelled with the status; always 1.",
)
LAST_RUN_INFO = Family(
    "census_sync_last_run_info",
    "gauge",
    "Trigger (sync_trigger_reason.ui_tag), error code, full_sync and canceled of the newest run; always 1.",
)
LAST_FINISHED_RUN_FAILED = Family(
    "census_sync_last_finished_run_failed",
    "gauge",
    "1 while the newest finished run (completed or failed) failed, through retries queued, working or "
    "skipped, until a run completes; then 0. error_code: of the run that began the failing streak.",
)
LAST_RUN_GAUGES: tuple[Series[SyncRun], ...] = (
    Series(
        Family(
            "census_sync_last_run_created_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run was created (started or queued).",
        ),
        lambda r: r.created_at,
    ),
    Series(
        Family(
            "census_sync_last_run_duration_seconds",
            "gauge",
            "Duration of the newest run if finished: completed_at (or updated_at) minus created_at.",
        ),
        lambda r: r.duration_seconds,
    ),
    Series(
        Family(
            "census_sync_last_run_source_records",
            "gauge",
            "Records in the source for the newest run (source_record_count).",
        ),
        lambda r: r.source_record_count,
    ),
    Series(
        Family(
            "census_sync_last_run_records_processed",
            "gauge",
            "Records the newest run processed (records_processed).",
        ),
        lambda r: r.records_processed,
    ),
    Series(
        Family(
            "census_sync_last_run_records_updated",
            "gauge",
            "Records the destination accepted in the newest run (records_updated).",
        ),
        lambda r: r.records_updated,
    ),
    Series(
        Family(
            "census_sync_last_run_records_failed",
            "gauge",
            "Records the destination rejected in the newest run (records_failed).",
        ),
        lambda r: r.records_failed,
    ),
    Series(
        Family(
            "census_sync_last_run_records_invalid",
            "gauge",
            "Records Census skipped as invalid in the newest run (records_invalid).",
        ),
        lambda r: r.records_invalid,
    ),
)
#: Only with ``--census.run-details``: nothing in the alerts, rules or dashboard reads them.
LAST_RUN_DETAIL_GAUGES: tuple[Series[SyncRun], ...] = (
    Series(Family("census_sync_last_run_id", "gauge", "Id of the newest run of the sync."), lambda r: r.id),
    Series(
        Family(
            "census_sync_last_run_completed_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run completed (completed_at; absent when null).",
        ),
        lambda r: r.completed_at,
    ),
    Series(
        Family(
            "census_sync_last_run_scheduled_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run was scheduled to start (absent for unscheduled runs).",
        ),
        lambda r: r.scheduled_execution_time,
    ),
)
LAST_SUCCESS_GAUGE: Series[SyncLedger] = Series(
    Family(
        "census_sync_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the newest successful (completed) run finished.",
    ),
    lambda ledger: ledger.last_success_at,
)
NO_SUCCESS_SINCE_GAUGE: Series[SyncLedger] = Series(
    Family(
        "census_sync_no_success_since_timestamp_seconds",
        "gauge",
        "While no successful run is known: Unix time of the oldest run seen, since which none succeeded.",
    ),
    lambda ledger: ledger.no_success_since,
)
#: Only with ``--census.run-details``.
LAST_FAILURE_GAUGE: Series[SyncLedger] = Series(
    Family(
        "census_sync_last_failure_timestamp_seconds",
        "gauge",
        "Unix time at which the newest failed run finished.",
    ),
    lambda ledger: ledger.last_failure_at,
)
OLDEST_UNFINISHED_GAUGE: Series[SyncState] = Series(
    Family(
        "census_sync_oldest_unfinished_run_created_timestamp_seconds",
        "gauge",
        "Unix time at which the oldest run still queued or working was created.",
    ),
    lambda state: state.oldest_unfinished_created_at,
)
RUNS = Family(
    "census_sync_runs_total",
    "counter",
    "Runs that finished since the exporter began counting, by final status.",
)
SUPERSEDED_FAILURES = Family(
    "census_sync_superseded_failed_runs_total",
    "counter",
    "Failed runs that a later completed run had already followed when the exporter read them, so no "
    "failing streak (census_sync_last_finished_run_failed) showed them.",
)
#: Per sync with ``--census.record-totals=sync``; per workspace (``census_workspace_...``) by default.
RECORD_COUNTERS: tuple[Series[RunCounters], ...] = (
    Series(
        Family(
            "census_sync_records_processed_total",
            "counter",
            "Records processed, summed over runs counted since the exporter began counting.",
        ),
        lambda c: c.records_processed,
    ),
    Series(
        Family(
            "census_sync_records_updated_total",
            "counter",
            "Records accepted by the destination, summed over counted runs.",
        ),
        lambda c: c.records_updated,
    ),
    Series(
        Family(
            "census_sync_records_failed_total",
            "counter",
            "Records rejected by the destination, summed over counted runs.",
        ),
        lambda c: c.records_failed,
    ),
    Series(
        Family(
            "census_sync_records_invalid_total",
            "counter",
            "Records skipped by Census as invalid, summed over counted runs.",
        ),
        lambda c: c.records_invalid,
    ),
    Series(
        Family(
            "census_sync_source_records_total",
            "counter",
            "Source records (source_record_count), summed over counted runs.",
        ),
        lambda c: c.source_records,
    ),
)
#: Per sync with ``--census.duration-histogram=sync``; per workspace (``census_workspace_...``) by default.
RUN_DURATIONS = Family(
    "census_sync_run_duration_seconds",
    "histogram",
    "Durations of runs counted since the exporter began counting.",
)

# ----------------------------------------------------------------------------- per workspace

_WORKSPACE_NOTE = " All of the workspace's syncs, including syncs that have left it."


def _per_workspace(family: Family) -> Family:
    """The per-workspace family summing a per-sync one."""
    name = family.name.replace("census_sync_", "census_workspace_", 1)
    return Family(name, family.type, family.help + _WORKSPACE_NOTE)


WORKSPACE_RECORD_COUNTERS: tuple[Series[RunCounters], ...] = tuple(
    Series(_per_workspace(series.family), series.read) for series in RECORD_COUNTERS
)
WORKSPACE_RUN_DURATIONS = _per_workspace(RUN_DURATIONS)

# ----------------------------------------------------------------------------- the request budget

BUDGET_RATE = Family(
    "census_api_budget_requests_per_second",
    "gauge",
    "The request budget: Census API requests per second the process may send (burst of one); 0: none.",
)
BUDGET_COUNTERS: tuple[Series[BudgetUse], ...] = (
    Series(
        Family(
            "census_api_budget_granted_total",
            "counter",
            "HTTP attempts to the Census API that got a token of the request budget (and were sent).",
        ),
        lambda use: use.granted,
    ),
    Series(
        Family(
            "census_api_budget_waited_total",
            "counter",
            "HTTP attempts that had to wait for their token of the request budget.",
        ),
        lambda use: use.waited,
    ),
    Series(
        Family(
            "census_api_budget_wait_seconds_total",
            "counter",
            "Total time HTTP attempts waited for their token of the request budget.",
        ),
        lambda use: use.wait_seconds,
    ),
    Series(
        Family(
            "census_api_budget_refused_total",
            "counter",
            "HTTP attempts not sent because no token of the request budget came before their deadline.",
        ),
        lambda use: use.refused,
    ),
)
