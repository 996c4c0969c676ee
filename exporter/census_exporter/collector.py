"""CensusCollector: renders a FleetView's Census families straight to bytes (see census_exporter.rendering).

Every ``census_`` family is declared here as a :class:`~census_exporter.rendering.Family`, in exposition
order, except the exporter's own API request metrics (:mod:`census_exporter.instrumentation`). The Census
families are rendered from the view alone, so no series can outlive the sync it describes; the one
exception are the per-workspace run totals, which also remember the counts of syncs that left
(:mod:`census_exporter.totals`). Which optional families exist is the
:class:`~census_exporter.config.Exposition`'s choice.

Each sync's lines are written (every value converted, every label encoded) before any is kept, so a sync
holding a value that cannot be rendered loses its series for that view, is logged once, and every other
sync and family still renders.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from cachetools import LRUCache

from census_exporter.build import BUILD
from census_exporter.census.budget import BudgetUse
from census_exporter.census.models.fields import bounded_text, clean_text
from census_exporter.census.models.runs import SyncRun
from census_exporter.config import Exposition
from census_exporter.rendering import (
    Family,
    FamilyBlocks,
    RenderedFamilies,
    histogram,
    label_text,
    number,
    sample,
)
from census_exporter.snapshot import FleetView, Snapshot, SyncState
from census_exporter.state import RunCounters, SyncLedger
from census_exporter.totals import WorkspaceTotals

log = logging.getLogger(__name__)

_Source = TypeVar("_Source")


@dataclass(frozen=True, slots=True)
class _Series(Generic[_Source]):
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
LAST_RUN_GAUGES: tuple[_Series[SyncRun], ...] = (
    _Series(
        Family(
            "census_sync_last_run_created_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run was created (started or queued).",
        ),
        lambda r: r.created_at,
    ),
    _Series(
        Family(
            "census_sync_last_run_duration_seconds",
            "gauge",
            "Duration of the newest run if finished: completed_at (or updated_at) minus created_at.",
        ),
        lambda r: r.duration_seconds,
    ),
    _Series(
        Family(
            "census_sync_last_run_source_records",
            "gauge",
            "Records in the source for the newest run (source_record_count).",
        ),
        lambda r: r.source_record_count,
    ),
    _Series(
        Family(
            "census_sync_last_run_records_processed",
            "gauge",
            "Records the newest run processed (records_processed).",
        ),
        lambda r: r.records_processed,
    ),
    _Series(
        Family(
            "census_sync_last_run_records_updated",
            "gauge",
            "Records the destination accepted in the newest run (records_updated).",
        ),
        lambda r: r.records_updated,
    ),
    _Series(
        Family(
            "census_sync_last_run_records_failed",
            "gauge",
            "Records the destination rejected in the newest run (records_failed).",
        ),
        lambda r: r.records_failed,
    ),
    _Series(
        Family(
            "census_sync_last_run_records_invalid",
            "gauge",
            "Records Census skipped as invalid in the newest run (records_invalid).",
        ),
        lambda r: r.records_invalid,
    ),
)
#: Only with ``--census.run-details``: nothing in the alerts, rules or dashboard reads them.
LAST_RUN_DETAIL_GAUGES: tuple[_Series[SyncRun], ...] = (
    _Series(Family("census_sync_last_run_id", "gauge", "Id of the newest run of the sync."), lambda r: r.id),
    _Series(
        Family(
            "census_sync_last_run_completed_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run completed (completed_at; absent when null).",
        ),
        lambda r: r.completed_at,
    ),
    _Series(
        Family(
            "census_sync_last_run_scheduled_timestamp_seconds",
            "gauge",
            "Unix time at which the newest run was scheduled to start (absent for unscheduled runs).",
        ),
        lambda r: r.scheduled_execution_time,
    ),
)
LAST_SUCCESS_GAUGE: _Series[SyncLedger] = _Series(
    Family(
        "census_sync_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the newest successful (completed) run finished.",
    ),
    lambda ledger: ledger.last_success_at,
)
NO_SUCCESS_SINCE_GAUGE: _Series[SyncLedger] = _Series(
    Family(
        "census_sync_no_success_since_timestamp_seconds",
        "gauge",
        "While no successful run is known: Unix time of the oldest run seen, since which none succeeded.",
    ),
    lambda ledger: ledger.no_success_since,
)
#: Only with ``--census.run-details``.
LAST_FAILURE_GAUGE: _Series[SyncLedger] = _Series(
    Family(
        "census_sync_last_failure_timestamp_seconds",
        "gauge",
        "Unix time at which the newest failed run finished.",
    ),
    lambda ledger: ledger.last_failure_at,
)
OLDEST_UNFINISHED_GAUGE: _Series[SyncState] = _Series(
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
RECORD_COUNTERS: tuple[_Series[RunCounters], ...] = (
    _Series(
        Family(
            "census_sync_records_processed_total",
            "counter",
            "Records processed, summed over runs counted since the exporter began counting.",
        ),
        lambda c: c.records_processed,
    ),
    _Series(
        Family(
            "census_sync_records_updated_total",
            "counter",
            "Records accepted by the destination, summed over counted runs.",
        ),
        lambda c: c.records_updated,
    ),
    _Series(
        Family(
            "census_sync_records_failed_total",
            "counter",
            "Records rejected by the destination, summed over counted runs.",
        ),
        lambda c: c.records_failed,
    ),
    _Series(
        Family(
            "census_sync_records_invalid_total",
            "counter",
            "Records skipped by Census as invalid, summed over counted runs.",
        ),
        lambda c: c.records_invalid,
    ),
    _Series(
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


WORKSPACE_RECORD_COUNTERS: tuple[_Series[RunCounters], ...] = tuple(
    _Series(_per_workspace(series.family), series.read) for series in RECORD_COUNTERS
)
WORKSPACE_RUN_DURATIONS = _per_workspace(RUN_DURATIONS)

# ----------------------------------------------------------------------------- the request budget

BUDGET_RATE = Family(
    "census_api_budget_requests_per_second",
    "gauge",
    "The request budget: Census API requests per second the process may send (burst of one); 0: none.",
)
BUDGET_COUNTERS: tuple[_Series[BudgetUse], ...] = (
    _Series(
        Family(
            "census_api_budget_granted_total",
            "counter",
            "HTTP attempts to the Census API that got a token of the request budget (and were sent).",
        ),
        lambda use: use.granted,
    ),
    _Series(
        Family(
            "census_api_budget_waited_total",
            "counter",
            "HTTP attempts that had to wait for their token of the request budget.",
        ),
        lambda use: use.waited,
    ),
    _Series(
        Family(
            "census_api_budget_wait_seconds_total",
            "counter",
            "Total time HTTP attempts waited for their token of the request budget.",
        ),
        lambda use: use.wait_seconds,
    ),
    _Series(
        Family(
            "census_api_budget_refused_total",
            "counter",
            "HTTP attempts not sent because no token of the request budget came before their deadline.",
        ),
        lambda use: use.refused,
    ),
)


def render_budget(use: BudgetUse | None) -> RenderedFamilies:
    """How the request budget is spent, rendered fresh on every scrape; without a budget its rate reads 0
    and its counters stay 0."""
    use = use or BudgetUse(requests_per_second=0.0)
    blocks = FamilyBlocks([BUDGET_RATE, *(series.family for series in BUDGET_COUNTERS)])
    lines = [(0, sample(BUDGET_RATE.name, "", use.requests_per_second))]
    for index, series in enumerate(BUDGET_COUNTERS, start=1):
        lines.append((index, sample(series.family.name, "", series.read(use) or 0)))
    blocks.add(lines)
    return blocks.rendered()


# ----------------------------------------------------------------------------- rendering

#: Errors a value or label can raise while it is rendered (``float(10**400)``, a lone surrogate).
RENDERING_ERRORS = (ArithmeticError, ValueError, TypeError)

#: How many (sync, error type) pairs the log-once memory keeps; beyond it the oldest may be logged again.
_LOGGED_ONCE_LIMIT = 1024
_logged_unrenderable: LRUCache[tuple[str, int, str], bool] = LRUCache(maxsize=_LOGGED_ONCE_LIMIT)
_logged_unrenderable_lock = threading.Lock()


def _log_unrenderable_once(workspace: str, sync_id: int, error: Exception) -> None:
    """One line per (sync, error type), without traceback: the same bad value recurs on every scrape."""
    key = (workspace, sync_id, type(error).__name__)
    with _logged_unrenderable_lock:
        if key in _logged_unrenderable:
            return
        _logged_unrenderable[key] = True
    log.warning(
        "sync %s of workspace %s left out of the scrape: a value cannot be rendered (%s: %s)",
        sync_id,
        workspace,
        type(error).__name__,
        bounded_text(clean_text(str(error)), 200),
    )


_Line = tuple[int, str]
_Labels = list[tuple[str, str]]


class _Families:
    """The families of one rendering in exposition order, each known by its index (under which
    :class:`FamilyBlocks` files lines), with the note on cached data added to HELP where it belongs."""

    def __init__(self, cached_note: str = "") -> None:
        self.families: list[Family] = []
        self._cached_note = cached_note

    def add(self, family: Family) -> int:
        """Append ``family`` and return its index."""
        if self._cached_note:
            family = dataclasses.replace(family, help=family.help + self._cached_note)
        self.families.append(family)
        return len(self.families) - 1

    def line(self, index: int, labels: str, value: float | int | bool, suffix: str = "") -> _Line:
        """One sample of the family at ``index``; raises if ``value`` cannot render."""
        return index, sample(self.families[index].name + suffix, labels, value)

    def values(
        self, labels: str, series: Sequence[tuple[int, _Series[_Source]]], source: _Source
    ) -> list[_Line]:
        """One sample per series whose value ``source`` has (absent ones are left out, never zero)."""
        lines = []
        for index, each in series:
            value = each.read(source)
            if value is not None:
                lines.append(self.line(index, labels, value))
        return lines

    def histogram(
        self, index: int, ids: _Labels, counters: RunCounters, bounds: Sequence[float]
    ) -> list[_Line]:
        """``counters``' durations as histogram samples: cumulative buckets, then the count and the sum."""
        buckets = list(zip(_bucket_names(bounds), counters.cumulative_duration_counts(), strict=True))
        lines = histogram(self.families[index].name, ids, buckets, counters.duration_sum_seconds)
        return [(index, line) for line in lines]


