"""The counters of one sync's counted runs: runs by status, record totals and the duration histogram.

Immutable: :meth:`RunCounters.add` returns new counters, so a ledger that is not kept leaves no trace.
Which runs are counted, exactly once, is the ledger's job (:mod:`census_exporter.ledger`).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from census_exporter.census.models.runs import KNOWN_RUN_STATUSES, SyncRun

#: Statuses whose run counters exist (at 0) before any such run is seen, so that rate() works at once.
PREINITIALISED_STATUSES = ("completed", "failed", "skipped")

#: At most this many statuses outside the documented set get their own ``runs_by_status`` entry per sync;
#: runs with further undocumented statuses are counted under :data:`OTHER_STATUS`, so a workspace that
#: reports ever-new statuses cannot grow one series per status without bound.
MAX_UNDOCUMENTED_STATUSES = 5
OTHER_STATUS = "other"


@dataclass(frozen=True, slots=True)
class RunCounters:
    """Monotonic totals over counted runs of one sync."""

    runs_by_status: Mapping[str, int]
    records_processed: int = 0
    records_updated: int = 0
    records_failed: int = 0
    records_invalid: int = 0
    source_records: int = 0
    #: Per-bucket (not cumulative) counts of run durations; the last slot is +Inf.
    duration_bucket_counts: tuple[int, ...] = ()
    duration_sum_seconds: float = 0.0
    #: Failed runs that a later completed run already followed when they were first read: no failing
    #: streak ever showed them, so only this counter (and ``runs_by_status``) says they happened.
    superseded_failures: int = 0

    @classmethod
    def zero(cls, bucket_count: int) -> RunCounters:
        """Counters for a sync nothing has been counted for yet.

        One shared, read-only instance per bucket count: most syncs of a large workspace are at zero for a
        while, and :meth:`add` builds new counters rather than changing these.
        """
        return _zero_counters(bucket_count)

    @classmethod
    def of(
        cls,
        runs_by_status: Mapping[str, int],
        records: Sequence[int],
        duration_bucket_counts: Sequence[int],
        duration_sum_seconds: float,
        superseded_failures: int = 0,
    ) -> RunCounters:
        """Counters from their parts; ``records`` in the order of :meth:`record_totals`."""
        processed, updated, failed, invalid, source = records
        return cls(
            runs_by_status=runs_by_status,
            records_processed=processed,
            records_updated=updated,
            records_failed=failed,
            records_invalid=invalid,
            source_records=source,
            duration_bucket_counts=tuple(duration_bucket_counts),
            duration_sum_seconds=duration_sum_seconds,
            superseded_failures=superseded_failures,
        )

    def record_totals(self) -> tuple[int, int, int, int, int]:
        """Records processed, updated, failed, invalid, and source records, in that order."""
        return (
            self.records_processed,
            self.records_updated,
            self.records_failed,
            self.records_invalid,
            self.source_records,
        )

    @property
    def duration_count(self) -> int:
        """How many counted runs had a known duration."""
        return sum(self.duration_bucket_counts)

    def cumulative_duration_counts(self) -> tuple[int, ...]:
        """Counted runs with a duration up to each bucket bound (the last is +Inf), as histograms show."""
        cumulative, total = [], 0
        for count in self.duration_bucket_counts:
            total += count
            cumulative.append(total)
        return tuple(cumulative)

    def status_key(self, status: str) -> str:
        """The ``runs_by_status`` key a run with ``status`` is counted under (``other`` past the cap)."""
        if status in self.runs_by_status or status in KNOWN_RUN_STATUSES or status == OTHER_STATUS:
            return status
        undocumented = [
            name for name in self.runs_by_status if name not in KNOWN_RUN_STATUSES and name != OTHER_STATUS
        ]
        return status if len(undocumented) < MAX_UNDOCUMENTED_STATUSES else OTHER_STATUS

    def add(self, run: SyncRun, buckets: Sequence[float]) -> RunCounters:
        """These counters with one more finished run."""
        runs = dict(self.runs_by_status)
        key = self.status_key(run.status)
        runs[key] = runs.get(key, 0) + 1
        bucket_counts = list(self.duration_bucket_counts)
        duration_sum = self.duration_sum_seconds
        duration = run.duration_seconds
        if duration is not None:
            bucket_counts[bisect.bisect_left(buckets, duration)] += 1
            duration_sum += duration
        return RunCounters(
            runs_by_status=runs,
            records_processed=self.records_processed + (run.records_processed or 0),
            records_updated=self.records_updated + (run.records_updated or 0),
            records_failed=self.records_failed + (run.records_failed or 0),
            records_invalid=self.records_invalid + (run.records_invalid or 0),
            source_records=self.source_records + (run.source_record_count or 0),
            duration_bucket_counts=tuple(bucket_counts),
            duration_sum_seconds=duration_sum,
            superseded_failures=self.superseded_failures,
        )

    def with_superseded_failures(self, count: int) -> RunCounters:
        """These counters with ``count`` more failed runs that no streak showed."""
        return self if count == 0 else replace(self, superseded_failures=self.superseded_failures + count)


@functools.cache
def _zero_counters(bucket_count: int) -> RunCounters:
    return RunCounters(
        runs_by_status=MappingProxyType(dict.fromkeys(PREINITIALISED_STATUSES, 0)),
        duration_bucket_counts=(0,) * (bucket_count + 1),
    )
