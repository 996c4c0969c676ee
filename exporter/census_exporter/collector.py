"""CensusCollector: renders a FleetView's Census families straight to bytes (see census_exporter.rendering).

Every ``census_`` metric except the two API self-metrics (see :mod:`census_exporter.instrumentation`) and
the request budget's (rendered fresh on each scrape, :func:`budget_families`) is rendered here, from the
view alone: no series can outlive the sync it describes. The one exception are the per-workspace run
totals, which also remember the counts of syncs that left (:mod:`census_exporter.totals`). Which optional
families exist is the :class:`~census_exporter.config.Exposition`'s choice.

Each sync's lines are written (every value converted, every label encoded) before any is kept, so a sync
holding a value that cannot be rendered loses its series for that view, is logged once, and every other
sync and family still renders.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from cachetools import LRUCache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from census_exporter import __version__
from census_exporter.census.budget import BudgetUse
from census_exporter.census.models import SyncRun, bounded_text, clean_text
from census_exporter.config import Exposition
from census_exporter.rendering import (
    Family,
    FamilyBlocks,
    MetricType,
    RenderedFamilies,
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
    """One per-sync series of one value: its metric name, HELP text, and how to read it from ``_Source``."""

    name: str
    help: str
    read: Callable[[_Source], float | int | bool | None]


def _flag_label(value: bool | None) -> str:
    """A run's yes/no field as a label value: ``true``, ``false``, or empty when Census sent null."""
    return "" if value is None else str(value).lower()


LAST_RUN_GAUGES: tuple[_Series[SyncRun], ...] = (
    _Series(
        "census_sync_last_run_created_timestamp_seconds",
        "Unix time at which the newest run was created (started or queued).",
        lambda r: r.created_at,
    ),
    _Series(
        "census_sync_last_run_duration_seconds",
        "Duration of the newest run if finished: completed_at (or updated_at) minus created_at.",
        lambda r: r.duration_seconds,
    ),
    _Series(
        "census_sync_last_run_source_records",
        "Records in the source for the newest run (source_record_count).",
        lambda r: r.source_record_count,
    ),
    _Series(
        "census_sync_last_run_records_processed",
        "Records the newest run processed (records_processed).",
        lambda r: r.records_processed,
    ),
    _Series(
        "census_sync_last_run_records_updated",
        "Records the destination accepted in the newest run (records_updated).",
        lambda r: r.records_updated,
    ),
    _Series(
        "census_sync_last_run_records_failed",
        "Records the destination rejected in the newest run (records_failed).",
        lambda r: r.records_failed,
    ),
    _Series(
        "census_sync_last_run_records_invalid",
        "Records Census skipped as invalid in the newest run (records_invalid).",
        lambda r: r.records_invalid,
    ),
)

#: Only with ``--census.run-details``: nothing in the alerts, rules or dashboard reads them.
LAST_RUN_DETAIL_GAUGES: tuple[_Series[SyncRun], ...] = (
    _Series("census_sync_last_run_id", "Id of the newest run of the sync.", lambda r: r.id),
    _Series(
        "census_sync_last_run_completed_timestamp_seconds",
        "Unix time at which the newest run completed (completed_at; absent when null).",
        lambda r: r.completed_at,
    ),
    _Series(
        "census_sync_last_run_scheduled_timestamp_seconds",
        "Unix time at which the newest run was scheduled to start (absent for unscheduled runs).",
        lambda r: r.scheduled_execution_time,
    ),
)

LAST_SUCCESS_GAUGE: _Series[SyncLedger] = _Series(
    "census_sync_last_success_timestamp_seconds",
    "Unix time at which the newest successful (completed) run finished.",
    lambda ledger: ledger.last_success_at,
)

#: Only with ``--census.run-details``.
LAST_FAILURE_GAUGE: _Series[SyncLedger] = _Series(
    "census_sync_last_failure_timestamp_seconds",
    "Unix time at which the newest failed run finished.",
    lambda ledger: ledger.last_failure_at,
)

