"""Refresher: builds the next Snapshot from the Census API and swaps it in whole.

* Single flight: one refresh at a time; scrapes that find the snapshot older than the TTL share it.
* Budget: a scrape waits for the refresh at most as long as its budget, then gets the previous snapshot;
  the refresh goes on and the next scrape gets its result.
* Deadline: a refresh still running ``refresh_timeout_seconds`` after it started is abandoned: the snapshot
  turns ``up=False``, a new refresh may start, and whatever the abandoned one produces later is discarded
  (ledger included). Each refresh runs on its own threads, so a hung request cannot block the next one.
* Partial failure: a sync whose requests failed keeps its previous state (and ledger); ``up`` is false until a
  refresh finishes without errors.
* Budget: when the request budget cannot cover every sync within the TTL, a round reads the syncs
  :mod:`~census_exporter.refresh.schedule` plans, most urgent first; the others keep their previous state.
* First refresh: until it ends, the syncs read so far are swapped in every ``PARTIAL_PUBLISH_SECONDS``
  (the snapshot stays not ``refreshed`` and stale, so scrapes keep sharing the one running refresh).
* Absence: a sync missing from the sync list keeps its ledger and series until it is confirmed gone: its runs
  endpoint answers 404 while it is missing from the listing (it is probed every refresh while missing; a 404
  for a sync the listing still shows is an error for that sync, not proof), or it was missing from
  ``GONE_AFTER_MISSING_LISTINGS`` consecutive complete listings spanning ``GONE_AFTER_MISSING_SECONDS``.
  A listing the client reports as incomplete proves nothing about absence.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from census_exporter.census.errors import CensusAPIError
from census_exporter.census.listing import LIST_PAGE_SIZE
from census_exporter.census.models.connections import parse_connection
from census_exporter.census.models.fields import ConnectionId, bounded_text
from census_exporter.census.models.syncs import Sync, parse_sync
from census_exporter.logs import CURRENT_WORKSPACE
from census_exporter.refresh import schedule
from census_exporter.refresh.announcements import Announcements, counted_runs, known_ids
from census_exporter.refresh.one_sync import CensusAPI, RefreshSettings, SyncGone, SyncRefresh
from census_exporter.refresh.quota import SyncQuota
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.storage import LedgerFile
from census_exporter.workers import DaemonPool

log = logging.getLogger(__name__)

#: A sync missing from this many consecutive complete listings, the first at least
#: ``GONE_AFTER_MISSING_SECONDS`` ago, is dropped even though its runs endpoint still answers.
GONE_AFTER_MISSING_LISTINGS = 3
GONE_AFTER_MISSING_SECONDS = 600.0

#: Abandoned refreshes whose threads may still be waiting on the API; beyond this no new refresh starts
#: until one of them ends (the client's own timeouts end them), so a dead API cannot pile up threads.
MAX_ABANDONED_REFRESHES = 4

#: During the first refresh, the syncs read so far are published this often.
PARTIAL_PUBLISH_SECONDS = 1.0
#: Reads queued per worker at a time: enough that no worker waits for the next, few enough that thousands
#: of syncs do not each hold a future for the whole refresh.
QUEUED_READS_PER_WORKER = 4

#: A sync whose runs were not read for this many TTLs is behind (``census_data_within_bound`` turns 0): its
#: workspace's share of the request budget does not cover it.
DATA_AGE_BOUND_TTLS = 3

LIST_CHANGED_ERROR = "the sync list changed while it was being read; a sync may be missing from it"


@dataclass(frozen=True, slots=True)
class _Built:
    """A finished refresh that has not been swapped in yet: the snapshot and what to log if it is."""

    snapshot: Snapshot
    errors: tuple[CensusAPIError, ...]
    outcomes: tuple[tuple[Sync, SyncOutcome], ...]
    #: Syncs the listing held beyond the bound, and syncs the budget's plan left unread (None: not listed).
    left_out: int | None = None
    unread: int | None = None
    #: Built by an announced read (webhook events, no listing): it says nothing about the API's health.
    announced: bool = False


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
        self._restored: Mapping[int, SyncState] = restored or {}
        #: What webhooks announced (None: no receiver for this workspace); see :mod:`.announcements`.
        self._announcements = announcements
        #: Whether the running refresh is an announced read, and whether a full one was asked for meanwhile.
        self._inflight_announced = False
        self._full_wanted = False
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

    def trigger(self, *, announced: bool = False) -> Future[Snapshot]:
        """Start a refresh unless one is already running; return the running one.

        The future resolves when the refresh is swapped in or abandoned at its deadline, whichever is first.
        ``announced``: read only the syncs webhook events marked (see :mod:`.announcements`), without
        listing and without renewing the TTL; a full refresh asked for while one runs starts after it.
        """
        with self._lock:
            if self._inflight is not None and not self._inflight.done():
                if self._inflight_announced and not announced:
                    self._full_wanted = True
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
            self._inflight_announced = announced
        if self._runners is None:
            runner = threading.Thread(
                target=self._in_workspace().run,
                args=(self._start, generation, future, announced),
                name=f"census-refresh-{generation}",
                daemon=True,
            )
            runner.start()
        elif self._runners.submit(
            self._in_workspace().run, self._start, generation, future, announced
        ).cancelled():
            self._settle_unstarted(generation, future)  # the fleet is closing: no refresh thread is left
        return future

    def expected_finish(self) -> float | None:
        """When the running refresh can be expected to end (monotonic), from how long the last one took.

        None when no refresh is running. One still queued for a refresh thread is expected to wait for the
        refreshes queued before it (at most the whole backlog, shared by the fleet's refresh threads, each
        taking about as long as this workspace's last one) and then take as long as its last one; one
        already running longer than the last one took, as long again as it has run so far. With nothing to
        learn from (no refresh has finished yet), as long again as it has been asked for so far, queued or
        running: a first refresh that outlasted one scrape's budget is not waited for by every later scrape.
        """
        with self._lock:
            if self._inflight is None or self._inflight.done():
                return None
            started = self._inflight_started
            triggered = self._inflight_triggered
        last = self._snapshot.refresh_duration_seconds
        now = self._clock()
        if last is None:
            return now + (now - triggered)
        if started is None:
            queued = 0.0
            if self._runners is not None:
                queued = self._runners.backlog() / self._runners.workers * last
            return now + queued + last
        if started + last >= now:
            return started + last
        return now + (now - started)

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

    # ------------------------------------------------------------------ refresh

    def _start(self, generation: int, future: Future[Snapshot], announced: bool = False) -> None:
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
        abandon = threading.Timer(
            self._settings.refresh_timeout_seconds,
            self._in_workspace().run,
            args=(self._abandon, generation, future, started),
        )
        abandon.daemon = True
        abandon.name = f"census-deadline-{generation}"
        abandon.start()
        self._refresh_and_swap(generation, future, started, abandon, announced)

    def _settle_unstarted(self, generation: int, future: Future[Snapshot]) -> None:
        """A refresh that never got a thread (shutting down) ends with the snapshot as it is."""
        with self._lock:
            if self._unsettled == generation:
                self._unsettled = None
        if not future.done():
            future.set_result(self._snapshot)

    def _in_workspace(self) -> contextvars.Context:
        """A context whose log lines carry this workspace; one per thread (a context runs in one at once)."""
        context = contextvars.copy_context()
        context.run(CURRENT_WORKSPACE.set, self._settings.workspace)
        return context

    def _refresh_and_swap(
        self,
        generation: int,
        future: Future[Snapshot],
        started: float,
        abandon: threading.Timer,
        announced: bool = False,
    ) -> None:
        fetchers = DaemonPool(self._settings.concurrency, f"census-fetch-{generation}")
        with self._lock:
            self._pools.add(fetchers)
        built: _Built | None = None
        failure: BaseException | None = None
        previous = self._snapshot
        first = not previous.listed
        try:
            if announced:
                built = self._build_announced(previous, started, fetchers)
            else:
                built = self._build_guarded(previous, started, fetchers, generation)
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
            failure = error
        finally:
            abandon.cancel()
            fetchers.shutdown()
            with self._lock:
                self._pools.discard(fetchers)
        if built is not None and self._ledger_file is not None:
            # Before the swap: no scrape can see a count that a restart would not restore.
            self._ledger_file.save(built.snapshot, generation)
        with self._lock:
            if self._unsettled != generation:
                # Abandoned at its deadline: a newer snapshot may exist, and its ledgers must not be undone.
                self._abandoned_running -= 1
                log.debug("discarded the late result of abandoned refresh %d", generation)
                return
            self._unsettled = None
            if built is not None:
                self._snapshot = built.snapshot
                self.refresh_count += 1
                if built.left_out is not None:
                    self._note_left_out(built.left_out)
                    self.syncs_unread = built.unread
                    self.syncs_behind = self._behind(built.snapshot)
                if built.snapshot.listed:
                    self._restored = {}
        if built is None:
            future.set_exception(failure or RuntimeError("refresh ended without a result"))
            return
        if built.announced:
            self._logs.failed_runs(built.outcomes, first_refresh=False, watched=len(built.snapshot.syncs))
            future.set_result(built.snapshot)
            self._follow_up()
            return
        if built.snapshot.up:
            self._logs.succeeded()
        self._logs.failed_runs(
            built.outcomes, first_refresh=first and built.snapshot.listed, watched=len(built.snapshot.syncs)
        )
        self._logs.outcome(list(built.errors), have_data=built.snapshot.listed)
        future.set_result(built.snapshot)
        self._follow_up()

    # ------------------------------------------------------------------ webhook announcements

    def read_announced(self) -> None:
        """Read the syncs webhook events marked, now, unless a refresh is running (then right after it)."""
        announcements = self._announcements
        if announcements is None or not self._snapshot.listed or self._stopping.is_set():
            return
        if announcements.has_known(known_ids(self._snapshot.syncs)):
            self.trigger(announced=True)

    def _follow_up(self) -> None:
        """After a swap: the full refresh asked for during an announced read, else marks made meanwhile."""
        with self._lock:
            full, self._full_wanted = self._full_wanted, False
        if self._stopping.is_set():
            return
        if full:
            self.trigger()
        else:
            self.read_announced()

    def _build_announced(self, previous: Snapshot, started: float, fetchers: DaemonPool) -> _Built:
        """The previous snapshot with the marked syncs it knows read again; no listing, TTL unchanged.

        A sync whose read fails keeps its state and stays marked for the next full refresh; the error is
        logged once per sync and leaves ``up`` as it was (the next full refresh decides that).
        """
        announcements = self._announcements
        assert announcements is not None  # read_announced() checked it
        deadline = started + self._settings.refresh_timeout_seconds
        taken = announcements.take_known(known_ids(previous.syncs))
        known: dict[int, SyncState | None] = {sync_id: previous.syncs[sync_id] for sync_id in taken}
        jobs = {sync_id: previous.syncs[sync_id].sync for sync_id in taken}
        results = self._read(taken, jobs, known=known, deadline=deadline, fetchers=fetchers, publish=None)
        syncs = dict(previous.syncs)
        outcomes: list[tuple[Sync, SyncOutcome]] = []
        failed: list[int] = []
        for sync_id in taken:
            result = results.get(sync_id)
            before = previous.syncs[sync_id]
            if isinstance(result, SyncOutcome):
                outcomes.append((before.sync, result))
                syncs[sync_id] = replace(
                    result.state, missing_listings=before.missing_listings, missing_since=before.missing_since
                )
                continue
            failed.append(sync_id)
            self._logs.once(
                ("announced read failed", sync_id),
                "sync %s (%s): the read a webhook event asked for failed (%s); the next refresh reads it",
                sync_id,
                bounded_text(before.sync.label, LABEL_LOG_LIMIT),
                type(result).__name__ if result is not None else "not read",
            )
        announcements.again(failed)
        return _Built(replace(previous, syncs=syncs), (), tuple(outcomes), announced=True)

    def _abandon(self, generation: int, future: Future[Snapshot], started: float) -> None:
        """Give up on a refresh past its deadline: say so in the snapshot and let the next one start."""
        timeout = self._settings.refresh_timeout_seconds
        message = f"refresh did not finish within {timeout:g}s"
        with self._lock:
            if self._unsettled != generation or self._stopping.is_set():
                return
            self._unsettled = None
            self._abandoned_running += 1
            self._snapshot = replace(
                self._snapshot,
                up=False,
                refreshed=True,
                last_error=message,
                started_monotonic=started,
                refresh_duration_seconds=self._clock() - started,
            )
            snapshot = self._snapshot
            self._logs.abandoned(message, generation)
        future.set_result(snapshot)

    def _build_guarded(
        self, previous: Snapshot, started: float, fetchers: DaemonPool, generation: int
    ) -> _Built:
        try:
            return self._build(previous, started, fetchers, generation)
        except Exception as error:
            if self._stopping.is_set():
                raise  # shutting down: the client was closed under this refresh; nobody reads the result
            # A bug, not an API fault: keep serving the previous data and say so once.
            self._logs.unexpected_failure(error)
            snapshot = replace(
                previous,
                up=False,
                last_error=f"unexpected {type(error).__name__}",
                refreshed=True,
                started_monotonic=started,
                refresh_duration_seconds=self._clock() - started,
            )
            return _Built(snapshot, (), ())

    def _build(self, previous: Snapshot, started: float, fetchers: DaemonPool, generation: int) -> _Built:
        deadline = started + self._settings.refresh_timeout_seconds
        errors: list[CensusAPIError] = []
        listing_requests = 0

        sources, destinations, connections_at = (
            previous.source_names,
            previous.destination_names,
            previous.connections_fetched_monotonic,
        )
        if connections_at is None or started - connections_at >= self._settings.connections_ttl_seconds:
            try:
                sources = self._connection_names(self._api.list_sources(deadline).items, "source")
                destinations = self._connection_names(
                    self._api.list_destinations(deadline).items, "destination"
                )
                listing_requests += _pages(len(sources)) + _pages(len(destinations))
                connections_at = started
            except CensusAPIError as error:
                errors.append(error)

        syncs: dict[int, SyncState] | None = None
        outcomes: list[tuple[Sync, SyncOutcome]] = []
        left_out: int | None = None
        unread: list[int] = []
        try:
            listed, complete, listed_records, left_out = self._read_sync_list(previous.syncs, deadline)
        except CensusAPIError as error:
            errors.append(error)
        else:
            if not complete:
                errors.append(CensusAPIError("/syncs", LIST_CHANGED_ERROR))
            listing_requests += _pages(listed_records)
            watched = [sync for sync in listed if self._settings.syncs.admits(sync.label, sync.id)]
            if self._quota is not None:
                granted = self._quota.claim(self, len(watched))
                if granted < len(watched):
                    # Beyond the fleet's --census.max-syncs: left out like syncs beyond the workspace's bound.
                    left_out += len(watched) - granted
                    del watched[granted:]
            # Known from the listing: shown at once, not only once a long first refresh has ended.
            self._note_left_out(left_out)
            syncs = self._refresh_syncs(
                watched,
                listed_ids={sync.id for sync in listed},
                complete=complete,
                truncated=left_out > 0,
                unread=unread,
                previous=previous.syncs,
                deadline=deadline,
                errors=errors,
                outcomes=outcomes,
                fetchers=fetchers,
                allowance=self._allowance(listing_requests, first=not previous.listed),
                publish=self._publisher(previous, generation) if not previous.listed else None,
            )

        ok = not errors
        snapshot = Snapshot(
            workspace=previous.workspace,
            syncs=previous.syncs if syncs is None else syncs,
            source_names=sources,
            destination_names=destinations,
            up=ok,
            refreshed=True,
            listed=previous.listed or syncs is not None,
            last_error=None if ok else str(errors[0]),
            last_success_timestamp=self._wall_clock() if ok else previous.last_success_timestamp,
            refresh_duration_seconds=self._clock() - started,
            started_monotonic=started,
            connections_fetched_monotonic=connections_at,
            duration_buckets=previous.duration_buckets,
            api_url=previous.api_url,
        )
        return _Built(snapshot, tuple(errors), tuple(outcomes), left_out, unread[0] if unread else None)

    def _behind(self, snapshot: Snapshot) -> int:
        """Syncs of ``snapshot`` whose runs were last read (or never) more than the data-age bound before it
        started: a read of this refresh always counts as within (a TTL of 0 would otherwise make every sync
        behind)."""
        started = self._clock() if snapshot.started_monotonic is None else snapshot.started_monotonic
        oldest = started - DATA_AGE_BOUND_TTLS * self._settings.cache_ttl_seconds
        return sum(
            1
            for state in snapshot.syncs.values()
            if state.runs_read_monotonic is None or state.runs_read_monotonic < oldest
        )

    def _note_left_out(self, left_out: int) -> None:
        """Keep how many syncs the bound left out, and say once when that starts and when it ends."""
        before = self.syncs_left_out or 0
        self.syncs_left_out = left_out
        if left_out and not before:
            log.warning(
                "the sync list holds more syncs than --census.max-syncs-per-workspace or the fleet's "
                "--census.max-syncs leave room for: the first ones listed are watched, %d are left out "
                "(census_syncs_left_out)",
                left_out,
            )
        elif before and not left_out:
            log.info("every listed sync fits --census.max-syncs-per-workspace and --census.max-syncs again")

    def _still_awaited(
        self, listed_ids: set[int], complete: bool, previous: Mapping[int, SyncState], truncated: bool = False
    ) -> list[SyncState]:
        """Syncs known before but missing from this listing that are not yet confirmed gone.

        Their counts stay with them: each is probed (its runs fetched as usual) until its runs endpoint
        answers 404 or it has been missing from complete listings for the grace period. A listing cut at the
        syncs bound awaits none: a sync beyond the bound is left out, not missing.
        """
        if truncated:
            return []
        now = self._clock()
        awaited: list[SyncState] = []
        for sync_id, state in previous.items():
            if sync_id in listed_ids:
                continue
            if not complete:
                awaited.append(state)  # an incomplete listing says nothing about absence
                continue
            listings = state.missing_listings + 1
            since = now if state.missing_since is None else state.missing_since
            if listings >= GONE_AFTER_MISSING_LISTINGS and now - since >= GONE_AFTER_MISSING_SECONDS:
                log.info(
                    "sync %s (%s) has not been listed for %d refreshes; dropping its series",
                    sync_id,
                    bounded_text(state.sync.label, LABEL_LOG_LIMIT),
                    listings,
                )
                continue
            awaited.append(replace(state, missing_listings=listings, missing_since=since))
        return awaited

    def _refresh_syncs(
        self,
        listed: list[Sync],
        *,
        listed_ids: set[int],
        complete: bool,
        truncated: bool,
        unread: list[int],
        previous: Mapping[int, SyncState],
        deadline: float,
        errors: list[CensusAPIError],
        outcomes: list[tuple[Sync, SyncOutcome]],
        fetchers: DaemonPool,
        allowance: int | None,
        publish: Callable[[Mapping[int, SyncState]], None] | None,
    ) -> dict[int, SyncState]:
        # A sync listed but not watched (the include/exclude filter) is dropped at once, not awaited.
        awaited = self._still_awaited(listed_ids, complete, self._known_before(previous), truncated)
        listed_ids = {sync.id for sync in listed}
        known: dict[int, SyncState | None] = {
            sync.id: previous.get(sync.id) or self._restored_state(sync) for sync in listed
        }
        for state in awaited:
            known[state.sync.id] = state
        jobs = {sync.id: sync for sync in [*listed, *(state.sync for state in awaited)]}
        # Unread syncs are planned as they were (a new one: never read); the plan orders the reads too.
        candidates = [_planned_as(known[sync.id], sync) for sync in jobs.values()]
        announced: list[int] = []
        if self._announcements is not None:
            # Announced syncs first, ahead of the budget's priorities; the rest as reconciling allows.
            announced, candidates = self._announcements.arrange(candidates)
        chosen = schedule.plan(candidates, allowance, self._wall_clock(), self._settings.cache_ttl_seconds)
        unread.append(len(candidates) - len(chosen))
        planned = announced + chosen
        results = self._read(
            planned, jobs, known=known, deadline=deadline, fetchers=fetchers, publish=publish
        )
        if self._announcements is not None:
            unasked = set(announced)
            self._announcements.polled(
                sync_id
                for sync_id, result in results.items()
                if sync_id not in unasked
                and isinstance(result, SyncOutcome)
                and counted_runs(known[sync_id], result.state)
            )
            self._announcements.again(
                sync_id
                for sync_id in announced
                if sync_id in listed_ids and not isinstance(results.get(sync_id), SyncOutcome)
            )
        states: dict[int, SyncState] = {}
        for sync in jobs.values():
            kept = known[sync.id]
            # Listed syncs start over as present; missing ones carry their absence forward.
            absent_from = kept.missing_listings if kept and sync.id not in listed_ids else 0
            absent_since = kept.missing_since if kept and sync.id not in listed_ids else None
            result = results.pop(sync.id, None)
            try:
                if result is None:
                    raise _NotPlanned
                if isinstance(result, BaseException):
                    raise result
                outcome = result
            except _NotPlanned:
                pass  # left for a later round by the plan
            except SyncGone:
                if sync.id in listed_ids:
                    # Still listed: one 404 is a fault of this refresh, not proof that the sync is gone.
                    errors.append(
                        CensusAPIError(
                            "/syncs/{id}/sync_runs",
                            f"sync {sync.id}: not found (404) although it is listed",
                            404,
                        )
                    )
                    self._logs.once(
                        ("404 while listed", sync.id),
                        "sync %s (%s): its runs answered 404 although it is listed; keeping its data",
                        sync.id,
                        bounded_text(sync.label, LABEL_LOG_LIMIT),
                    )
                else:
                    self._logs.once(
                        ("gone", sync.id),
                        "sync %s (%s) is gone (404); dropping its series",
                        sync.id,
                        bounded_text(sync.label, LABEL_LOG_LIMIT),
                        level=logging.INFO,
                    )
                    continue
            except CensusAPIError as error:
                errors.append(error)
            except Exception as error:
                if self._stopping.is_set():
                    raise
                # A bug met by one sync must not cost the others their refresh: that sync keeps its data.
                errors.append(
                    CensusAPIError(
                        "/syncs/{id}/sync_runs",
                        f"sync {sync.id}: unexpected {type(error).__name__}: {error}",
                    )
                )
                self._logs.once(
                    ("bug", sync.id, type(error).__name__),
                    "sync %s (%s): refresh failed unexpectedly: %s: %s",
                    sync.id,
                    bounded_text(sync.label, LABEL_LOG_LIMIT),
                    type(error).__name__,
                    error,
                    level=logging.ERROR,
                )
            else:
                outcomes.append((sync, outcome))
                state = outcome.state
                if (state.missing_listings, state.missing_since) != (absent_from, absent_since):
                    state = replace(state, missing_listings=absent_from, missing_since=absent_since)
                states[sync.id] = state
                continue
            # Not read this round, or its requests failed: it keeps what the previous snapshot knew of it.
            states[sync.id] = replace(
                kept or SyncState(sync=sync),
                sync=sync,
                missing_listings=absent_from,
                missing_since=absent_since,
            )
        return dict(sorted(states.items()))

    def _restored_state(self, sync: Sync) -> SyncState | None:
        """A listed sync's state as restored from storage (its ledger only), if the storage held it."""
        restored = self._restored.get(sync.id)
        return None if restored is None else SyncState(sync=sync, ledger=restored.ledger)

    def _known_before(self, previous: Mapping[int, SyncState]) -> Mapping[int, SyncState]:
        """The syncs known before this listing: the previous snapshot's, and until a listing has been swapped
        in, the watched syncs restored from storage (a listing that misses one after a restart is one
        missing listing, with the same grace and 404 probe, not a loss of its ledger)."""
        if not self._restored:
            return previous
        admits = self._settings.syncs.admits
        restored = {
            sync_id: state
            for sync_id, state in self._restored.items()
            if sync_id not in previous and admits(state.sync.label, sync_id)
        }
        return {**restored, **previous} if restored else previous

    def _allowance(self, listing_requests: int, *, first: bool) -> int | None:
        """Sync reads this round may plan: the workspace's share of the budget over the round's time."""
        interval = self._settings.request_interval_seconds
        if interval is None:
            return None
        settings = self._settings
        seconds = schedule.planning_seconds(
            settings.cache_ttl_seconds, settings.refresh_timeout_seconds, first=first
        )
        return schedule.round_allowance(int(seconds / interval), self._workspaces(), listing_requests)

    def _publisher(self, previous: Snapshot, generation: int) -> Callable[[Mapping[int, SyncState]], None]:
        """Swaps in the syncs read so far while refresh ``generation`` (the first) is still the current one.

        The partial snapshot is neither ``refreshed`` nor fresh: scrapes keep waiting on (and sharing) the one
        running refresh, which replaces it whole at its end. Its ledgers are the baselines that refresh reads,
        so if it is abandoned the next refresh counts on from them exactly as it would from its result.
        """

        def publish(syncs: Mapping[int, SyncState]) -> None:
            with self._lock:
                if self._unsettled != generation or self._snapshot.refreshed:
                    return
                self._snapshot = replace(previous, syncs=syncs, listed=True)

        return publish

    def _read(
        self,
        planned: Iterable[int],
        jobs: Mapping[int, Sync],
        *,
        known: Mapping[int, SyncState | None],
        deadline: float,
        fetchers: DaemonPool,
        publish: Callable[[Mapping[int, SyncState]], None] | None,
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
                    publish(self._read_so_far(results, known, jobs))

    @staticmethod
    def _read_so_far(
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

    def _read_sync_list(
        self, previous: Mapping[int, SyncState], deadline: float
    ) -> tuple[list[Sync], bool, int, int]:
        """The listed syncs, whether the listing was consistent, how many records it held, and how many it
        left out beyond the client's bound.

        The raw records end with this call, not with the refresh: at thousands of syncs they weigh more than
        everything the snapshot keeps. A sync unchanged since the last refresh is the previous object, so
        the old and the new snapshot share it instead of holding two copies.
        """
        listing = self._api.list_syncs(deadline)
        syncs: dict[int, Sync] = {}
        for parsed in self._logs.usable(listing.items, parse_sync, "sync"):
            if parsed.id not in syncs:
                before = previous.get(parsed.id)
                syncs[parsed.id] = before.sync if before is not None and before.sync == parsed else parsed
        return list(syncs.values()), listing.complete, len(listing.items), listing.left_out

    def _connection_names(self, raw: list[Any], kind: str) -> dict[ConnectionId, str]:
        return {parsed.id: parsed.name for parsed in self._logs.usable(raw, parse_connection, kind)}


def _planned_as(kept: SyncState | None, sync: Sync) -> SyncState:
    """The state the plan orders ``sync`` by: as it was known, with the listing's definition."""
    if kept is not None and kept.sync is sync:
        return kept
    return replace(kept or SyncState(sync=sync), sync=sync)


class _NotPlanned(Exception):
    """The sync was left out of this round by the request budget's plan."""


def _pages(records: int) -> int:
    """List pages read for ``records`` records (one even when the list is empty)."""
    return max(1, -(-records // LIST_PAGE_SIZE))
