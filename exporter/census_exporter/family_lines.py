"""Writing one rendering's sample lines: which families it holds, and each sync's or workspace's lines.

A rendering's families are indexed in exposition order (:class:`Families`, under which
:class:`~census_exporter.rendering.FamilyBlocks` files lines); :class:`PerSyncFamilies` writes one sync's
samples, :class:`WorkspaceTotalFamilies` one workspace's run totals, each holding only the families the
:class:`~census_exporter.config.Exposition` asks for. Every function here raises when a value cannot render;
what to do then is the collector's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

from census_exporter.census.models.runs import SyncRun
from census_exporter.config import Exposition
from census_exporter.families import (
    HEALTH,
    LAST_FAILURE_GAUGE,
    LAST_FINISHED_RUN_FAILED,
    LAST_RUN_DETAIL_GAUGES,
    LAST_RUN_GAUGES,
    LAST_RUN_INFO,
    LAST_RUN_STATUS,
    LAST_SUCCESS_GAUGE,
    NO_SUCCESS_SINCE_GAUGE,
    OLDEST_UNFINISHED_GAUGE,
    PAUSED,
    RECORD_COUNTERS,
    RUN_DURATIONS,
    RUNS,
    SUPERSEDED_FAILURES,
    SYNC_INFO,
    WORKSPACE_RECORD_COUNTERS,
    WORKSPACE_RUN_DURATIONS,
    Series,
)
from census_exporter.ledger import SyncLedger
from census_exporter.rendering import Family, histogram, label_text, sample
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import Snapshot, SyncState

_Source = TypeVar("_Source")

#: One sample line and the index of its family.
Line = tuple[int, str]
Labels = list[tuple[str, str]]


class Families:
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

    def line(self, index: int, labels: str, value: float | int | bool, suffix: str = "") -> Line:
        """One sample of the family at ``index``; raises if ``value`` cannot render."""
        return index, sample(self.families[index].name + suffix, labels, value)

    def values(
        self, labels: str, series: Sequence[tuple[int, Series[_Source]]], source: _Source
    ) -> list[Line]:
        """One sample per series whose value ``source`` has (absent ones are left out, never zero)."""
        lines = []
        for index, each in series:
            value = each.read(source)
            if value is not None:
                lines.append(self.line(index, labels, value))
        return lines

    def histogram(
        self, index: int, ids: Labels, counters: RunCounters, bounds: Sequence[float]
    ) -> list[Line]:
        """``counters``' durations as histogram samples: cumulative buckets, then the count and the sum."""
        buckets = list(zip(bucket_names(bounds), counters.cumulative_duration_counts(), strict=True))
        lines = histogram(self.families[index].name, ids, buckets, counters.duration_sum_seconds)
        return [(index, line) for line in lines]


def bucket_names(bounds: Sequence[float]) -> list[str]:
    """The ``le`` label of each bucket: the bound's shortest exact form (``60``, ``59.9999999``, ``0.5``);
    a rounded one (``:g``) could give two buckets one series identity."""
    return [*(_bound_text(bound) for bound in bounds), "+Inf"]


def _bound_text(bound: float) -> str:
    text = repr(float(bound))
    return text.removesuffix(".0")


def _flag_label(value: bool | None) -> str:
    """A run's yes/no field as a label value: ``true``, ``false``, or empty when Census sent null."""
    return "" if value is None else str(value).lower()


class PerSyncFamilies(Families):
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

    def lines(self, snapshot: Snapshot, state: SyncState) -> list[Line]:
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

    def _last_run(self, ids: Labels, id_labels: str, run: SyncRun, state: SyncState) -> list[Line]:
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
        self, ids: Labels, id_labels: str, ledger: SyncLedger, bounds: Sequence[float], state: SyncState
    ) -> list[Line]:
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


class WorkspaceTotalFamilies(Families):
    """Run totals summed per workspace (the default instead of per sync): one series set per workspace."""

    def __init__(self, cached_note: str, exposition: Exposition) -> None:
        super().__init__(cached_note)
        records = WORKSPACE_RECORD_COUNTERS if exposition.record_totals == "workspace" else ()
        self.records = [(self.add(series.family), series) for series in records]
        wanted = exposition.duration_histogram == "workspace"
        self.durations = self.add(WORKSPACE_RUN_DURATIONS) if wanted else None

    def lines(self, snapshot: Snapshot, totals: RunCounters) -> list[Line]:
        """One workspace's totals; raises if one cannot render."""
        ids = [("workspace", snapshot.workspace)]
        lines = [
            self.line(index, label_text(ids), series.read(totals) or 0) for index, series in self.records
        ]
        if self.durations is not None:
            lines += self.histogram(self.durations, ids, totals, snapshot.duration_buckets)
        return lines
