"""Refresher: builds the next Snapshot from the Census API and swaps it in whole.

* Single flight: one refresh at a time; scrapes that find the snapshot older than the TTL share it.
* Budget: a scrape waits for the refresh at most as long as its budget, then gets the previous snapshot;
  the refresh goes on and the next scrape gets its result.
* Partial failure: a sync whose requests failed keeps its previous state (and ledger); ``up`` is false until a
  refresh finishes without errors. A sync whose runs answer 404 is gone and is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cachetools import TTLCache

from census_exporter.census.client import AuthError, CensusAPIError, Listing, NotFoundError, RunsPage
from census_exporter.census.models import (
    Connection,
    Skipped,
    Sync,
    SyncRun,
    parse_connection,
    parse_sync,
    parse_sync_run,
)
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.state import DEFAULT_DURATION_BUCKETS, SyncLedger
from census_exporter.workers import DaemonPool

log = logging.getLogger(__name__)

ERROR_MESSAGE_LOG_LIMIT = 200


class CensusAPI(Protocol):
    """What the refresher needs from the client (the real one is :class:`CensusClient`)."""

    def list_syncs(self, deadline: float) -> Listing: ...
    def list_sources(self, deadline: float) -> Listing: ...
    def list_destinations(self, deadline: float) -> Listing: ...
    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage: ...
    def get_sync_run(self, run_id: int, deadline: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    """Tuning of the refresh; the defaults are the documented ones."""

    workspace: str = "default"
    cache_ttl_seconds: float = 60.0
    concurrency: int = 8
    refresh_timeout_seconds: float = 60.0
    runs_page_size: int = 25
    max_new_runs_per_sync: int = 500
    max_pending_lookups_per_sync: int = 50
    connections_ttl_seconds: float = 600.0
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS


class _SyncGone(Exception):
    """The sync's runs endpoint answered 404."""


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
    ) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._snapshot = Snapshot(workspace=settings.workspace, duration_buckets=settings.duration_buckets)
        self._lock = threading.Lock()
        self._inflight: Future[Snapshot] | None = None
        self._runner = DaemonPool(1, "census-refresh")
        self._fetchers = DaemonPool(settings.concurrency, "census-fetch")
        # Set by close(); shared with whoever else must stop waiting then (the client's retry backoff).
        self._stopping = stopping or threading.Event()
        self._logged_once: TTLCache[tuple[object, ...], bool] = TTLCache(maxsize=10_000, ttl=3600)
        self._last_error_signature: frozenset[str] = frozenset()
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
        """Start a refresh unless one is already running; return the running one."""
        with self._lock:
            if self._inflight is None or self._inflight.done():
                self._inflight = self._runner.submit(self._refresh_and_swap)
            return self._inflight

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
        self._runner.shutdown()
        self._fetchers.shutdown()

    # ------------------------------------------------------------------ refresh

    def _refresh_and_swap(self) -> Snapshot:
        started = self._clock()
        try:
            snapshot = self._build(self._snapshot, started)
        except Exception as error:
            if self._stopping.is_set():
                raise  # shutting down: the client was closed under this refresh; nobody reads the result
            # A bug, not an API fault: keep serving the previous data and say so once.
            log.error(
                "refresh failed unexpectedly: %s: %s",
                type(error).__name__,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            snapshot = replace(
                self._snapshot,
                up=False,
                last_error=f"unexpected {type(error).__name__}",
                refreshed=True,
                started_monotonic=started,
                refresh_duration_seconds=self._clock() - started,
            )
        self._snapshot = snapshot
        self.refresh_count += 1
        return snapshot

    def _build(self, previous: Snapshot, started: float) -> Snapshot:
        deadline = started + self._settings.refresh_timeout_seconds
        errors: list[CensusAPIError] = []

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
                connections_at = started
            except CensusAPIError as error:
                errors.append(error)

        syncs: dict[int, SyncState] | None = None
        try:
            listed = self._parse_syncs(self._api.list_syncs(deadline).items)
        except CensusAPIError as error:
            errors.append(error)
        else:
            syncs = self._refresh_syncs(listed, previous.syncs, deadline, errors)

        ok = not errors
        self._report(errors)
        return Snapshot(
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
        )

    def _refresh_syncs(
        self,
        listed: list[Sync],
        previous: Mapping[int, SyncState],
        deadline: float,
        errors: list[CensusAPIError],
    ) -> dict[int, SyncState]:
        futures = {
            sync.id: self._fetchers.submit(self._refresh_sync, sync, previous.get(sync.id), deadline)
            for sync in listed
        }
        states: dict[int, SyncState] = {}
        for sync in listed:
            try:
                states[sync.id] = futures[sync.id].result()
                continue
            except _SyncGone:
                self._log_once(
                    ("gone", sync.id),
                    "sync %s (%s) is gone (404); dropping its series",
                    sync.id,
                    sync.label,
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
                self._log_once(
                    ("bug", sync.id, type(error).__name__),
                    "sync %s (%s): refresh failed unexpectedly: %s: %s",
                    sync.id,
                    sync.label,
                    type(error).__name__,
                    error,
                    level=logging.ERROR,
                )
            # Its requests failed: the sync keeps what the previous snapshot knew of it.
            kept = previous.get(sync.id)
            states[sync.id] = replace(kept, sync=sync) if kept else SyncState(sync=sync)
        return dict(sorted(states.items()))

    def _refresh_sync(self, sync: Sync, previous: SyncState | None, deadline: float) -> SyncState:
        ledger = previous.ledger if previous else None
        fetched: dict[int, SyncRun] = {}
        first_page: list[SyncRun] = []
        unusable_first_page = False
        page, new_runs = 1, 0
        while True:
            try:
                result = self._api.list_sync_runs(sync.id, page, self._settings.runs_page_size, deadline)
            except NotFoundError:
                raise _SyncGone from None
            runs = self._parse_runs(sync, result.items)
            if page == 1:
                first_page = runs
                unusable_first_page = bool(result.items) and not runs
            reached_known = False
            for run in runs:
                if run.id in fetched:
                    continue
                fetched[run.id] = run
                if ledger is not None and ledger.knows(run.id):
                    reached_known = True
                else:
                    new_runs += 1
            if ledger is None or reached_known or not result.has_more:
                break
            if new_runs >= self._settings.max_new_runs_per_sync:
                log.warning(
                    "sync %s (%s): more than %d new runs since the last refresh; older ones are not counted",
                    sync.id,
                    sync.label,
                    self._settings.max_new_runs_per_sync,
                )
                break
            page += 1

        latest = max(first_page, key=lambda run: (run.created_at or 0.0, run.id), default=None)
        if unusable_first_page and previous is not None:
            # Records came back but none could be parsed: that says nothing new about the newest run.
            latest = previous.latest_run
        if ledger is None:
            new_ledger = SyncLedger.baseline(fetched.values(), self._settings.duration_buckets)
            counted: Iterable[SyncRun] = [latest] if latest and latest.status == "failed" else []
        else:
            gone = self._fetch_missing_pending(sync, ledger, fetched, deadline)
            update = ledger.advance(fetched.values(), gone)
            new_ledger, counted = update.ledger, update.counted
        for run in counted:
            if run.status == "failed":
                self._log_failed_run(sync, run)
        unfinished = [
            pending.created_at
            for pending in (fetched.get(run_id) for run_id in new_ledger.pending_run_ids)
            if pending is not None and pending.created_at is not None
        ]
        return SyncState(
            sync=sync,
            latest_run=latest,
            ledger=new_ledger,
            oldest_unfinished_created_at=min(unfinished, default=None),
        )

    def _fetch_missing_pending(
        self, sync: Sync, ledger: SyncLedger, fetched: dict[int, SyncRun], deadline: float
    ) -> list[int]:
        """Fetch, by id, pending runs that scrolled out of the pages; return the ids the API lost."""
        gone: list[int] = []
        missing = sorted(ledger.pending_missing_from(fetched))
        for run_id in missing[: self._settings.max_pending_lookups_per_sync]:
            try:
                raw = self._api.get_sync_run(run_id, deadline)
            except NotFoundError:
                log.info("sync %s: pending run %s no longer exists; not counting it", sync.id, run_id)
                gone.append(run_id)
                continue
            parsed = parse_sync_run(raw)
            if isinstance(parsed, Skipped):
                self._log_once(("run", sync.id, parsed.reason), "sync %s: %s", sync.id, parsed.reason)
            else:
                fetched[parsed.id] = parsed
        return gone

    # ------------------------------------------------------------------ parsing & logging

    def _parse_syncs(self, raw_syncs: list[Any]) -> list[Sync]:
        syncs: dict[int, Sync] = {}
        for raw in raw_syncs:
            parsed = parse_sync(raw)
            if isinstance(parsed, Skipped):
                self._log_once(("sync", parsed.reason), "skipping a sync record: %s", parsed.reason)
            else:
                syncs.setdefault(parsed.id, parsed)
        return list(syncs.values())

    def _parse_runs(self, sync: Sync, raw_runs: list[Any]) -> list[SyncRun]:
        runs: list[SyncRun] = []
        for raw in raw_runs:
            parsed = parse_sync_run(raw)
            if isinstance(parsed, Skipped):
                self._log_once(
                    ("run", sync.id, parsed.reason),
                    "sync %s (%s): skipping a run record: %s",
                    sync.id,
                    sync.label,
                    parsed.reason,
                )
            else:
                runs.append(parsed)
        return runs

    def _connection_names(self, raw: list[Any], kind: str) -> dict[int, str]:
        names: dict[int, str] = {}
        for item in raw:
            parsed = parse_connection(item)
            if isinstance(parsed, Connection):
                names[parsed.id] = parsed.name
            else:
                self._log_once((kind, parsed.reason), "skipping a %s record: %s", kind, parsed.reason)
        return names

    def _log_once(
        self, key: tuple[object, ...], message: str, *args: object, level: int = logging.WARNING
    ) -> None:
        """Log ``message`` unless the same ``key`` was logged within the last hour."""
        if key not in self._logged_once:
            self._logged_once[key] = True
            log.log(level, message, *args)

    def _log_failed_run(self, sync: Sync, run: SyncRun) -> None:
        message = run.error_message or ""
        if len(message) > ERROR_MESSAGE_LOG_LIMIT:
            message = message[:ERROR_MESSAGE_LOG_LIMIT] + "..."
        log.warning(
            "sync run failed: sync_id=%s label=%r run_id=%s error_code=%s error_message=%r",
            sync.id,
            sync.label,
            run.id,
            run.error_code or "",
            message,
        )

    def _report(self, errors: list[CensusAPIError]) -> None:
        """Log the refresh outcome when it differs from the previous one (not on every refresh)."""
        signature = frozenset(str(error) for error in errors)
        if signature == self._last_error_signature:
            return
        had_errors = bool(self._last_error_signature)
        self._last_error_signature = signature
        if not errors:
            if had_errors:
                log.info("Census API refresh succeeded again")
            return
        auth = next((error for error in errors if isinstance(error, AuthError)), None)
        if auth is not None:
            log.error(
                "Census API rejected the token (%s): check CENSUS_API_TOKEN or --census.token-file",
                auth.status,
            )
            return
        log.warning(
            "Census API refresh incomplete, serving previous data where needed: %d error(s), first: %s",
            len(errors),
            errors[0],
        )