OLDEST_UNFINISHED_GAUGE: _Series[SyncState] = _Series(
    "census_sync_oldest_unfinished_run_created_timestamp_seconds",
    "Unix time at which the oldest run still queued or working was created.",
    lambda state: state.oldest_unfinished_created_at,
)

RECORD_COUNTERS: tuple[_Series[RunCounters], ...] = (
    _Series(
        "census_sync_records_processed_total",
        "Records processed, summed over runs counted since the exporter started.",
        lambda c: c.records_processed,
    ),
    _Series(
        "census_sync_records_updated_total",
        "Records accepted by the destination, summed over counted runs.",
        lambda c: c.records_updated,
    ),
    _Series(
        "census_sync_records_failed_total",
        "Records rejected by the destination, summed over counted runs.",
        lambda c: c.records_failed,
    ),
    _Series(
        "census_sync_records_invalid_total",
        "Records skipped by Census as invalid, summed over counted runs.",
        lambda c: c.records_invalid,
    ),
    _Series(
        "census_sync_source_records_total",
        "Source records (source_record_count), summed over counted runs.",
        lambda c: c.source_records,
    ),
)

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


class _FamilyList:
    """Families in exposition order, each known by its index (under which FamilyBlocks files lines)."""

    def __init__(self, help_text: Callable[[str], str]) -> None:
        self.families: list[Family] = []
        self._help_text = help_text

    def add(self, name: str, kind: MetricType, help_text: str) -> int:
        """Append a family (its HELP gets the cache note) and return its index."""
        self.families.append(Family(name, kind, self._help_text(help_text)))
        return len(self.families) - 1

    def name(self, index: int) -> str:
        """The name of the family at ``index``."""
        return self.families[index].name


_Line = tuple[int, str]


