"""Announcements: what Census's webhooks said about one workspace's syncs, as its refresher takes it.

The webhook receiver (:mod:`census_exporter.webhooks`) writes here; the refresher reads. Nothing here talks
HTTP or counts runs: a sync announced by an event is read ahead of the budget's plan, through the same
ledger as every other read, so a run is counted once whichever path sees it first.

* **Urgent reads.** An event marks its sync (:meth:`Announcements.announce`); the refresher's announced
  reads (:mod:`.announced`, beside any full refresh, never behind one) take the marked syncs it knows
  (:meth:`take_known`); a full refresh takes first the marked syncs it must list to read (never read yet)
  and those whose announced read failed (:meth:`arrange`). Ids no listing shows are dropped by the next
  full refresh. At most :data:`MAX_URGENT_SYNCS` watched syncs are marked at once, and a tenth as many
  that no listing shows (events about them cannot take the room of the watched syncs' reads).
* **Reconcile.** While webhooks are healthy (an event within the reconcile interval and no run found that no
  event announced), a full refresh reads only the syncs not read for a reconcile interval (and any never
  read) and those whose last read showed a run queued or working; the others wait for their events. A sync
  with an unfinished run is polled as without webhooks until the run ends: its terminal event may arrive
  before the API shows the outcome, or be lost, and neither may hide the outcome for a reconcile interval.
* **Silence.** A run a poll finds (a sync's counts moved on a read no event asked for) must be announced
  within :data:`ANNOUNCEMENT_GRACE_SECONDS`; if not, it counts as unannounced and the workspace falls back
  to full polling for one reconcile interval.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from census_exporter import defaults
from census_exporter.refresh import schedule
from census_exporter.snapshot import SyncState

#: Syncs marked for an urgent read at once; more marks wait for the next round (and are refused). Syncs the
#: workspace does not watch may take a tenth more, apart: a flood of events about them (filtered out,
#: another workspace's, made up) would otherwise leave no room for a watched sync's mark.
MAX_URGENT_SYNCS = 10_000
#: Syncs whose polled-found runs await their event at once; beyond this the oldest count as unannounced.
MAX_AWAITED_SYNCS = 10_000
#: How long after a poll found a run its event may still arrive (delivery takes seconds; retries longer).
ANNOUNCEMENT_GRACE_SECONDS = defaults.WEBHOOK_ANNOUNCEMENT_GRACE_SECONDS
#: The reconcile interval's default: how often a sync no event announced is read while webhooks are healthy.
DEFAULT_RECONCILE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class AnnouncementStatus:
    """The announcements of one workspace as its metrics show them."""

    #: True while polling is slowed to the reconcile interval (webhooks healthy).
    reconciling: bool
    #: True while the workspace is back on full polling because a run went unannounced.
    fallback: bool
    #: Runs found by polling that no event announced within the grace period, since start.
    unannounced_runs: int
    #: Unix time of the last verified event (``None``: none yet).
    last_event_timestamp: float | None


class Announcements:
    """One workspace's webhook announcements; thread-safe, every table bounded."""

    def __init__(
        self,
        reconcile_interval_seconds: float = DEFAULT_RECONCILE_INTERVAL_SECONDS,
        *,
        grace_seconds: float = ANNOUNCEMENT_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.reconcile_interval_seconds = reconcile_interval_seconds
        self._grace = grace_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        #: Marked syncs, each with whether the workspace watched it when marked.
        self._urgent: OrderedDict[int, bool] = OrderedDict()
        self._unwatched_marks = 0
        #: Syncs whose announced read failed: the next full refresh reads them first (not the announced
        #: reads again at once: a failing API would make that a loop).
        self._retry: OrderedDict[int, None] = OrderedDict()
        #: Per sync, when a poll found runs no event had announced yet.
        self._awaited: OrderedDict[int, float] = OrderedDict()
        #: Per sync, the newest run a verified terminal event named, and when: a poll that counts no newer
        #: run found nothing unannounced, even when the event came before the poll's swap (nothing was
        #: awaited to pop). Trusted for one reconcile interval only (far longer than any round): a bogus id
        #: far ahead must not make the sync's later runs look announced for good.
        self._announced_runs: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._last_event: float | None = None
        self._last_event_wall: float | None = None
        self._fallback_since: float | None = None
        self._unannounced = 0

    # ------------------------------------------------------------------ the receiver's side

    def heard(self, sync_id: int, run_id: int | None = None) -> None:
        """A verified event about ``sync_id`` arrived: webhooks are alive and the sync's runs are announced.
        ``run_id``: the run a terminal event (its outcome) named, None for any other event."""
        with self._lock:
            self._last_event = self._clock()
            self._last_event_wall = self._wall_clock()
            self._awaited.pop(sync_id, None)
            if run_id is not None and run_id > self._announced_run(sync_id, self._last_event):
                self._announced_runs[sync_id] = (run_id, self._last_event)
                self._announced_runs.move_to_end(sync_id)
                if len(self._announced_runs) > MAX_AWAITED_SYNCS:
                    self._announced_runs.popitem(last=False)

    def announce(self, sync_id: int, *, watched: bool = True) -> bool:
        """Mark ``sync_id`` for an urgent read; False when as many syncs (watched or not) as the bound allow
        (see :data:`MAX_URGENT_SYNCS`) are marked already."""
        with self._lock:
            if sync_id in self._urgent:
                return True
            if watched:
                full = len(self._urgent) - self._unwatched_marks >= MAX_URGENT_SYNCS
            else:
                full = self._unwatched_marks >= MAX_URGENT_SYNCS // 10
            if full:
                return False
            self._urgent[sync_id] = watched
            self._unwatched_marks += not watched
            return True

    def _unmark(self, sync_id: int) -> None:
        """Drop the mark of ``sync_id`` (lock held)."""
        if not self._urgent.pop(sync_id):
            self._unwatched_marks -= 1

    # ------------------------------------------------------------------ the refresher's side

    def has_known(self, known: Container[int]) -> bool:
        """Whether a marked sync is one the refresher can read without listing."""
        with self._lock:
            return any(sync_id in known for sync_id in self._urgent)

    def take_known(self, known: Container[int], limit: int | None = None) -> list[int]:
        """The marked syncs among ``known`` (at most ``limit``), unmarked, in the order they were marked."""
        with self._lock:
            taken = [sync_id for sync_id in self._urgent if sync_id in known][:limit]
            for sync_id in taken:
                self._unmark(sync_id)
            return taken

    def again(self, sync_ids: Iterable[int]) -> None:
        """Syncs whose urgent read failed: the next full refresh reads them first."""
        with self._lock:
            for sync_id in sync_ids:
                if len(self._retry) < MAX_URGENT_SYNCS:
                    self._retry[sync_id] = None

    def arrange(self, candidates: Sequence[SyncState]) -> tuple[list[int], list[SyncState]]:
        """For a full refresh: the syncs to read first, and the candidates left for the plan.

        First: the marked syncs never read yet (the announced reads cannot take them) and those whose
        announced read failed. Marks for syncs not among ``candidates`` (no listing shows them) are dropped;
        the marks of the others are left for the announced reads. While reconciling, the plan gets only the
        syncs not read for a reconcile interval, those never read and those with an unfinished run.
        """
        now = self._clock()
        reconciling = self.reconciling()
        listed = {state.sync.id for state in candidates}
        with self._lock:
            retry = set(self._retry)
            self._retry.clear()
            for sync_id in [sync_id for sync_id in self._urgent if sync_id not in listed]:
                self._unmark(sync_id)
            unread = {state.sync.id for state in candidates if state.ledger is None}
            marked = {sync_id for sync_id in self._urgent if sync_id in unread}
            for sync_id in marked:
                self._unmark(sync_id)
        first_ids = retry | marked
        first = [state.sync.id for state in candidates if state.sync.id in first_ids]
        rest = [
            state
            for state in candidates
            if state.sync.id not in first_ids and (not reconciling or self._reconcile_due(state, now))
        ]
        return first, rest

    def _reconcile_due(self, state: SyncState, now: float) -> bool:
        read = state.runs_read_monotonic
        return read is None or now - read >= self.reconcile_interval_seconds or schedule.unfinished(state)

    def polled(self, found: Mapping[int, int | None]) -> None:
        """Syncs whose runs a read no event asked for counted, each with the newest run it counted; each
        awaits its event for the grace, unless a terminal event already named that run or a newer one."""
        now = self._clock()
        with self._lock:
            for sync_id, newest_run in found.items():
                if newest_run is not None and self._announced_run(sync_id, now) >= newest_run:
                    continue
                if sync_id not in self._awaited:
                    self._awaited[sync_id] = now
            self._expire(now, force=len(self._awaited) - MAX_AWAITED_SYNCS)

    def _announced_run(self, sync_id: int, now: float) -> int:
        """The newest run a terminal event named for ``sync_id`` within a reconcile interval, -1 for none
        (lock held)."""
        run_id, heard_at = self._announced_runs.get(sync_id, (-1, now))
        return run_id if now - heard_at < self.reconcile_interval_seconds else -1

    def _expire(self, now: float, force: int = 0) -> None:
        """Count runs whose grace ended (and the oldest ``force`` ones) as unannounced (lock held)."""
        while self._awaited:
            sync_id, found_at = next(iter(self._awaited.items()))
            if force <= 0 and now - found_at < self._grace:
                break
            del self._awaited[sync_id]
            force -= 1
            self._unannounced += 1
            self._fallback_since = now

    def reconciling(self) -> bool:
        """Whether polling is slowed: an event within the reconcile interval, and no fallback running."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if self._last_event is None or now - self._last_event >= self.reconcile_interval_seconds:
                return False
            return not self._in_fallback(now)

    def _in_fallback(self, now: float) -> bool:
        since = self._fallback_since
        return since is not None and now - since < self.reconcile_interval_seconds

    def status(self) -> AnnouncementStatus:
        """What the metrics show."""
        reconciling = self.reconciling()
        with self._lock:
            return AnnouncementStatus(
                reconciling=reconciling,
                fallback=self._in_fallback(self._clock()),
                unannounced_runs=self._unannounced,
                last_event_timestamp=self._last_event_wall,
            )


def counted_runs(before: SyncState | None, after: SyncState) -> int:
    """Runs a read counted: how far the sync's run counters moved (0 for a first read, a baseline)."""
    if before is None or before.ledger is None or after.ledger is None:
        return 0
    old = sum(before.ledger.counters.runs_by_status.values())
    new = sum(after.ledger.counters.runs_by_status.values())
    return max(0, new - old)


def known_ids(syncs: Mapping[int, SyncState]) -> Container[int]:
    """The syncs an urgent read can take: those read at least once (a ledger to count on)."""
    return {sync_id for sync_id, state in syncs.items() if state.ledger is not None}
