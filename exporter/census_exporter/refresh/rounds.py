"""One full refresh round: list the syncs, plan the reads the budget allows, read them, build the snapshot.

* Listing: the connections (every ``connections_ttl_seconds``) and the sync list; a sync unchanged since the
  last listing is the previous object, so two snapshots share it.
* Plan: webhook-announced syncs first (:mod:`.announcements`), then what
  :mod:`~census_exporter.refresh.schedule` plans within the workspace's share of the budget; the others keep
  their previous state.
* Reading: a window of reads queued at a time on the round's fetchers; with ``publish`` (the first refresh),
  the syncs read so far are handed over every ``PARTIAL_PUBLISH_SECONDS`` (:mod:`.reading`).
* Partial failure: a sync whose requests failed keeps its previous state (and ledger); its error is the
  round's, so ``up`` is false.
* Absence: syncs missing from the listing are awaited (:mod:`.absence`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from census_exporter.census.errors import CensusAPIError
from census_exporter.census.listing import LIST_PAGE_SIZE
from census_exporter.census.models.connections import parse_connection
from census_exporter.census.models.fields import ConnectionId, bounded_text
from census_exporter.census.models.syncs import Sync, parse_sync
from census_exporter.ledger import SyncLedger
from census_exporter.refresh import schedule
from census_exporter.refresh.absence import known_before, restored_state, still_awaited
from census_exporter.refresh.announcements import Announcements, counted_runs
from census_exporter.refresh.one_sync import CensusAPI, RefreshSettings, SyncGone, SyncRefresh
from census_exporter.refresh.quota import SyncQuota
from census_exporter.refresh.reading import Publish, SyncReads
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.workers import DaemonPool

log = logging.getLogger("census_exporter.refresh.refresher")

LIST_CHANGED_ERROR = "the sync list changed while it was being read; a sync may be missing from it"


@dataclass(frozen=True, slots=True)
class Built:
    """A finished refresh that has not been swapped in yet: the snapshot and what to log if it is."""

    snapshot: Snapshot
    errors: tuple[CensusAPIError, ...]
    outcomes: tuple[tuple[Sync, SyncOutcome], ...]
    #: Syncs the listing held beyond the bound, and syncs the budget's plan left unread (None: not listed).
    left_out: int | None = None
    unread: int | None = None
    #: Each sync's ledger as the round started from it (None: never read), to tell at the swap which syncs
    #: an announced read advanced meanwhile (:func:`~census_exporter.refresh.announced.merged`).
    bases: Mapping[int, SyncLedger | None] = field(default_factory=dict)
    #: Syncs whose runs this round counted although no event asked for their read (they await an event),
    #: each with the newest run the read counted, to tell whether an event announced it already.
    found: Mapping[int, int | None] = field(default_factory=dict)


class RoundReader:
    """Builds one workspace's full refresh rounds (and reads the syncs webhook events announced)."""

    def __init__(
        self,
        api: CensusAPI,
        settings: RefreshSettings,
        logs: RefreshLog,
        one_sync: SyncRefresh,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        stopping: threading.Event,
        workspaces: Callable[[], int],
        announcements: Announcements | None,
        quota: SyncQuota | None,
        claimant: object,
        note_left_out: Callable[[int], None],
        restored: Mapping[int, SyncState],
    ) -> None:
        self._api = api
        self._settings = settings
        self._logs = logs
        #: Reads the planned syncs, a window at a time (:mod:`.reading`); the announced reads use it too.
        self.read = SyncReads(one_sync, settings, stopping).read
        self._clock = clock
        self._wall_clock = wall_clock
        self._stopping = stopping
        self._workspaces = workspaces
        self._announcements = announcements
        self._quota = quota
        #: Who claims the syncs from the fleet's quota (the refresher: it releases them).
        self._claimant = claimant
        self._note_left_out = note_left_out
        #: What the storage held at start (each sync's ledger and definition): the first refresh that lists
        #: the syncs continues from these ledgers, and awaits a restored sync it does not list like any
        #: missing sync. Emptied once a listing is swapped in.
        self.restored = restored

    def build(
        self, previous: Snapshot, started: float, fetchers: DaemonPool, publish: Publish | None
    ) -> Built:
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
        bases: dict[int, SyncLedger | None] = {}
        found: dict[int, int | None] = {}
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
                granted = self._quota.claim(self._claimant, len(watched))
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
                publish=publish,
                bases=bases,
                found=found,
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
        unread_count = unread[0] if unread else None
        return Built(snapshot, tuple(errors), tuple(outcomes), left_out, unread_count, bases, found)

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
        publish: Publish | None,
        bases: dict[int, SyncLedger | None],
        found: dict[int, int | None],
    ) -> dict[int, SyncState]:
        # A sync listed but not watched (the include/exclude filter) is dropped at once, not awaited.
        known_earlier = known_before(previous, self.restored, self._settings.syncs.admits)
        awaited = still_awaited(listed_ids, complete, known_earlier, truncated, self._clock())
        listed_ids = {sync.id for sync in listed}
        known: dict[int, SyncState | None] = {
            sync.id: previous.get(sync.id) or restored_state(self.restored, sync) for sync in listed
        }
        for state in awaited:
            known[state.sync.id] = state
        bases.update((sync_id, None if state is None else state.ledger) for sync_id, state in known.items())
        jobs = {sync.id: sync for sync in [*listed, *(state.sync for state in awaited)]}
        # Unread syncs are planned as they were (a new one: never read); the plan orders the reads too.
        candidates = [_planned_as(known[sync.id], sync) for sync in jobs.values()]
        announced: list[int] = []
        if self._announcements is not None:
            # Announced syncs it must read first, ahead of the budget's priorities; the rest as reconciling
            # allows (the announced reads take the other announced syncs, beside this round).
            announced, candidates = self._announcements.arrange(candidates)
        chosen = schedule.plan(candidates, allowance, self._wall_clock(), self._settings.cache_ttl_seconds)
        unread.append(len(candidates) - len(chosen))
        planned = announced + chosen
        results = self.read(planned, jobs, known=known, deadline=deadline, fetchers=fetchers, publish=publish)
        if self._announcements is not None:
            unasked = set(announced)
            # Noted as polled at the swap, unless an announced read advanced the sync meanwhile.
            found.update(
                (sync_id, result.newest_counted_run_id)
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