class _PerSyncFamilies:
    """Every per-sync family ``exposition`` asks for, in exposition order; :meth:`lines` writes one sync's
    samples."""

    def __init__(self, help_text: Callable[[str], str], exposition: Exposition) -> None:
        families = _FamilyList(help_text)
        self.info = families.add(
            "census_sync_info", "gauge", "Descriptive attributes of a sync; always 1. Join on sync_id."
        )
        self.paused = families.add("census_sync_paused", "gauge", "1 if the sync is paused, else 0.")
        self.status = families.add(
            "census_sync_last_run_status",
            "gauge",
            "Status of the newest run: one series per sync, labelled with the status; always 1.",
        )
        self.run_info = families.add(
            "census_sync_last_run_info",
            "gauge",
            "Trigger (sync_trigger_reason.ui_tag), error code, full_sync and canceled of the newest run; "
            "always 1.",
        )
        last_run = LAST_RUN_GAUGES + (LAST_RUN_DETAIL_GAUGES if exposition.run_details else ())
        self.last_run = [(families.add(spec.name, "gauge", spec.help), spec) for spec in last_run]
        outcomes = (LAST_SUCCESS_GAUGE, *((LAST_FAILURE_GAUGE,) if exposition.run_details else ()))
        self.outcome_times = [(families.add(spec.name, "gauge", spec.help), spec) for spec in outcomes]
        self.oldest_unfinished = families.add(
            OLDEST_UNFINISHED_GAUGE.name, "gauge", OLDEST_UNFINISHED_GAUGE.help
        )
        self.runs = families.add(
            "census_sync_runs_total",
            "counter",
            "Runs that finished since the exporter started, by final status.",
        )
        records = RECORD_COUNTERS if exposition.record_totals == "sync" else ()
        self.records = [(families.add(spec.name, "counter", spec.help), spec) for spec in records]
        self.durations = (
            families.add(
                "census_sync_run_duration_seconds",
                "histogram",
                "Durations of runs counted since the exporter started.",
            )
            if exposition.duration_histogram == "sync"
            else None
        )
        self.families = families.families

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
        lines = [self._line(self.info, label_text(ids + info), 1)]
        if sync.paused is not None:
            lines.append(self._line(self.paused, id_labels, sync.paused))
        run = state.latest_run
        if run is not None:
            lines += self._last_run_lines(ids, id_labels, run)
        if state.ledger is not None:
            lines += self._ledger_lines(ids, id_labels, state.ledger, snapshot.duration_buckets)
        if state.oldest_unfinished_created_at is not None:
            lines.append(self._line(self.oldest_unfinished, id_labels, state.oldest_unfinished_created_at))
        return lines

    def _line(self, index: int, labels: str, value: float | int | bool, suffix: str = "") -> _Line:
        return index, sample(self.families[index].name + suffix, labels, value)

    def _last_run_lines(self, ids: list[tuple[str, str]], id_labels: str, run: SyncRun) -> list[_Line]:
        # One series per sync, not one per known status: an absent status series means "not this status".
        run_labels = [
            ("trigger", run.trigger or ""),
            ("error_code", run.error_code or ""),
            ("full_sync", _flag_label(run.full_sync)),
            ("canceled", _flag_label(run.canceled)),
        ]
        lines = [
            self._line(self.status, label_text([*ids, ("status", run.status)]), 1),
            self._line(self.run_info, label_text(ids + run_labels), 1),
        ]
        return lines + self._value_lines(id_labels, self.last_run, run)

    def _ledger_lines(
        self, ids: list[tuple[str, str]], id_labels: str, ledger: SyncLedger, bounds: Sequence[float]
    ) -> list[_Line]:
        lines = self._value_lines(id_labels, self.outcome_times, ledger)
        counters = ledger.counters
        for status, total in sorted(counters.runs_by_status.items()):
            lines.append(self._line(self.runs, label_text([*ids, ("status", status)]), total))
        lines += self._value_lines(id_labels, self.records, counters)
        if self.durations is not None:
            lines += self._histogram_lines(self.durations, ids, id_labels, counters, bounds)
        return lines

    def _value_lines(
        self, id_labels: str, series: Sequence[tuple[int, _Series[_Source]]], source: _Source
    ) -> list[_Line]:
        lines = []
        for index, spec in series:
            value = spec.read(source)
            if value is not None:
                lines.append(self._line(index, id_labels, value))
        return lines

    def _histogram_lines(
        self,
        index: int,
        ids: list[tuple[str, str]],
        id_labels: str,
        counters: RunCounters,
        bounds: Sequence[float],
    ) -> list[_Line]:
        lines = histogram_lines(self.families[index].name, ids, id_labels, counters, bounds)
        return [(index, line) for line in lines]


def histogram_lines(
    name: str, ids: list[tuple[str, str]], id_labels: str, counters: RunCounters, bounds: Sequence[float]
) -> list[str]:
    """``counters``' durations as histogram samples: cumulative buckets, then the count and the sum."""
    cumulative = counters.cumulative_duration_counts()
    lines = [
        sample(f"{name}_bucket", label_text([*ids, ("le", le)]), count)
        for le, count in zip(_bucket_names(bounds), cumulative, strict=True)
    ]
    lines.append(sample(f"{name}_count", id_labels, cumulative[-1]))
    lines.append(sample(f"{name}_sum", id_labels, counters.duration_sum_seconds))
    return lines


class _WorkspaceTotalFamilies:
    """Run totals summed per workspace (the default instead of per sync): one series set per workspace."""

    def __init__(self, help_text: Callable[[str], str], exposition: Exposition) -> None:
        note = " All of the workspace's syncs, including syncs that have left it."
        families = _FamilyList(help_text)
        records = RECORD_COUNTERS if exposition.record_totals == "workspace" else ()
        self.records = [
            (families.add(_workspace_name(spec.name), "counter", spec.help + note), spec) for spec in records
        ]
        self.durations = (
            families.add(
                "census_workspace_run_duration_seconds",
                "histogram",
                "Durations of runs counted since the exporter started." + note,
            )
            if exposition.duration_histogram == "workspace"
            else None
        )
        self.families = families.families

    @property
    def wanted(self) -> bool:
        """Whether any family is rendered at all."""
        return bool(self.families)

    def lines(self, snapshot: Snapshot, totals: RunCounters) -> list[_Line]:
        """One workspace's totals; raises if one cannot render."""
        ids = [("workspace", snapshot.workspace)]
        id_labels = label_text(ids)
        lines = [
            (index, sample(self.families[index].name, id_labels, spec.read(totals) or 0))
            for index, spec in self.records
        ]
        if self.durations is not None:
            name = self.families[self.durations].name
            histogram = histogram_lines(name, ids, id_labels, totals, snapshot.duration_buckets)
            lines += [(self.durations, line) for line in histogram]
        return lines


