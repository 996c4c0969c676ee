"""WorkspaceTotals: every sync's run counters summed per workspace, as counters that never go down.

A plain sum over the syncs in a snapshot would drop when a sync leaves the workspace (deleted, or no
longer admitted by the include/exclude filter): Prometheus reads any drop as a counter reset and
``rate()`` then adds the whole remaining total once more. So the counters of a sync that leaves stay in
its workspace's totals, and a sync whose ledger starts again from zero keeps what it had contributed.
This relies on what the refresher guarantees: a sync leaves a snapshot only once it is confirmed gone, and one
that comes back starts a new ledger (a baseline that counts nothing), so no run is counted twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import Snapshot


def sum_counters(counters: Iterable[RunCounters], bucket_count: int) -> RunCounters:
    """The record totals and duration buckets of ``counters`` added up (run counts by status are not)."""
    records = [0, 0, 0, 0, 0]
    buckets = [0] * (bucket_count + 1)
    duration_sum = 0.0
    for each in counters:
        for index, total in enumerate(each.record_totals()):
            records[index] += total
        for index, count in enumerate(each.duration_bucket_counts):
            buckets[index] += count
        duration_sum += each.duration_sum_seconds
    return RunCounters.of({}, records, buckets, duration_sum)


def covers(now: RunCounters, before: RunCounters) -> bool:
    """True when ``now`` can have grown from ``before``: no total and no bucket is smaller."""
    return (
        now.records_processed >= before.records_processed
        and now.records_updated >= before.records_updated
        and now.records_failed >= before.records_failed
        and now.records_invalid >= before.records_invalid
        and now.source_records >= before.source_records
        and now.duration_sum_seconds >= before.duration_sum_seconds
        and all(
            a >= b for a, b in zip(now.duration_bucket_counts, before.duration_bucket_counts, strict=True)
        )
    )


@dataclass(slots=True)
class _Account:
    """What one workspace's totals were built from last time."""

    started_monotonic: float | None
    seen: dict[int, RunCounters]
    departed: RunCounters
    total: RunCounters = field(init=False)


class WorkspaceTotals:
    """Per-workspace totals of run counters for successive snapshots; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        #: What a workspace's totals start from after a restart (``--storage.path``): the counts of syncs
        #: that had left, and each restored sync's counters (a restored sync the listing no longer shows
        #: then leaves like any other, its counts kept).
        self._seeds: dict[str, tuple[RunCounters, dict[int, RunCounters]]] = {}

    def seed(self, workspace: str, departed: RunCounters, restored: Mapping[int, RunCounters]) -> None:
        """Start ``workspace``'s totals from the counts of syncs that left before a restart and the counters
        of the syncs restored."""
        with self._lock:
            self._seeds[workspace] = (departed, dict(restored))

    def total(
        self, snapshot: Snapshot, admit: Callable[[int, RunCounters], bool] = lambda _id, _counters: True
    ) -> RunCounters:
        """The workspace's totals as of ``snapshot``: never lower than any total returned before for it.

        A sync whose counters ``admit`` refuses (a value that cannot be rendered) counts as gone.
        """
        bucket_count = len(snapshot.duration_buckets)
        current = {
            sync_id: state.ledger.counters
            for sync_id, state in snapshot.syncs.items()
            if state.ledger is not None and admit(sync_id, state.ledger.counters)
        }
        with self._lock:
            account = self._accounts.get(snapshot.workspace)
            if account is None or len(account.departed.duration_bucket_counts) != bucket_count + 1:
                departed, seen = self._seeds.pop(snapshot.workspace, (None, {}))
                if departed is None or len(departed.duration_bucket_counts) != bucket_count + 1:
                    departed, seen = sum_counters((), bucket_count), {}
                account = _Account(None, seen, departed)
                account.total = account.departed
                self._accounts[snapshot.workspace] = account
            elif _older(snapshot.started_monotonic, account.started_monotonic):
                # A scrape that took its view before the last refresh swapped it: the newer totals are
                # never lower, and showing them keeps every scraper's counters monotonic.
                return account.total
            gone = [
                before
                for sync_id, before in account.seen.items()
                if (now := current.get(sync_id)) is None or (now is not before and not covers(now, before))
            ]
            if gone:
                account.departed = sum_counters([account.departed, *gone], bucket_count)
            account.seen = current
            account.started_monotonic = snapshot.started_monotonic
            account.total = sum_counters([account.departed, *current.values()], bucket_count)
            return account.total

    def forget_except(self, workspaces: Iterable[str]) -> None:
        """Drop the accounts of workspaces no longer watched (their series leave the exposition)."""
        keep = set(workspaces)
        with self._lock:
            for name in [name for name in self._accounts if name not in keep]:
                del self._accounts[name]
                self._seeds.pop(name, None)


def _older(started: float | None, last_started: float | None) -> bool:
    return started is not None and last_started is not None and started < last_started