def _bucket_names(bounds: Sequence[float]) -> list[str]:
    """The ``le`` label of each bucket: the bound's shortest exact form (``60``, ``59.9999999``, ``0.5``);
    a rounded one (``:g``) could give two buckets one series identity."""
    return [*(_bound_text(bound) for bound in bounds), "+Inf"]


def _bound_text(bound: float) -> str:
    text = repr(float(bound))
    return text.removesuffix(".0")


def _flag_label(value: bool | None) -> str:
    """A run's yes/no field as a label value: ``true``, ``false``, or empty when Census sent null."""
    return "" if value is None else str(value).lower()


class _PerSyncFamilies(_Families):
    """Every per-sync family ``exposition`` asks for; :meth:`lines` writes one sync's samples."""

    def __init__(self, cached_note: str, exposition: Exposition) -> None:
        super().__init__(cached_note)
        self.info = self.add(SYNC_INFO)
        self.paused = self.add(PAUSED)
        self.health = self.add(HEALTH)
        self.status = self.add(LAST_RUN_STATUS)
        self.run_info = self.add(LAST_RUN_INFO)
        self.finished_failed = self.add(LAST_FINISHED_RUN_FAILED)
        last_run = LAST_RUN_GAUGES + (LAST_RUN_DETAIL_GAUGES if exposition.run_details else ())
        self.last_run = [(self.add(series.family), series) for series in last_run]
        outcomes = (
            LAST_SUCCESS_GAUGE,
            NO_SUCCESS_SINCE_GAUGE,
            *((LAST_FAILURE_GAUGE,) if exposition.run_details else ()),
        )
        self.outcome_times = [(self.add(series.family), series) for series in outcomes]
        self.oldest_unfinished = [(self.add(OLDEST_UNFINISHED_GAUGE.family), OLDEST_UNFINISHED_GAUGE)]
        self.runs = self.add(RUNS)
        self.superseded = self.add(SUPERSEDED_FAILURES)
        records = RECORD_COUNTERS if exposition.record_totals == "sync" else ()
        self.records = [(self.add(series.family), series) for series in records]
        self.durations = self.add(RUN_DURATIONS) if exposition.duration_histogram == "sync" else None

    def lines(self, snapshot: Snapshot, state: SyncState) -> list[_Line]:
        """One sync's sample lines, each with its family's index; raises if a value cannot render."""
        sync = state.sync
        ids = [("sync_id", str(sync.id)), ("workspace", snapshot.workspace)]
        id_labels = label_text(ids)
        info = [
            ("label", sync.label),
            ("operation", sync.operation),
            ("source", snapshot.source_name(sync)),
            ("destination", snapshot.destination_name(sync)),
            ("destination_object", sync.destination_object),
            ("schedule", sync.schedule),
        ]
        lines = [self.line(self.info, label_text(ids + info), 1)]
        if sync.paused is not None:
            lines.append(self.line(self.paused, id_labels, sync.paused))
        if sync.health is not None:
            lines.append(self.line(self.health, label_text([*ids, ("health", sync.health)]), 1))
        if state.latest_run is not None:
            lines += self._last_run(ids, id_labels, state.latest_run, state)
        if state.ledger is not None:
            lines += self._ledger(ids, id_labels, state.ledger, snapshot.duration_buckets, state)
        lines += self.values(id_labels, self.oldest_unfinished, state)
        return lines

    def _last_run(self, ids: _Labels, id_labels: str, run: SyncRun, state: SyncState) -> list[_Line]:
        # One series per sync, not one per known status: an absent status series means "not this status".
        run_labels = [
            ("trigger", run.trigger or ""),
            ("error_code", state.error_code_label(run.error_code)),
            ("full_sync", _flag_label(run.full_sync)),
            ("canceled", _flag_label(run.canceled)),
        ]
        lines = [
            self.line(self.status, label_text([*ids, ("status", run.status)]), 1),
            self.line(self.run_info, label_text(ids + run_labels), 1),
        ]
        return lines + self.values(id_labels, self.last_run, run)

    def _ledger(
        self, ids: _Labels, id_labels: str, ledger: SyncLedger, bounds: Sequence[float], state: SyncState
    ) -> list[_Line]:
        lines = []
        if ledger.failing is not None:
            code = state.error_code_label(ledger.failing_error_code) if ledger.failing else ""
            labels = label_text([*ids, ("error_code", code)])
            lines.append(self.line(self.finished_failed, labels, ledger.failing))
        lines += self.values(id_labels, self.outcome_times, ledger)
        counters = ledger.counters
        for status, total in sorted(counters.runs_by_status.items()):
            lines.append(self.line(self.runs, label_text([*ids, ("status", status)]), total))
        lines.append(self.line(self.superseded, id_labels, counters.superseded_failures))
        lines += self.values(id_labels, self.records, counters)
        if self.durations is not None:
            lines += self.histogram(self.durations, ids, counters, bounds)
        return lines