def _renders(snapshot: Snapshot, sync_id: int, counters: RunCounters) -> bool:
    """Whether a sync's counters can join its workspace's totals; logged once when they cannot."""
    try:
        for spec in RECORD_COUNTERS:
            number(spec.read(counters) or 0)
        number(counters.duration_sum_seconds)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(snapshot.workspace, sync_id, error)
        return False
    return True


def _workspace_name(sync_metric: str) -> str:
    return sync_metric.replace("census_sync_", "census_workspace_", 1)


def _bucket_names(bounds: Sequence[float]) -> list[str]:
    return [*(f"{bound:g}" for bound in bounds), "+Inf"]


class CensusCollector:
    """Renders a view's Census families; it never calls the API itself."""

    def __init__(self, cache_ttl_seconds: float, exposition: Exposition | None = None) -> None:
        self._cached_note = f" Cached: up to {cache_ttl_seconds:g}s old."
        self._exposition = exposition or Exposition()
        self._workspace_totals = WorkspaceTotals()

    def render(self, view: FleetView) -> RenderedFamilies:
        """Every Census family of ``view``: the same for the same view, so its rendering can be reused.

        Only the workspace totals remember earlier views, to keep counting the runs of syncs that left.
        """
        return self._health(view) + self._per_sync(view) + self._totals(view)

    def _help(self, text: str) -> str:
        return text + self._cached_note

    def _health(self, view: FleetView) -> RenderedFamilies:
        """Build info, each workspace's refresh health, discovery, and when each sync's runs were read."""
        families = _FamilyList(lambda text: text)
        build = families.add("census_exporter_build_info", "gauge", "Version of census-exporter; always 1.")
        up = families.add(
            "census_up",
            "gauge",
            "1 if the last refresh of Census API data finished without any error, else 0.",
        )
        last = families.add(
            "census_last_refresh_timestamp_seconds",
            "gauge",
            "Unix time at which the last error-free refresh finished.",
        )
        duration = families.add(
            "census_refresh_duration_seconds", "gauge", "How long the last refresh of Census API data took."
        )
        count = families.add(
            "census_syncs",
            "gauge",
            self._help("Number of syncs watched in the workspace (after its include/exclude filter)."),
        )
        discovery_up = discovered = -1
        if view.discoveries:
            discovery_up = families.add(
                "census_discovery_up",
                "gauge",
                "1 if the last listing of workspaces (or groups) by this discovery entry had no error, "
                "else 0.",
            )
            discovered = families.add(
                "census_discovery_workspaces",
                "gauge",
                "Workspaces (or groups) this discovery entry watches; absent until a listing succeeded.",
            )
        # A timestamp, not an age, so that it belongs to the view and its rendering is cached with the
        # rest; an age would have to be rendered anew on every scrape.
        read = families.add(
            "census_sync_data_timestamp_seconds",
            "gauge",
            "Unix time at which this sync's runs were last read successfully; absent before the first read. "
            "time() minus it is the age of the sync's data.",
        )
        blocks = FamilyBlocks(families.families)
        blocks.add([(build, sample("census_exporter_build_info", label_text([("version", __version__)]), 1))])
        for snapshot in view.snapshots:
            workspace = label_text([("workspace", snapshot.workspace)])
            lines = [(up, sample("census_up", workspace, snapshot.up))]
            if snapshot.last_success_timestamp is not None:
                lines.append((last, sample(families.name(last), workspace, snapshot.last_success_timestamp)))
            if snapshot.refresh_duration_seconds is not None:
                lines.append(
                    (duration, sample(families.name(duration), workspace, snapshot.refresh_duration_seconds))
                )
            if snapshot.listed:
                lines.append((count, sample("census_syncs", workspace, len(snapshot.syncs))))
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        for status in view.discoveries:
            name = label_text([("discovery", status.name)])
            lines = [(discovery_up, sample("census_discovery_up", name, status.up))]
            if status.workspaces is not None:
                lines.append((discovered, sample("census_discovery_workspaces", name, status.workspaces)))
            _add_or_log(blocks, lines, status.name, 0)
        for snapshot in view.snapshots:
            for sync_id, state in snapshot.syncs.items():
                if state.runs_read_timestamp is not None:
                    ids = label_text([("sync_id", str(sync_id)), ("workspace", snapshot.workspace)])
                    line = sample(families.name(read), ids, state.runs_read_timestamp)
                    _add_or_log(blocks, [(read, line)], snapshot.workspace, sync_id)
        return blocks.rendered()

    def _per_sync(self, view: FleetView) -> RenderedFamilies:
        """Every sync's series, family by family; a sync that cannot render is left out whole."""
        per_sync = _PerSyncFamilies(self._help, self._exposition)
        blocks = FamilyBlocks(per_sync.families)
        for snapshot in view.snapshots:
            for state in snapshot.syncs.values():
                try:
                    lines = per_sync.lines(snapshot, state)
                except RENDERING_ERRORS as error:
                    _log_unrenderable_once(snapshot.workspace, state.sync.id, error)
                    continue
                _add_or_log(blocks, lines, snapshot.workspace, state.sync.id)
        return blocks.rendered()

    def _totals(self, view: FleetView) -> RenderedFamilies:
        """The per-workspace run totals (the default; none when every total is per sync)."""
        totals = _WorkspaceTotalFamilies(self._help, self._exposition)
        if not totals.wanted:
            return RenderedFamilies()
        blocks = FamilyBlocks(totals.families)
        self._workspace_totals.forget_except(snapshot.workspace for snapshot in view.snapshots)
        for snapshot in view.snapshots:
            if not snapshot.listed:
                continue
            counters = self._workspace_totals.total(snapshot, partial(_renders, snapshot))
            try:
                lines = totals.lines(snapshot, counters)
            except RENDERING_ERRORS as error:  # only a sum of values each renderable on its own
                _log_unrenderable_once(snapshot.workspace, 0, error)
                continue
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        return blocks.rendered()


