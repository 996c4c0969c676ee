"""Reading planned syncs, for a full refresh round (:mod:`.rounds`) and the announced reads
(:mod:`.announced`): each sync's read runs on the round's fetchers, in plan order, with only a window of
reads queued at a time; with ``publish`` (the first refresh), the syncs read so far are handed over every
:data:`PARTIAL_PUBLISH_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait

from census_exporter.census.models.syncs import Sync
from census_exporter.refresh.one_sync import RefreshSettings, SyncRefresh
from census_exporter.refresh.reporting import SyncOutcome
from census_exporter.snapshot import SyncState
from census_exporter.workers import DaemonPool

__all__ = ["PARTIAL_PUBLISH_SECONDS", "QUEUED_READS_PER_WORKER", "Publish", "SyncReads"]

#: During the first refresh, the syncs read so far are published this often.
PARTIAL_PUBLISH_SECONDS = 1.0
#: Reads queued per worker at a time: enough that no worker waits for the next, few enough that thousands
#: of syncs do not each hold a future for the whole refresh.
QUEUED_READS_PER_WORKER = 4

Publish = Callable[[Mapping[int, SyncState]], None]


class SyncReads:
    """Reads one workspace's planned syncs, each with ``one_sync``, on the fetchers it is given."""

    def __init__(self, one_sync: SyncRefresh, settings: RefreshSettings, stopping: threading.Event) -> None:
        self._one_sync = one_sync
        self._settings = settings
        self._stopping = stopping

    def read(
        self,
        planned: Iterable[int],
        jobs: Mapping[int, Sync],
        *,
        known: Mapping[int, SyncState | None],
        deadline: float,
        fetchers: DaemonPool,
        publish: Publish | None,
    ) -> dict[int, SyncOutcome | BaseException]:
        """Each planned sync's outcome, or what its read raised, read on ``fetchers`` in plan order.

        Only a window of reads is queued at a time: a future per sync of a large workspace, all alive at
        once, weighed more than the snapshot. With ``publish`` (the first refresh), the syncs read so far
        are published every ``PARTIAL_PUBLISH_SECONDS`` until every read ended.
        """
        results: dict[int, SyncOutcome | BaseException] = {}
        waiting = iter(planned)
        in_flight: dict[Future[SyncOutcome], int] = {}
        window = max(1, self._settings.concurrency) * QUEUED_READS_PER_WORKER
        published_at = time.monotonic()
        while True:
            while len(in_flight) < window and (sync_id := next(waiting, None)) is not None:
                future = fetchers.submit(self._one_sync.run, jobs[sync_id], known[sync_id], deadline)
                in_flight[future] = sync_id
            if not in_flight:
                return results
            done, _ = wait(in_flight, timeout=PARTIAL_PUBLISH_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                sync_id = in_flight.pop(future)
                try:
                    results[sync_id] = future.result()
                except BaseException as error:  # noqa: BLE001 - raised again where the outcomes are read
                    results[sync_id] = error
            if publish is not None and time.monotonic() - published_at >= PARTIAL_PUBLISH_SECONDS:
                published_at = time.monotonic()
                if in_flight and not self._stopping.is_set():
                    publish(read_so_far(results, known, jobs))


def read_so_far(
    results: Mapping[int, SyncOutcome | BaseException],
    known: Mapping[int, SyncState | None],
    jobs: Mapping[int, Sync],
) -> dict[int, SyncState]:
    """Every sync as read so far this refresh, else as it was known before."""
    syncs: dict[int, SyncState] = {}
    for sync_id, sync in sorted(jobs.items()):
        result = results.get(sync_id)
        before = known[sync_id]
        # A sync restored from storage shows what was stored until the whole refresh is saved: a
        # partial result is not, and a crash now must not undo a count that a scrape has seen.
        if isinstance(result, SyncOutcome) and (before is None or before.ledger is None):
            syncs[sync_id] = result.state
        else:
            syncs[sync_id] = before or SyncState(sync=sync)
    return syncs