class _WorkspaceTotalFamilies(_Families):
    """Run totals summed per workspace (the default instead of per sync): one series set per workspace."""

    def __init__(self, cached_note: str, exposition: Exposition) -> None:
        super().__init__(cached_note)
        records = WORKSPACE_RECORD_COUNTERS if exposition.record_totals == "workspace" else ()
        self.records = [(self.add(series.family), series) for series in records]
        wanted = exposition.duration_histogram == "workspace"
        self.durations = self.add(WORKSPACE_RUN_DURATIONS) if wanted else None

    def lines(self, snapshot: Snapshot, totals: RunCounters) -> list[_Line]:
        """One workspace's totals; raises if one cannot render."""
        ids = [("workspace", snapshot.workspace)]
        lines = [
            self.line(index, label_text(ids), series.read(totals) or 0) for index, series in self.records
        ]
        if self.durations is not None:
            lines += self.histogram(self.durations, ids, totals, snapshot.duration_buckets)
        return lines


def _renders(snapshot: Snapshot, sync_id: int, counters: RunCounters) -> bool:
    """Whether a sync's counters can join its workspace's totals; logged once when they cannot."""
    try:
        for series in RECORD_COUNTERS:
            number(series.read(counters) or 0)
        number(counters.duration_sum_seconds)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(snapshot.workspace, sync_id, error)
        return False
    return True


