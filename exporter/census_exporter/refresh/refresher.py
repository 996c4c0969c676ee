"""Refresher: builds the next Snapshot from the Census API and swaps it in whole.

* Single flight: one refresh at a time; scrapes that find the snapshot older than the TTL share it.
* Budget: a scrape waits for the refresh at most as long as its budget, then gets the previous snapshot;
  the refresh goes on and the next scrape gets its result.
* Deadline: a refresh still running ``refresh_timeout_seconds`` after it started is abandoned: the snapshot
  turns ``up=False``, a new refresh may start, and whatever the abandoned one produces later is discarded
  (ledger included). Each refresh runs on its own threads, so a hung request cannot block the next one.
  The deadline's timer, and when a running refresh can be expected to end, are :mod:`.timing`.
* Partial failure: a sync whose requests failed keeps its previous state (and ledger); ``up`` is false until a
  refresh finishes without errors.
* First refresh: until it ends, the syncs read so far are swapped in every ``PARTIAL_PUBLISH_SECONDS``
  (the snapshot stays not ``refreshed`` and stale, so scrapes keep sharing the one running refresh).

What one round reads (listing, the budget's plan, absence) is :mod:`.rounds` and :mod:`.absence`; the
syncs webhook events announced are read by :mod:`.announced`, beside the full refreshes: whatever changes
the snapshot's syncs (a round's swap, a partial publish, an announced read's swap) merges with them as
they are now and saves before it swaps, under one lock.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from census_exporter.logs import workspace_context
from census_exporter.refresh.announced import AnnouncedReads, Reads, after_round, applied, merged
from census_exporter.refresh.announcements import Announcements
from census_exporter.refresh.coverage import log_left_out, syncs_behind
from census_exporter.refresh.one_sync import CensusAPI, RefreshSettings, SyncRefresh
from census_exporter.refresh.quota import SyncQuota
from census_exporter.refresh.reporting import RefreshLog
from census_exporter.refresh.rounds import Built, RoundReader
from census_exporter.refresh.timing import ended_without_result, expected_finish, start_deadline
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.storage import LedgerFile
from census_exporter.workers import DaemonPool

log = logging.getLogger(__name__)

#: Abandoned refreshes whose threads may still be waiting on the API; beyond this no new refresh starts
#: until one of them ends (the client's own timeouts end them), so a dead API cannot pile up threads.
MAX_ABANDONED_REFRESHES = 4


class Refresher:
    """Owns the current Snapshot and the single refresh that may be replacing it."""

    def __init__(
        self,
        api: CensusAPI,
        settings: RefreshSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stopping: threading.Event | None = None,
        workspaces: Callable[[], int] = lambda: 1,
        runners: DaemonPool | None = None,
        announcements: Announcements | None = None,
        quota: SyncQuota | None = None,
        ledger_file: LedgerFile | None = None,
        restored: Mapping[int, SyncState] | None = None,
    ) -> None:
        self._api = api
        #: The fleet-wide bound on watched syncs this workspace claims its syncs from (None: no bound).
        self._quota = quota
        #: Where the ledgers are saved before each swap (``--storage.path``), and what it held at start
        #: (each sync's ledger and definition): the first refresh that lists the syncs continues from these
        #: ledgers instead of baselines, and awaits a restored sync it does not list like any missing sync.
        self._ledger_file = ledger_file
        #: What webhooks announced (None: no receiver for this workspace); see :mod:`.announcements`.
        self._announcements = announcements
        #: Where refreshes run: the fleet's fixed set of refresh threads (queued while all are busy), or,
        #: without one, a thread of its own per refresh.
        self._runners = runners
        #: Monotonic time the running refresh started (None while it waits for a refresh thread).
        self._inflight_started: float | None = None
        #: Monotonic time the running refresh was asked for (queued or not).
        self._inflight_triggered = 0.0
        #: Syncs the last listing held beyond the client's bound (0: none; None: not listed yet).
        self.syncs_left_out: int | None = None
        #: Syncs the last refresh left unread because its share of the request budget could not cover them.
        self.syncs_unread: int | None = None
        #: Syncs whose runs were not read within ``DATA_AGE_BOUND_TTLS`` TTLs, as of the last refresh.
        self.syncs_behind: int | None = None
        #: How many workspaces share the request budget now (this one's share of it is planned on).
        self._workspaces = workspaces
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._snapshot = Snapshot(
            workspace=settings.workspace, duration_buckets=settings.duration_buckets, api_url=settings.api_url
        )
        self._lock = threading.Lock()
        #: Held (before ``_lock``) by whatever changes the snapshot's syncs: the full refresh's swap, the
        #: first refresh's partial publish, an announced read's swap. Each merges with the syncs as they are
        #: and saves before it swaps, so saves and swaps happen in one order.
        self._swap_lock = threading.Lock()
        self._saves = 0
        self._inflight: Future[Snapshot] | None = None
        self._generation = 0
        #: The generation neither swapped in nor abandoned yet; whichever happens first settles it.
        self._unsettled: int | None = None
        self._abandoned_running = 0
        self._pools: set[DaemonPool] = set()
        # Set by close(); shared with whoever else must stop waiting then (the client's retry backoff).
        self._stopping = stopping or threading.Event()
        self._logs = RefreshLog()
        self._one_sync = SyncRefresh(api, settings, self._logs, clock, wall_clock)
        self._rounds = RoundReader(
            api,
            settings,
            self._logs,
            self._one_sync,
            clock=clock,
            wall_clock=wall_clock,
            stopping=self._stopping,
            workspaces=workspaces,
            announcements=announcements,
            quota=quota,
            claimant=self,
            note_left_out=self._note_left_out,
            restored=restored or {},
        )
        #: The announced reads (None without a receiver): beside full refreshes, never behind one.
        self._announced: AnnouncedReads | None = None
        if announcements is not None:
            self._announced = AnnouncedReads(
                announcements,
                self._rounds,
                settings,
                self._logs,
                self._stopping,
                snapshot=lambda: self._snapshot,
                swap=self._swap_announced,
                context=self._in_workspace,
                clock=clock,
            )
        self.refresh_count = 0

    # ------------------------------------------------------------------ public

    @property
    def snapshot(self) -> Snapshot:
        """The newest complete snapshot (never blocks)."""
        return self._snapshot

    @property
    def ready(self) -> bool:
        """True once the first refresh has finished, successfully or not."""
        return self._snapshot.refreshed

    def is_stale(self) -> bool:
        """True when the snapshot is older than the cache TTL (or there is none yet)."""
        started = self._snapshot.started_monotonic
        return started is None or self._clock() - started >= self._settings.cache_ttl_seconds

    def trigger(self) -> Future[Snapshot]:
        """Start a refresh unless one is already running; return the running one.

        The future resolves when the refresh is swapped in or abandoned at its deadline, whichever is first.
        """
        with self._lock:
            if self._inflight is not None and not self._inflight.done():
                return self._inflight
            future: Future[Snapshot] = Future()
            future.set_running_or_notify_cancel()
            if self._stopping.is_set() or self._abandoned_running >= MAX_ABANDONED_REFRESHES:
                if not self._stopping.is_set():
                    self._logs.refreshes_blocked(MAX_ABANDONED_REFRESHES)
                future.set_result(self._snapshot)
                return future
            self._logs.refreshes_unblocked()
            self._generation += 1
            generation = self._generation
            self._unsettled = generation
            self._inflight = future
            self._inflight_started = None
            self._inflight_triggered = self._clock()
        if self._runners is None:
            runner = threading.Thread(
                target=self._in_workspace().run,
                args=(self._start, generation, future),
                name=f"census-refresh-{generation}",
                daemon=True,
            )
            runner.start()
        elif self._runners.submit(self._in_workspace().run, self._start, generation, future).cancelled():
            self._settle_unstarted(generation, future)  # the fleet is closing: no refresh thread is left
        return future

    def expected_finish(self) -> float | None:
        """When the running refresh can be expected to end (monotonic), from how long the last one took.

        None when no refresh is running; how it is estimated: :func:`.timing.expected_finish`.
        """
        with self._lock:
            if self._inflight is None or self._inflight.done():
                return None
            started = self._inflight_started
            triggered = self._inflight_triggered
        last = self._snapshot.refresh_duration_seconds
        return expected_finish(self._clock(), triggered, started, last, self._runners)

    def snapshot_within(self, budget_seconds: float) -> Snapshot:
        """A snapshot no older than the TTL if one can be had within the budget, else the newest one."""
        if not self.is_stale():
            return self._snapshot
        future = self.trigger()
        try:
            future.result(timeout=max(0.0, budget_seconds))
        except FutureTimeout:
            log.debug("refresh still running after the scrape budget; serving the previous snapshot")
        except Exception:  # noqa: BLE001 - _refresh_and_swap logs its own failures
            log.debug("refresh failed; serving the previous snapshot")
        return self._snapshot

    def close(self) -> None:
        """Stop the worker threads; a running refresh is abandoned without logging an error."""
        self._stopping.set()
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.shutdown()
        if self._announced is not None:
            self._announced.close()
        if self._ledger_file is not None:
            self._ledger_file.close()

    # ------------------------------------------------------------------ refresh

    def _start(self, generation: int, future: Future[Snapshot]) -> None:
        """Run refresh ``generation`` now that it has a thread; its deadline counts from here."""
        started = self._clock()
        with self._lock:
            current = self._unsettled == generation
            run = current and not self._stopping.is_set()
            if run:
                self._inflight_started = started
        if not run:
            if current:
                self._settle_unstarted(generation, future)
            return
        at_deadline = functools.partial(self._in_workspace().run, self._abandon, generation, future, started)
        abandon = start_deadline(self._settings.refresh_timeout_seconds, generation, at_deadline)
        self._refresh_and_swap(generation, future, started, abandon)

    def _settle_unstarted(self, generation: int, future: Future[Snapshot]) -> None:
        """A refresh that never got a thread (shutting down) ends with the snapshot as it is."""
        with self._lock:
            if self._unsettled == generation:
                self._unsettled = None
        if not future.done():
            future.set_result(self._snapshot)

    def _in_workspace(self) -> contextvars.Context:
        """A context whose log lines carry this workspace; one per thread (a context runs in one at once)."""
        return workspace_context(self._settings.workspace)

    def _refresh_and_swap(
        self, generation: int, future: Future[Snapshot], started: float, abandon: threading.Timer
    ) -> None:
        fetchers = DaemonPool(self._settings.concurrency, f"census-fetch-{generation}")
        with self._lock:
            self._pools.add(fetchers)
        built: Built | None = None
        failure: BaseException | None = None
        previous = self._snapshot
        first = not previous.listed
        try:
            built = self._build_guarded(previous, started, fetchers, generation)
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
            failure = error
        finally:
            abandon.cancel()
            fetchers.shutdown()
            with self._lock:
                self._pools.discard(fetchers)
        kept: set[int] = set()
        with self._swap_lock:
            snapshot = None
            if built is not None and self._unsettled == generation:
                # What announced reads swapped in during this round is newer than the round's reads.
                syncs, kept = merged(built.snapshot.syncs, self._snapshot.syncs, built.bases)
                snapshot = replace(built.snapshot, syncs=syncs) if kept else built.snapshot
                # Before the swap: no scrape can see a count that a restart would not restore.
                self._save(snapshot)
            with self._lock:
                if self._unsettled != generation:
                    # Abandoned at its deadline: a newer snapshot may exist, its ledgers must not be undone.
                    self._abandoned_running -= 1
                    log.debug("discarded the late result of abandoned refresh %d", generation)
                    return
                self._unsettled = None
                if built is not None and snapshot is not None:
                    self._snapshot = snapshot
                    self.refresh_count += 1
                    if built.left_out is not None:
                        self._note_left_out(built.left_out)
                        self.syncs_unread = built.unread
                        self.syncs_behind = syncs_behind(
                            snapshot, self._settings.cache_ttl_seconds, self._clock
                        )
                    if snapshot.listed:
                        self._rounds.restored = {}
        if built is None or snapshot is None:
            future.set_exception(failure or RuntimeError("refresh ended without a result"))
            return
        if self._announcements is not None:
            after_round(self._announcements, built, kept)
        outcomes = [(sync, outcome) for sync, outcome in built.outcomes if sync.id not in kept]
        self._logs.round_kept(snapshot, outcomes, list(built.errors), first_refresh=first and snapshot.listed)
        future.set_result(snapshot)
        self.read_announced()  # marks made meanwhile the announced reads could not take yet

    def _save(self, snapshot: Snapshot) -> None:
        """Save ``snapshot``'s ledgers (``_swap_lock`` held, so saves keep the order of the swaps)."""
        if self._ledger_file is not None:
            self._saves += 1
            self._ledger_file.save(snapshot, self._saves)

    # ------------------------------------------------------------------ webhook announcements

    def read_announced(self) -> None:
        """Read the syncs webhook events marked, now, beside any full refresh (see :mod:`.announced`)."""
        if self._announced is not None:
            self._announced.wake()

    def _swap_announced(self, reads: Reads) -> set[int]:
        """Swap in the announced reads whose sync nothing advanced since they read it; the syncs swapped in.

        A sync a full refresh advanced meanwhile keeps that state and is marked again, to be read from it.
        """
        with self._swap_lock:
            syncs, swapped, again = applied(self._snapshot.syncs, reads)
            if swapped:
                self._save(replace(self._snapshot, syncs=syncs))
                with self._lock:
                    self._snapshot = replace(self._snapshot, syncs=syncs)
        if self._announcements is not None:
            for sync_id in again:
                self._announcements.announce(sync_id)
        return swapped

    def _abandon(self, generation: int, future: Future[Snapshot], started: float) -> None:
        """Give up on a refresh past its deadline: say so in the snapshot and let the next one start."""
        timeout = self._settings.refresh_timeout_seconds
        message = f"refresh did not finish within {timeout:g}s"
        with self._lock:
            if self._unsettled != generation or self._stopping.is_set():
                return
            self._unsettled = None
            self._abandoned_running += 1
            self._snapshot = ended_without_result(self._snapshot, message, started, self._clock())
            snapshot = self._snapshot
            self._logs.abandoned(message, generation)
        future.set_result(snapshot)

    def _build_guarded(
        self, previous: Snapshot, started: float, fetchers: DaemonPool, generation: int
    ) -> Built:
        try:
            return self._build(previous, started, fetchers, generation)
        except Exception as error:
            if self._stopping.is_set():
                raise  # shutting down: the client was closed under this refresh; nobody reads the result
            # A bug, not an API fault: keep serving the previous data and say so once.
            self._logs.unexpected_failure(error)
            message = f"unexpected {type(error).__name__}"
            return Built(ended_without_result(previous, message, started, self._clock()), (), ())

    def _build(self, previous: Snapshot, started: float, fetchers: DaemonPool, generation: int) -> Built:
        publish = self._publisher(previous, generation) if not previous.listed else None
        return self._rounds.build(previous, started, fetchers, publish)

    def _note_left_out(self, left_out: int) -> None:
        """Keep how many syncs the bound left out, and say once when that starts and when it ends."""
        before, self.syncs_left_out = self.syncs_left_out or 0, left_out
        log_left_out(before, left_out)

    def _publisher(self, previous: Snapshot, generation: int) -> Callable[[Mapping[int, SyncState]], None]:
        """Swaps in the syncs read so far while refresh ``generation`` (the first) is still the current one.

        The partial snapshot is neither ``refreshed`` nor fresh: scrapes keep waiting on (and sharing) the one
        running refresh, which replaces it whole at its end. Its ledgers are the baselines that refresh reads,
        so if it is abandoned the next refresh counts on from them exactly as it would from its result.
        """

        def publish(syncs: Mapping[int, SyncState]) -> None:
            with self._swap_lock, self._lock:
                if self._unsettled != generation or self._snapshot.refreshed:
                    return
                # An announced read may have advanced a sync published before: its state is newer.
                self._snapshot = replace(
                    previous, syncs=merged(syncs, self._snapshot.syncs, {})[0], listed=True
                )

        return publish
