"""CensusCollector: renders the current Snapshot as Prometheus metric families.

Every ``census_`` metric except the two API self-metrics (see :mod:`census_exporter.instrumentation`) is
built here, from the snapshot alone, fresh on every scrape: no series can outlive the sync it describes.
The one exception are the per-workspace run totals, which also remember the counts of syncs that left
(:mod:`census_exporter.totals`). ``describe()`` returns nothing, so registering the collector makes no API
call. Which optional families exist is the :class:`~census_exporter.config.Exposition`'s choice.

Each sync's samples are built (every value converted to float, every label checked) before any is added,
so a sync holding a value that cannot be rendered loses its series for that scrape, is logged once, and
every other sync and family still renders.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from cachetools import LRUCache
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from census_exporter import __version__
from census_exporter.census.budget import BudgetUse
from census_exporter.census.models import SyncRun, bounded_text, clean_text
from census_exporter.config import Exposition
from census_exporter.snapshot import FleetView, Snapshot, SyncState
from census_exporter.state import RunCounters, SyncLedger
from census_exporter.totals import WorkspaceTotals

log = logging.getLogger(__name__)

SYNC_LABELS = ["workspace", "sync_id"]

_Source = TypeVar("_Source")


@dataclass(frozen=True, slots=True)
class _Series(Generic[_Source]):
    """One per-sync series: its metric name, HELP text, and how to read its value from ``_Source``."""

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


def _number(value: float | int | bool) -> float:
    """``value`` as the float the exposition will carry; raises when it has none (``10**400``)."""
    number = float(value)
    if not math.isfinite(number):
        raise OverflowError("not a finite number")
    return number


def _label_values(values: Sequence[str]) -> list[str]:
    """``values`` unchanged; raises when one cannot be encoded as UTF-8 (a lone surrogate)."""
    for value in values:
        value.encode("utf-8")
    return list(values)


_Add = Callable[[], None]


class _PerSyncFamilies:
    """Every per-sync family ``exposition`` asks for, empty, in exposition order; :meth:`stage` prepares
    one sync's samples."""

    def __init__(self, help_text: Callable[[str], str], exposition: Exposition) -> None:
        self.exposition = exposition
        self.info = GaugeMetricFamily(
            "census_sync_info",
            help_text("Descriptive attributes of a sync; always 1. Join on sync_id."),
            labels=[
                *SYNC_LABELS,
                "label",
                "operation",
                "source",
                "destination",
                "destination_object",
                "schedule",
            ],
        )
        self.paused = GaugeMetricFamily(
            "census_sync_paused", help_text("1 if the sync is paused, else 0."), labels=SYNC_LABELS
        )
        self.status = GaugeMetricFamily(
            "census_sync_last_run_status",
            help_text("Status of the newest run: one series per sync, labelled with the status; always 1."),
            labels=[*SYNC_LABELS, "status"],
        )
        self.run_info = GaugeMetricFamily(
            "census_sync_last_run_info",
            help_text(
                "Trigger (sync_trigger_reason.ui_tag), error code, full_sync and canceled of the newest "
                "run; always 1."
            ),
            labels=[*SYNC_LABELS, "trigger", "error_code", "full_sync", "canceled"],
        )
        self.last_run_specs = LAST_RUN_GAUGES + (LAST_RUN_DETAIL_GAUGES if exposition.run_details else ())
        self.last_run = [self._gauge(spec, help_text) for spec in self.last_run_specs]
        self.outcome_specs = (LAST_SUCCESS_GAUGE, *((LAST_FAILURE_GAUGE,) if exposition.run_details else ()))
        self.outcome_times = [self._gauge(spec, help_text) for spec in self.outcome_specs]
        self.oldest_unfinished = self._gauge(OLDEST_UNFINISHED_GAUGE, help_text)
        self.runs = CounterMetricFamily(
            "census_sync_runs_total",
            help_text("Runs that finished since the exporter started, by final status."),
            labels=[*SYNC_LABELS, "status"],
        )
        self.record_specs = RECORD_COUNTERS if exposition.record_totals == "sync" else ()
        self.records = [
            CounterMetricFamily(spec.name, help_text(spec.help), labels=SYNC_LABELS)
            for spec in self.record_specs
        ]
        self.durations = (
            HistogramMetricFamily(
                "census_sync_run_duration_seconds",
                help_text("Durations of runs counted since the exporter started."),
                labels=SYNC_LABELS,
            )
            if exposition.duration_histogram == "sync"
            else None
        )

    @staticmethod
    def _gauge(spec: _Series[_Source], help_text: Callable[[str], str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(spec.name, help_text(spec.help), labels=SYNC_LABELS)

    def families(self) -> Iterator[Metric]:
        """The families, in the order the exposition has always had."""
        yield self.info
        yield self.paused
        yield self.status
        yield self.run_info
        yield from self.last_run
        yield from self.outcome_times
        yield self.oldest_unfinished
        yield self.runs
        yield from self.records
        if self.durations is not None:
            yield self.durations

    def stage(self, snapshot: Snapshot, state: SyncState) -> list[_Add]:
        """One sync's samples, every value and label already checked; raises if one cannot render."""
        sync = state.sync
        ids = _label_values([snapshot.workspace, str(sync.id)])
        adds: list[_Add] = []
        info_labels = _label_values(
            [
                sync.label,
                sync.operation,
                snapshot.source_name(sync),
                snapshot.destination_name(sync),
                sync.destination_object,
                sync.schedule,
            ]
        )
        adds.append(partial(self.info.add_metric, [*ids, *info_labels], 1.0))
        if sync.paused is not None:
            adds.append(partial(self.paused.add_metric, ids, _number(sync.paused)))
        if state.latest_run is not None:
            adds += self._stage_last_run(ids, state.latest_run)
        if state.ledger is not None:
            adds += self._stage_ledger(ids, state.ledger, snapshot.duration_buckets)
        adds += self._stage_series(ids, [(OLDEST_UNFINISHED_GAUGE, self.oldest_unfinished)], state)
        return adds

    def _stage_last_run(self, ids: list[str], run: SyncRun) -> list[_Add]:
        # One series per sync, not one per known status: an absent status series means "not this status".
        status = _label_values([run.status])
        adds: list[_Add] = [partial(self.status.add_metric, [*ids, *status], 1.0)]
        run_labels = _label_values(
            [run.trigger or "", run.error_code or "", _flag_label(run.full_sync), _flag_label(run.canceled)]
        )
        adds.append(partial(self.run_info.add_metric, [*ids, *run_labels], 1.0))
        adds += self._stage_series(ids, zip(self.last_run_specs, self.last_run, strict=True), run)
        return adds

    def _stage_ledger(self, ids: list[str], ledger: SyncLedger, bounds: Sequence[float]) -> list[_Add]:
        adds = self._stage_series(ids, zip(self.outcome_specs, self.outcome_times, strict=True), ledger)
        counters = ledger.counters
        for status, total in sorted(counters.runs_by_status.items()):
            status_label = _label_values([status])
            adds.append(partial(self.runs.add_metric, [*ids, *status_label], _number(total)))
        adds += self._stage_series(ids, zip(self.record_specs, self.records, strict=True), counters)
        if self.durations is not None:
            buckets, total_seconds = _histogram(counters, bounds)
            adds.append(partial(self.durations.add_metric, ids, buckets, total_seconds))
        return adds

    @staticmethod
    def _stage_series(
        ids: list[str],
        series: Iterable[tuple[_Series[_Source], GaugeMetricFamily | CounterMetricFamily]],
        source: _Source,
    ) -> list[_Add]:
        adds: list[_Add] = []
        for spec, family in series:
            value = spec.read(source)
            if value is not None:
                adds.append(partial(family.add_metric, ids, _number(value)))
        return adds


def _histogram(counters: RunCounters, bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    """``counters``' durations as HistogramMetricFamily takes them: cumulative buckets, then the sum."""
    buckets = [
        (name, _number(count))
        for name, count in zip(_bucket_names(bounds), counters.cumulative_duration_counts(), strict=True)
    ]
    return buckets, _number(counters.duration_sum_seconds)


class _WorkspaceTotalFamilies:
    """Run totals summed per workspace (the default instead of per sync): one series set per workspace."""

    def __init__(self, help_text: Callable[[str], str], exposition: Exposition) -> None:
        note = " All of the workspace's syncs, including syncs that have left it."
        self.record_specs = RECORD_COUNTERS if exposition.record_totals == "workspace" else ()
        self.records = [
            CounterMetricFamily(_workspace_name(spec.name), help_text(spec.help + note), labels=["workspace"])
            for spec in self.record_specs
        ]
        self.durations = (
            HistogramMetricFamily(
                "census_workspace_run_duration_seconds",
                help_text("Durations of runs counted since the exporter started." + note),
                labels=["workspace"],
            )
            if exposition.duration_histogram == "workspace"
            else None
        )

    @property
    def wanted(self) -> bool:
        """Whether any family is rendered at all."""
        return bool(self.records) or self.durations is not None

    def add(self, snapshot: Snapshot, totals: RunCounters) -> None:
        """One workspace's totals, all or none; raises if one cannot render."""
        workspace = _label_values([snapshot.workspace])
        records = [_number(spec.read(totals) or 0) for spec in self.record_specs]
        histogram = _histogram(totals, snapshot.duration_buckets) if self.durations is not None else None
        for family, value in zip(self.records, records, strict=True):
            family.add_metric(workspace, value)
        if self.durations is not None and histogram is not None:
            self.durations.add_metric(workspace, *histogram)

    def families(self) -> Iterator[Metric]:
        """The families, records first."""
        yield from self.records
        if self.durations is not None:
            yield self.durations


def _renders(snapshot: Snapshot, sync_id: int, counters: RunCounters) -> bool:
    """Whether a sync's counters can join its workspace's totals; logged once when they cannot."""
    try:
        for spec in RECORD_COUNTERS:
            _number(spec.read(counters) or 0)
        _number(counters.duration_sum_seconds)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(snapshot.workspace, sync_id, error)
        return False
    return True


def _workspace_name(sync_metric: str) -> str:
    return sync_metric.replace("census_sync_", "census_workspace_", 1)


def _bucket_names(bounds: Sequence[float]) -> list[str]:
    return [*(f"{bound:g}" for bound in bounds), "+Inf"]


class CensusCollector(Collector):
    """Renders whatever view ``current`` returns; it never calls the API itself."""

    def __init__(
        self,
        current: Callable[[], FleetView],
        cache_ttl_seconds: float,
        exposition: Exposition | None = None,
    ) -> None:
        self._current = current
        self._cached_note = f" Cached: up to {cache_ttl_seconds:g}s old."
        self._exposition = exposition or Exposition()
        self._workspace_totals = WorkspaceTotals()

    def describe(self) -> Iterable[Metric]:
        """Nothing: the families depend on the API, which must not be called at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family for the current view."""
        return self.families(self._current())

    def families(self, view: FleetView) -> Iterator[Metric]:
        """Every family for ``view``: the same for the same view, so its rendering can be reused.

        Only the workspace totals remember earlier views, to keep counting the runs of syncs that left.
        """
        yield _build_info()
        yield from self._workspace_families(view.snapshots)
        if view.discoveries:
            yield from _discovery_families(view)
        yield from data_freshness_families(view)
        per_sync = _PerSyncFamilies(self._help, self._exposition)
        for snapshot in view.snapshots:
            for state in snapshot.syncs.values():
                try:
                    adds = per_sync.stage(snapshot, state)
                except RENDERING_ERRORS as error:
                    _log_unrenderable_once(snapshot.workspace, state.sync.id, error)
                    continue
                for add in adds:
                    add()
        yield from per_sync.families()
        totals = _WorkspaceTotalFamilies(self._help, self._exposition)
        if totals.wanted:
            self._workspace_totals.forget_except(snapshot.workspace for snapshot in view.snapshots)
            for snapshot in view.snapshots:
                if not snapshot.listed:
                    continue
                try:
                    totals.add(snapshot, self._workspace_totals.total(snapshot, partial(_renders, snapshot)))
                except RENDERING_ERRORS as error:  # only a sum of values each renderable on its own
                    _log_unrenderable_once(snapshot.workspace, 0, error)
            yield from totals.families()

    def _help(self, text: str) -> str:
        return text + self._cached_note

    def _workspace_families(self, snapshots: Sequence[Snapshot]) -> Iterator[Metric]:
        """Health of each workspace's refresh: one series per workspace in each family."""
        up = GaugeMetricFamily(
            "census_up",
            "1 if the last refresh of Census API data finished without any error, else 0.",
            labels=["workspace"],
        )
        last = GaugeMetricFamily(
            "census_last_refresh_timestamp_seconds",
            "Unix time at which the last error-free refresh finished.",
            labels=["workspace"],
        )
        duration = GaugeMetricFamily(
            "census_refresh_duration_seconds",
            "How long the last refresh of Census API data took.",
            labels=["workspace"],
        )
        count = GaugeMetricFamily(
            "census_syncs",
            self._help("Number of syncs watched in the workspace (after its include/exclude filter)."),
            labels=["workspace"],
        )
        for snapshot in snapshots:
            workspace = [snapshot.workspace]
            up.add_metric(workspace, int(snapshot.up))
            if snapshot.last_success_timestamp is not None:
                last.add_metric(workspace, snapshot.last_success_timestamp)
            if snapshot.refresh_duration_seconds is not None:
                duration.add_metric(workspace, snapshot.refresh_duration_seconds)
            if snapshot.listed:
                count.add_metric(workspace, len(snapshot.syncs))
        yield from (up, last, duration, count)


def _build_info() -> Metric:
    build = GaugeMetricFamily(
        "census_exporter_build_info",
        "Version of census-exporter; always 1.",
        labels=["version"],
    )
    build.add_metric([__version__], 1)
    return build


def _discovery_families(view: FleetView) -> Iterator[Metric]:
    """Health of each discovery entry (only when the workspaces file has ``auto: true`` entries)."""
    up = GaugeMetricFamily(
        "census_discovery_up",
        "1 if the last listing of workspaces (or groups) by this discovery entry had no error, else 0.",
        labels=["discovery"],
    )
    found = GaugeMetricFamily(
        "census_discovery_workspaces",
        "Workspaces (or groups) this discovery entry watches; absent until a listing succeeded.",
        labels=["discovery"],
    )
    for status in view.discoveries:
        up.add_metric([status.name], int(status.up))
        if status.workspaces is not None:
            found.add_metric([status.name], status.workspaces)
    yield from (up, found)


def data_freshness_families(view: FleetView) -> Iterator[Metric]:
    """When each sync's runs were last read: the request budget may leave a sync unread for a while.

    A timestamp, not an age, so that it belongs to the view and its rendering is cached with the rest; an
    age would have to be rendered anew on every scrape (about 30 ms and 400 KB at 5,000 syncs).
    """
    read = GaugeMetricFamily(
        "census_sync_data_timestamp_seconds",
        "Unix time at which this sync's runs were last read successfully; absent before the first read. "
        "time() minus it is the age of the sync's data.",
        labels=SYNC_LABELS,
    )
    for snapshot in view.snapshots:
        for sync_id, state in snapshot.syncs.items():
            if state.runs_read_timestamp is not None:
                read.add_metric([snapshot.workspace, str(sync_id)], state.runs_read_timestamp)
    yield read


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
