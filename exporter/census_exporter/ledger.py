"""The run ledger: per sync, which runs are already accounted for, and the counters built from them.

A :class:`SyncLedger` is immutable. Each refresh derives the next one from the previous ledger and the runs
it fetched, so a refresh that fails half-way simply keeps the old ledger and nothing is counted twice.
The counters themselves are :class:`~census_exporter.run_counters.RunCounters`.

Counting rules (exactly once):

* Run ids are global and increase with creation time. "Already accounted for" is: one of the newest
  :data:`REMEMBERED_RUN_IDS` run ids seen (``recent``), below the ``floor`` (the oldest id of the baseline,
  raised only by ids that fell out of ``recent``), or last seen queued or working (``pending``). A single
  bogus huge id is then one remembered id among many, not a high-water mark that would make every later
  (smaller) real id look old. An id far above every remembered one is reported (``implausible``) so that the
  refresh can say so once. (A baseline whose only run has a bogus id still sets the floor there.)
* The first observation of a sync is a baseline: runs that had already finished are not counted (counters
  start at 0); runs still queued or working become pending.
* Afterwards a run is counted once, when it is first seen in a terminal state: either a new run (id above
  the high-water mark) that is already finished, or a pending run that has finished since.
* Runs with an id below the floor are never counted: they are older than anything the ledger remembers. One
  created after the baseline breaks the increasing ids counting relies on; it is reported
  (``out_of_order``) so that the refresh can say so.
* A finished run whose fingerprint (creation and finish time to the millisecond, status, error code and
  record counts) equals one of the newest :data:`REMEMBERED_FINGERPRINTS` counted runs' is the same run
  listed again under a new id: it is not counted again, and reported (``relisted``). A run without a
  creation or finish time has no fingerprint and is counted by its id alone.

Besides the counters, the ledger keeps what the alerts need beyond the newest run: the outcome of the newest
*finished* run (a failing streak lasts through retries that are queued, working or skipped, and ends only
with a completed run), the oldest run time seen while no success is known, and when each pending run
without a usable creation time was first seen (so that it can still be found stuck).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from census_exporter import defaults
from census_exporter.census.models.runs import SyncRun
from census_exporter.run_counters import RunCounters
from census_exporter.run_ids import RunIds

DEFAULT_DURATION_BUCKETS = defaults.DURATION_BUCKETS

#: Run ids remembered per sync (the newest ones); memory per sync is bounded by this plus the pending cap.
REMEMBERED_RUN_IDS = 500
#: Runs per sync waited on while queued or working; beyond this the oldest are forgotten uncounted (a sync
#: whose runs never finish must not grow the ledger without bound).
MAX_PENDING_RUNS_PER_SYNC = 500
#: Fingerprints of the newest counted runs remembered per sync, to recognise one listed again under a new id.
REMEMBERED_FINGERPRINTS = 50
#: A run below the floor created this long after the baseline is out of order (the API's clock and the
#: exporter's may differ by up to this much).
OUT_OF_ORDER_TOLERANCE_SECONDS = 300.0
#: A new run id this far above every remembered one is implausible (Census creates nowhere near this many
#: runs between two refreshes); it is still accounted for, and reported once.
IMPLAUSIBLE_RUN_ID_JUMP = 10**9


def plausible_runs(runs: Iterable[SyncRun], anchor_run_id: int = 0) -> list[SyncRun]:
    """``runs`` by ascending id, leaving out the highest ids while each is implausibly far (more than
    :data:`IMPLAUSIBLE_RUN_ID_JUMP`) above the next lower id, or above ``anchor_run_id`` (a run id already
    trusted, 0 for none) when it is the only one left: one bogus id must never become "the newest run"."""
    ordered = sorted(runs, key=lambda run: run.id)
    while ordered:
        below = ordered[-2].id if len(ordered) > 1 else anchor_run_id
        if below <= 0 or ordered[-1].id <= below + IMPLAUSIBLE_RUN_ID_JUMP:
            break
        ordered.pop()
    return ordered


@dataclass(frozen=True, slots=True)
class LedgerUpdate:
    """The next ledger, the runs it counted (oldest first), and what the refresh should log."""

    ledger: SyncLedger
    counted: tuple[SyncRun, ...]
    #: New run ids far above every remembered one (see :data:`IMPLAUSIBLE_RUN_ID_JUMP`).
    implausible_run_ids: tuple[int, ...] = ()
    #: Pending runs forgotten uncounted because the pending set reached :data:`MAX_PENDING_RUNS_PER_SYNC`.
    dropped_pending_run_ids: tuple[int, ...] = ()
    #: Runs not counted because they repeat a counted run under a new id.
    relisted_run_ids: tuple[int, ...] = ()
    #: Runs below the floor created after the baseline: not counted (ids must grow with creation time).
    out_of_order_run_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncLedger:
    """What one sync's runs have contributed so far."""

    #: The newest run ids seen (ascending, at most :data:`REMEMBERED_RUN_IDS`), packed (:class:`RunIds`).
    recent_run_ids: Sequence[int]
    pending_run_ids: frozenset[int]
    counters: RunCounters
    last_success_at: float | None = None
    last_failure_at: float | None = None
    buckets: tuple[float, ...] = field(default=DEFAULT_DURATION_BUCKETS)
    #: The pending run looked up by id last; the next refresh's lookups start after it (round robin).
    last_pending_lookup: int = 0
    #: Ids below this are old: the baseline's oldest run, or the newest id that fell out of ``recent``.
    floor_run_id: int = 0
    #: Id of the newest finished run that decides the streak (a ``completed`` or ``failed`` one); 0: none.
    newest_outcome_run_id: int = 0
    #: True while the newest such run failed (a failing streak), False once one completed; None: none seen.
    failing: bool | None = None
    #: The error code of the run that began the current failing streak (``None``: none or not reported). It
    #: stays through the streak, so the streak is one series and one alert, not one per error code.
    failing_error_code: str | None = None
    #: The oldest creation time of the runs seen: with no success known, no run succeeded since then.
    earliest_run_at: float | None = None
    #: When each pending run whose creation time is unknown was first seen, by run id (bounded like the
    #: pending runs), so that a run hanging without ``created_at`` still shows as unfinished.
    pending_seen_at: Mapping[int, float] = field(default_factory=lambda: _NOTHING_SEEN)
    #: Unix time of the baseline (the sync's first read): a run below ``floor_run_id`` created after it
    #: breaks the increasing ids counting relies on (``None``: unknown, as for ledgers stored before it).
    watched_since: float | None = None
    #: Fingerprints (:func:`run_fingerprint`) of the newest counted runs, oldest first, packed.
    counted_fingerprints: Sequence[int] = field(default_factory=lambda: _NO_FINGERPRINTS)

    @classmethod
    def baseline(
        cls,
        runs: Iterable[SyncRun],
        buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
        now: float | None = None,
    ) -> SyncLedger:
        """The first view of a sync: remember what exists, count nothing.

        ``now`` (Unix time) is when the runs were read: pending runs without a creation time are taken as
        seen first then.
        """
        run_list = sorted({run.id: run for run in runs}.values(), key=lambda run: run.id)
        pending = [run.id for run in run_list if not run.terminal][-MAX_PENDING_RUNS_PER_SYNC:]
        ledger = cls(
            recent_run_ids=_newest({run.id for run in run_list}),
            floor_run_id=min((run.id for run in run_list), default=0),
            pending_run_ids=frozenset(pending),
            counters=RunCounters.zero(len(buckets)),
            buckets=tuple(buckets),
            watched_since=now,
        )
        return ledger._with_outcome_times(run_list)._with_streak(run_list)._with_seen(run_list, now)

    def knows(self, run_id: int) -> bool:
        """True when this run is already accounted for (counted, baseline, or pending)."""
        if run_id in self.pending_run_ids:
            return True
        return run_id < self.floor_run_id or _contains(self.recent_run_ids, run_id)

    def far_ahead(self, run_id: int) -> bool:
        """True for a run id implausibly far (:data:`IMPLAUSIBLE_RUN_ID_JUMP`) above every remembered one."""
        return bool(self.recent_run_ids) and run_id > self.recent_run_ids[-1] + IMPLAUSIBLE_RUN_ID_JUMP

    def pending_missing_from(self, fetched_ids: Iterable[int]) -> frozenset[int]:
        """Pending runs the fetched pages no longer show: they must be fetched one by one."""
        return self.pending_run_ids - frozenset(fetched_ids)

    def pending_lookup_order(self, missing: Iterable[int]) -> list[int]:
        """``missing`` pending ids, least recently looked up first: after the last lookup, then the rest."""
        ordered = sorted(missing)
        cut = bisect.bisect_right(ordered, self.last_pending_lookup)
        return ordered[cut:] + ordered[:cut]

    def advance(
        self,
        fetched: Iterable[SyncRun],
        gone_run_ids: Iterable[int] = (),
        last_pending_lookup: int | None = None,
        now: float | None = None,
    ) -> LedgerUpdate:
        """Account for runs fetched this refresh (pages plus pending runs fetched by id).

        ``gone_run_ids`` are pending runs the API no longer knows (404); they are forgotten uncounted.
        ``last_pending_lookup`` is the last pending run looked up by id this refresh, if any. ``now`` (Unix
        time) is when the runs were read, for pending runs without a creation time.
        """
        runs = sorted({run.id: run for run in fetched}.values(), key=lambda run: run.id)
        pending = set(self.pending_run_ids) - set(gone_run_ids)
        counters = self.counters
        counted: list[SyncRun] = []
        implausible: list[int] = []
        relisted: list[int] = []
        out_of_order: list[int] = []
        fingerprints = list(self.counted_fingerprints)
        for run in runs:
            if run.id not in pending:
                if self.knows(run.id):
                    if self._out_of_order(run):
                        out_of_order.append(run.id)
                    continue
                if self.far_ahead(run.id):
                    implausible.append(run.id)
            if run.terminal:
                pending.discard(run.id)
                fingerprint = run_fingerprint(run)
                if fingerprint is not None and fingerprint in fingerprints:
                    relisted.append(run.id)
                    continue
                counters = counters.add(run, self.buckets)
                counted.append(run)
                if fingerprint is not None:
                    fingerprints.append(fingerprint)
            else:
                pending.add(run.id)
        newest_completed = max(
            (run.id for run in plausible_runs(runs, self.newest_outcome_run_id) if run.status == "completed"),
            default=None,
        )
        if newest_completed is not None:
            counters = counters.with_superseded_failures(
                sum(1 for run in counted if run.status == "failed" and run.id < newest_completed)
            )
        kept_pending = sorted(pending)
        dropped = (
            kept_pending[:-MAX_PENDING_RUNS_PER_SYNC] if len(kept_pending) > MAX_PENDING_RUNS_PER_SYNC else []
        )
        seen = sorted({*self.recent_run_ids, *(run.id for run in runs)})
        evicted = seen[:-REMEMBERED_RUN_IDS]
        ledger = replace(
            self,
            recent_run_ids=RunIds(seen[-REMEMBERED_RUN_IDS:]),
            floor_run_id=max(self.floor_run_id, evicted[-1] + 1) if evicted else self.floor_run_id,
            pending_run_ids=frozenset(kept_pending[len(dropped) :]),
            counters=counters,
            last_pending_lookup=self.last_pending_lookup
            if last_pending_lookup is None
            else last_pending_lookup,
            counted_fingerprints=RunIds(fingerprints[-REMEMBERED_FINGERPRINTS:])
            if len(fingerprints) != len(self.counted_fingerprints)
            else self.counted_fingerprints,
        )
        ledger = ledger._with_outcome_times(runs)._with_streak(runs)._with_seen(runs, now)
        # Nothing new (the usual refresh): keep the old ledger, which the previous snapshot holds anyway.
        return LedgerUpdate(
            self if ledger == self else ledger,
            tuple(counted),
            tuple(implausible),
            tuple(dropped),
            tuple(relisted),
            tuple(out_of_order),
        )

    def _out_of_order(self, run: SyncRun) -> bool:
        """True for a run never seen, below the floor, yet created after the baseline: ids out of order."""
        if run.id >= self.floor_run_id or _contains(self.recent_run_ids, run.id):
            return False
        if self.watched_since is None or run.created_at is None:
            return False
        return run.created_at > self.watched_since + OUT_OF_ORDER_TOLERANCE_SECONDS

    def _with_outcome_times(self, runs: Iterable[SyncRun]) -> SyncLedger:
        """Keep the newest success and failure times, even after those runs leave the fetched page."""
        success, failure = self.last_success_at, self.last_failure_at
        for run in runs:
            finished = run.finished_at
            if finished is None:
                continue
            if run.status == "completed" and (success is None or finished > success):
                success = finished
            elif run.status == "failed" and (failure is None or finished > failure):
                failure = finished
        if (success, failure) == (self.last_success_at, self.last_failure_at):
            return self
        return replace(self, last_success_at=success, last_failure_at=failure)

    def _with_streak(self, runs: Sequence[SyncRun]) -> SyncLedger:
        """Follow the failing streak through ``runs`` (ascending ids): a ``failed`` run newer than the last
        outcome starts or continues it, a ``completed`` one ends it; every other status leaves it as it is.

        Ordered by id, never by a timestamp: ids grow with creation, while one bogus ``created_at`` could
        otherwise pin an old outcome as the newest; an implausibly high id is left out
        (:func:`plausible_runs`), or it would pin its outcome over every later run.
        """
        newest, failing, code = self.newest_outcome_run_id, self.failing, self.failing_error_code
        for run in plausible_runs(runs, newest):
            if run.id <= newest or run.status not in ("completed", "failed"):
                continue
            newest = run.id
            if run.status == "completed":
                failing, code = False, None
            elif failing is not True:
                failing, code = True, run.error_code
        if (newest, failing, code) == (self.newest_outcome_run_id, self.failing, self.failing_error_code):
            return self
        return replace(self, newest_outcome_run_id=newest, failing=failing, failing_error_code=code)

    def _with_seen(self, runs: Sequence[SyncRun], now: float | None) -> SyncLedger:
        """Keep the oldest run time seen, and when each pending run without a creation time was first seen."""
        times = [run.created_at for run in runs if run.created_at is not None]
        earliest = min(
            [*times, *([] if self.earliest_run_at is None else [self.earliest_run_at])], default=None
        )
        seen = {run_id: at for run_id, at in self.pending_seen_at.items() if run_id in self.pending_run_ids}
        if now is not None:
            for run in runs:
                if run.created_at is None and run.id in self.pending_run_ids:
                    seen.setdefault(run.id, now)
        if earliest == self.earliest_run_at and seen == self.pending_seen_at:
            return self
        return replace(
            self, earliest_run_at=earliest, pending_seen_at=MappingProxyType(seen) if seen else _NOTHING_SEEN
        )

    @property
    def no_success_since(self) -> float | None:
        """While no successful run is known: the oldest run time seen, since which none succeeded."""
        return self.earliest_run_at if self.last_success_at is None else None


_NOTHING_SEEN: Mapping[int, float] = MappingProxyType({})


def run_fingerprint(run: SyncRun) -> int | None:
    """A finished run's identity apart from its id, as a signed 64-bit number; ``None`` without a creation or
    finish time (then two runs could not be told apart by their fields)."""
    finished = run.finished_at
    if run.created_at is None or finished is None:
        return None
    fields = (
        round(run.created_at * 1000),
        round(finished * 1000),
        run.status,
        run.error_code,
        run.records_processed,
        run.records_updated,
        run.records_failed,
        run.records_invalid,
        run.source_record_count,
    )
    digest = hashlib.blake2b(repr(fields).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _newest(run_ids: Iterable[int]) -> RunIds:
    """The newest :data:`REMEMBERED_RUN_IDS` of ``run_ids``, ascending."""
    return RunIds(sorted(run_ids)[-REMEMBERED_RUN_IDS:])


_NO_FINGERPRINTS: RunIds = RunIds()


def _contains(ascending: Sequence[int], value: int) -> bool:
    index = bisect.bisect_left(ascending, value)
    return index < len(ascending) and ascending[index] == value
