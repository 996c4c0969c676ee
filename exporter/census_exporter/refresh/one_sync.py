"""SyncRefresh: the next state of one sync, from its runs pages and, by id, pending runs that scrolled away.

No threads and no snapshot here: the refresher calls :meth:`SyncRefresh.run` for each sync on its own
workers and decides what to keep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from census_exporter import defaults
from census_exporter.census.client import Listing, NotFoundError, RunsPage
from census_exporter.census.models import Sync, SyncRun, bounded_text, parse_sync_run
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.snapshot import SyncState
from census_exporter.state import DEFAULT_DURATION_BUCKETS, SyncLedger

log = logging.getLogger(__name__)


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
    cache_ttl_seconds: float = defaults.CACHE_TTL_SECONDS
    concurrency: int = defaults.CONCURRENCY
    refresh_timeout_seconds: float = defaults.REFRESH_TIMEOUT_SECONDS
    runs_page_size: int = 25
    max_new_runs_per_sync: int = 500
    max_pending_lookups_per_sync: int = 50
    connections_ttl_seconds: float = 600.0
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS


class SyncGone(Exception):
    """The sync's runs endpoint answered 404."""


class SyncRefresh:
    """Pages one sync's runs back to the last known one and advances its ledger."""

    def __init__(self, api: CensusAPI, settings: RefreshSettings, logs: RefreshLog) -> None:
        self._api = api
        self._settings = settings
        self._logs = logs

    def run(self, sync: Sync, previous: SyncState | None, deadline: float) -> SyncOutcome:
        """The sync's next state; raises :class:`SyncGone` on 404 and ``CensusAPIError`` on other faults."""
        ledger = previous.ledger if previous else None
        fetched: dict[int, SyncRun] = {}
        first_page: list[SyncRun] = []
        unusable_first_page = False
        page, new_runs = 1, 0
        while True:
            try:
                result = self._api.list_sync_runs(sync.id, page, self._settings.runs_page_size, deadline)
            except NotFoundError:
                raise SyncGone from None
            runs = self._logs.usable(result.items, parse_sync_run, "run", sync.id)
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
                    bounded_text(sync.label, LABEL_LOG_LIMIT),
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
        unfinished = [
            pending.created_at
            for pending in (fetched.get(run_id) for run_id in new_ledger.pending_run_ids)
            if pending is not None and pending.created_at is not None
        ]
        state = SyncState(
            sync=sync,
            latest_run=latest,
            ledger=new_ledger,
            oldest_unfinished_created_at=min(unfinished, default=None),
        )
        failed = tuple(run for run in counted if run.status == "failed")
        return SyncOutcome(state, failed, baseline=ledger is None)

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
            for run in self._logs.usable([raw], parse_sync_run, "run", sync.id):
                fetched[run.id] = run
        return gone