def _add_or_log(blocks: FamilyBlocks, lines: Sequence[_Line], workspace: str, sync_id: int) -> None:
    """Keep ``lines``, or none of them (logged once) when one cannot be encoded (a lone surrogate)."""
    try:
        blocks.add(lines)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(workspace, sync_id, error)


def budget_families(budget: BudgetUse | None) -> Iterator[Metric]:
    """How the request budget is spent, rendered fresh on every scrape; without a budget its rate reads 0
    and its counters stay 0."""
    budget = budget or BudgetUse(requests_per_second=0.0)
    yield GaugeMetricFamily(
        "census_api_budget_requests_per_second",
        "The request budget: Census API requests per second the process may send (burst of one); 0: none.",
        value=budget.requests_per_second,
    )
    yield CounterMetricFamily(
        "census_api_budget_granted",
        "HTTP attempts to the Census API that got a token of the request budget (and were sent).",
        value=budget.granted,
    )
    yield CounterMetricFamily(
        "census_api_budget_waited",
        "HTTP attempts that had to wait for their token of the request budget.",
        value=budget.waited,
    )
    yield CounterMetricFamily(
        "census_api_budget_wait_seconds",
        "Total time HTTP attempts waited for their token of the request budget.",
        value=budget.wait_seconds,
    )
    yield CounterMetricFamily(
        "census_api_budget_refused",
        "HTTP attempts not sent because no token of the request budget came before their deadline.",
        value=budget.refused,
    )