def _add_or_log(blocks: FamilyBlocks, lines: Sequence[_Line], workspace: str, sync_id: int) -> None:
    """Keep ``lines``, or none of them (logged once) when one cannot be encoded (a lone surrogate)."""
    try:
        blocks.add(lines)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(workspace, sync_id, error)


class CensusCollector:
    """Renders a view's Census families; it never calls the API itself."""

    def __init__(self, cache_ttl_seconds: float, exposition: Exposition | None = None) -> None:
        self._cached_note = f" Cached: up to {cache_ttl_seconds:g}s old."
        self._exposition = exposition or Exposition()
        self._workspace_totals = WorkspaceTotals()

    def seed_totals(self, workspace: str, departed: RunCounters, restored: Mapping[int, RunCounters]) -> None:
        """Start ``workspace``'s run totals after a restart: the counts of syncs that had left, and the
        counters of the restored syncs."""
        self._workspace_totals.seed(workspace, departed, restored)

    def render(self, view: FleetView) -> RenderedFamilies:
        """Every Census family of ``view``: the same for the same view, so its rendering can be reused.

        Only the workspace totals remember earlier views, to keep counting the runs of syncs that left.
        """
        return self._health(view) + self._per_sync(view) + self._totals(view)

    def _health(self, view: FleetView) -> RenderedFamilies:
        """Build info, each workspace's refresh health, discovery, and when each sync's runs were read."""
        families = _Families()
        build, up, last, duration = (
            families.add(f) for f in (BUILD_INFO, UP, LAST_REFRESH, REFRESH_DURATION)
        )
        count = families.add(dataclasses.replace(SYNCS, help=SYNCS.help + self._cached_note))
        discovery_up = discovered = -1
        if view.discoveries:
            discovery_up, discovered = families.add(DISCOVERY_UP), families.add(DISCOVERY_WORKSPACES)
        read = families.add(DATA_TIMESTAMP)
        blocks = FamilyBlocks(families.families)
        blocks.add([families.line(build, label_text(BUILD.labels()), 1)])
        for snapshot in view.snapshots:
            workspace = label_text([("workspace", snapshot.workspace)])
            lines = [families.line(up, workspace, snapshot.up)]
            if snapshot.last_success_timestamp is not None:
                lines.append(families.line(last, workspace, snapshot.last_success_timestamp))
            if snapshot.refresh_duration_seconds is not None:
                lines.append(families.line(duration, workspace, snapshot.refresh_duration_seconds))
            if snapshot.listed:
                lines.append(families.line(count, workspace, len(snapshot.syncs)))
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        for status in view.discoveries:
            name = label_text([("discovery", status.name)])
            lines = [families.line(discovery_up, name, status.up)]
            if status.workspaces is not None:
                lines.append(families.line(discovered, name, status.workspaces))
            _add_or_log(blocks, lines, status.name, 0)
        for snapshot in view.snapshots:
            for sync_id, state in snapshot.syncs.items():
                if state.runs_read_timestamp is not None:
                    ids = label_text([("sync_id", str(sync_id)), ("workspace", snapshot.workspace)])
                    line = families.line(read, ids, state.runs_read_timestamp)
                    _add_or_log(blocks, [line], snapshot.workspace, sync_id)
        return blocks.rendered()

    def _per_sync(self, view: FleetView) -> RenderedFamilies:
        """Every sync's series, family by family; a sync that cannot render is left out whole."""
        families = _PerSyncFamilies(self._cached_note, self._exposition)
        blocks = FamilyBlocks(families.families)
        for snapshot in view.snapshots:
            for state in snapshot.syncs.values():
                try:
                    lines = families.lines(snapshot, state)
                except RENDERING_ERRORS as error:
                    _log_unrenderable_once(snapshot.workspace, state.sync.id, error)
                    continue
                _add_or_log(blocks, lines, snapshot.workspace, state.sync.id)
        return blocks.rendered()

    def _totals(self, view: FleetView) -> RenderedFamilies:
        """The per-workspace run totals (the default; none when every total is per sync)."""
        families = _WorkspaceTotalFamilies(self._cached_note, self._exposition)
        if not families.families:
            return RenderedFamilies()
        blocks = FamilyBlocks(families.families)
        self._workspace_totals.forget_except(snapshot.workspace for snapshot in view.snapshots)
        for snapshot in view.snapshots:
            if not snapshot.listed:
                continue
            counters = self._workspace_totals.total(snapshot, partial(_renders, snapshot))
            try:
                lines = families.lines(snapshot, counters)
            except RENDERING_ERRORS as error:  # only a sum of values each renderable on its own
                _log_unrenderable_once(snapshot.workspace, 0, error)
                continue
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        return blocks.rendered()
