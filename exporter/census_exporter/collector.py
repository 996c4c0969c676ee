"""CensusCollector: renders the current Snapshot as Prometheus metric families.

Every ``census_`` metric except the two API self-metrics (see :mod:`census_exporter.instrumentation`) is
built here, from the snapshot alone, fresh on every scrape: no series can outlive the sync it describes.
``describe()`` returns nothing, so registering the collector makes no API call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from census_exporter import __version__
from census_exporter.census.models import KNOWN_RUN_STATUSES, SyncRun
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.state import RunCounters

SYNC_LABELS = ["workspace", "sync_id"]


@dataclass(frozen=True, slots=True)
class _RunGauge:
    name: str
    help: str
    value: Callable[[SyncRun], float | int | bool | None]


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


LAST_RUN_GAUGES = (
    _RunGauge("census_sync_last_run_id", "Id of the newest run of the sync.", lambda r: r.id),
    _RunGauge(
        "census_sync_last_run_created_timestamp_seconds",
        "Unix time at which the newest run was created (started or queued).",
        lambda r: r.created_at,
    ),
    _RunGauge(
        "census_sync_last_run_completed_timestamp_seconds",
        "Unix time at which the newest run completed (completed_at; absent when null).",
        lambda r: r.completed_at,
    ),
    _RunGauge(
        "census_sync_last_run_scheduled_timestamp_seconds",
        "Unix time at which the newest run was scheduled to start (absent for unscheduled runs).",
        lambda r: r.scheduled_execution_time,
    ),
    _RunGauge(
        "census_sync_last_run_duration_seconds",
        "Duration of the newest run if finished: completed_at (or updated_at) minus created_at.",
        lambda r: r.duration_seconds,
    ),
    _RunGauge(
        "census_sync_last_run_source_records",
        "Records in the source for the newest run (source_record_count).",
        lambda r: r.source_record_count,
    ),
    _RunGauge(
        "census_sync_last_run_records_processed",
        "Records the newest run processed (records_processed).",
        lambda r: r.records_processed,
    ),
    _RunGauge(
        "census_sync_last_run_records_updated",
        "Records the destination accepted in the newest run (records_updated).",
        lambda r: r.records_updated,
    ),
    _RunGauge(
        "census_sync_last_run_records_failed",
        "Records the destination rejected in the newest run (records_failed).",
        lambda r: r.records_failed,
    ),
    _RunGauge(
        "census_sync_last_run_records_invalid",
        "Records Census skipped as invalid in the newest run (records_invalid).",
        lambda r: r.records_invalid,
    ),
    _RunGauge(
        "census_sync_last_run_full_sync",
        "1 if the newest run was a full sync, 0 if incremental.",
        lambda r: _flag(r.full_sync),
    ),
    _RunGauge(
        "census_sync_last_run_canceled",
        "1 if the newest run was canceled.",
        lambda r: _flag(r.canceled),
    ),
)

RECORD_COUNTERS: tuple[tuple[str, str, Callable[[RunCounters], int]], ...] = (
    (
        "census_sync_records_processed_total",
        "Records processed, summed over runs counted since the exporter started.",
        lambda c: c.records_processed,
    ),
    (
        "census_sync_records_updated_total",
        "Records accepted by the destination, summed over counted runs.",
        lambda c: c.records_updated,
    ),
    (
        "census_sync_records_failed_total",
        "Records rejected by the destination, summed over counted runs.",
        lambda c: c.records_failed,
    ),
    (
        "census_sync_records_invalid_total",
        "Records skipped by Census as invalid, summed over counted runs.",
        lambda c: c.records_invalid,
    ),
    (
        "census_sync_source_records_total",
        "Source records (source_record_count), summed over counted runs.",
        lambda c: c.source_records,
    ),
)


class CensusCollector(Collector):
    """Renders whatever snapshot ``current`` returns; it never calls the API itself."""

    def __init__(self, current: Callable[[], Snapshot], cache_ttl_seconds: float) -> None:
        self._current = current
        self._cached_note = f" Cached: up to {cache_ttl_seconds:g}s old."

    def describe(self) -> Iterable[Metric]:
        """Nothing: the families depend on the API, which must not be called at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family for the current snapshot."""
        return self.families(self._current())

    def families(self, snapshot: Snapshot) -> Iterator[Metric]:
        """Every family for ``snapshot``: a pure function of it, so its rendering can be reused."""
        yield from self._exporter_families(snapshot)
        states = list(snapshot.syncs.values())
        yield from self._sync_families(snapshot, states)
        yield from self._last_run_families(snapshot.workspace, states)
        yield from self._counter_families(snapshot, states)

    def _help(self, text: str) -> str:
        return text + self._cached_note

    def _exporter_families(self, snapshot: Snapshot) -> Iterator[Metric]:
        workspace = [snapshot.workspace]
        build = GaugeMetricFamily(
            "census_exporter_build_info",
            "Version of census-exporter; always 1.",
            labels=["version"],
        )
        build.add_metric([__version__], 1)
        yield build
        up = GaugeMetricFamily(
            "census_up",
            "1 if the last refresh of Census API data finished without any error, else 0.",
            labels=["workspace"],
        )
        up.add_metric(workspace, int(snapshot.up))
        yield up
        last = GaugeMetricFamily(
            "census_last_refresh_timestamp_seconds",
            "Unix time at which the last error-free refresh finished.",
            labels=["workspace"],
        )
        if snapshot.last_success_timestamp is not None:
            last.add_metric(workspace, snapshot.last_success_timestamp)
        yield last
        duration = GaugeMetricFamily(
            "census_refresh_duration_seconds",
            "How long the last refresh of Census API data took.",
            labels=["workspace"],
        )
        if snapshot.refresh_duration_seconds is not None:
            duration.add_metric(workspace, snapshot.refresh_duration_seconds)
        yield duration
        count = GaugeMetricFamily(
            "census_syncs", self._help("Number of syncs in the workspace."), labels=["workspace"]
        )
        if snapshot.listed:
            count.add_metric(workspace, len(snapshot.syncs))
        yield count

    def _sync_families(self, snapshot: Snapshot, states: list[SyncState]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "census_sync_info",
            self._help("Descriptive attributes of a sync; always 1. Join on sync_id."),
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
        paused = GaugeMetricFamily(
            "census_sync_paused", self._help("1 if the sync is paused, else 0."), labels=SYNC_LABELS
        )
        for state in states:
            sync = state.sync
            ids = [snapshot.workspace, str(sync.id)]
            info.add_metric(
                [
                    *ids,
                    sync.label,
                    sync.operation,
                    snapshot.source_name(sync),
                    snapshot.destination_name(sync),
                    sync.destination_object,
                    sync.schedule,
                ],
                1,
            )
            if sync.paused is not None:
                paused.add_metric(ids, int(sync.paused))
        yield info
        yield paused

    def _last_run_families(self, workspace: str, states: list[SyncState]) -> Iterator[Metric]:
        with_runs = [(state, state.latest_run) for state in states if state.latest_run]
        status = GaugeMetricFamily(
            "census_sync_last_run_status",
            self._help("Status of the newest run, one series per status; exactly one is 1."),
            labels=[*SYNC_LABELS, "status"],
        )
        run_info = GaugeMetricFamily(
            "census_sync_last_run_info",
            self._help("Trigger (sync_trigger_reason.ui_tag) and error code of the newest run; 1."),
            labels=[*SYNC_LABELS, "trigger", "error_code"],
        )
        gauges = [
            (spec, GaugeMetricFamily(spec.name, self._help(spec.help), labels=SYNC_LABELS))
            for spec in LAST_RUN_GAUGES
        ]
        for state, run in with_runs:
            assert run is not None
            ids = [workspace, str(state.sync.id)]
            statuses = list(KNOWN_RUN_STATUSES)
            if run.status not in statuses:
                statuses.append(run.status)
            for name in statuses:
                status.add_metric([*ids, name], int(name == run.status))
            run_info.add_metric([*ids, run.trigger or "", run.error_code or ""], 1)
            for spec, family in gauges:
                value = spec.value(run)
                if value is not None:
                    family.add_metric(ids, float(value))
        yield status
        yield run_info
        for _, family in gauges:
            yield family

    def _oldest_unfinished(self, workspace: str, states: list[SyncState]) -> Metric:
        family = GaugeMetricFamily(
            "census_sync_oldest_unfinished_run_created_timestamp_seconds",
            self._help("Unix time at which the oldest run still queued or working was created."),
            labels=SYNC_LABELS,
        )
        for state in states:
            if state.oldest_unfinished_created_at is not None:
                family.add_metric([workspace, str(state.sync.id)], state.oldest_unfinished_created_at)
        return family

    def _counter_families(self, snapshot: Snapshot, states: list[SyncState]) -> Iterator[Metric]:
        workspace = snapshot.workspace
        success = GaugeMetricFamily(
            "census_sync_last_success_timestamp_seconds",
            self._help("Unix time at which the newest successful (completed) run finished."),
            labels=SYNC_LABELS,
        )
        failure = GaugeMetricFamily(
            "census_sync_last_failure_timestamp_seconds",
            self._help("Unix time at which the newest failed run finished."),
            labels=SYNC_LABELS,
        )
        runs = CounterMetricFamily(
            "census_sync_runs_total",
            self._help("Runs that finished since the exporter started, by final status."),
            labels=[*SYNC_LABELS, "status"],
        )
        records = [
            (read, CounterMetricFamily(name, self._help(text), labels=SYNC_LABELS))
            for name, text, read in RECORD_COUNTERS
        ]
        durations = HistogramMetricFamily(
            "census_sync_run_duration_seconds",
            self._help("Durations of runs counted since the exporter started."),
            labels=SYNC_LABELS,
        )
        bounds = snapshot.duration_buckets
        for state in states:
            ledger = state.ledger
            if ledger is None:
                continue
            ids = [workspace, str(state.sync.id)]
            if ledger.last_success_at is not None:
                success.add_metric(ids, ledger.last_success_at)
            if ledger.last_failure_at is not None:
                failure.add_metric(ids, ledger.last_failure_at)
            counters = ledger.counters
            for status_name, total in sorted(counters.runs_by_status.items()):
                runs.add_metric([*ids, status_name], total)
            for read, family in records:
                family.add_metric(ids, read(counters))
            cumulative, buckets = 0, []
            for bound, count in zip(
                [*(f"{b:g}" for b in bounds), "+Inf"], counters.duration_bucket_counts, strict=True
            ):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            durations.add_metric(ids, buckets, counters.duration_sum_seconds)
        yield success
        yield failure
        yield self._oldest_unfinished(workspace, states)
        yield runs
        for _, family in records:
            yield family
        yield durations
