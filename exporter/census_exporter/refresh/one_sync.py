"""SyncRefresh: the next state of one sync, from its runs pages and, by id, pending runs that scrolled away.

No threads and no snapshot here: the refresher calls :meth:`SyncRefresh.run` for each sync on its own
workers and decides what to keep.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

from census_exporter import defaults
from census_exporter.census.errors import AuthError, CensusAPIError, NotFoundError
from census_exporter.census.listing import Listing, RunsPage
from census_exporter.census.models.fields import bounded_text
from census_exporter.census.models.runs import UNREPORTED_STATUS, SyncRun, parse_sync_run
from census_exporter.census.models.syncs import Sync
from census_exporter.config import SyncFilter
from census_exporter.ledger import (
    DEFAULT_DURATION_BUCKETS,
    MAX_PENDING_RUNS_PER_SYNC,
    LedgerUpdate,
    SyncLedger,
    plausible_runs,
)
from census_exporter.refresh.reporting import ERROR_CODE_LOG_LIMIT, LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.snapshot import SyncState

log = logging.getLogger(__name__)

#: A run time further ahead of the exporter's clock than this is not trusted (it is treated as unknown): one
#: run created "in 2098" must not stay the newest run, or pin a success, for decades.
CLOCK_SKEW_SECONDS = 300.0
#: Distinct ``error_code`` label values one sync may show within :data:`ERROR_CODE_WINDOW_SECONDS`; a further
#: new code shows as ``other`` (and is logged): a sync inventing a code per run cannot add a series a run.
MAX_ERROR_CODES_PER_HOUR = 5
ERROR_CODE_WINDOW_SECONDS = 3600.0
_NO_CODES: Mapping[str, float] = MappingProxyType({})
#: Pages of runs the first read of a sync goes back, at most, while none of them completed: how far back a
#: sync that has been failing for a long time shows that nothing succeeded (``no_success_since``). 12 pages
#: of 25 cover a day of runs every 5 minutes.
FIRST_READ_PAGES_WITHOUT_SUCCESS = 12
#: ... and it stops once the runs read go back this far: CensusSyncNotSucceededRecently's default threshold
#: (24 h) and its ``for:`` (15 m) with a margin, so a sync failing for days pages within ``for:`` of a start.
FIRST_READ_LOOKBACK_SECONDS = 25 * 3600.0


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
    #: Which listed syncs are watched (include/exclude regexes on the label); the others are left out.
    syncs: SyncFilter = field(default_factory=SyncFilter)
    #: The API base URL, shown on the landing page (validated to hold no credentials).
    api_url: str | None = None
    #: Seconds between two tokens of the process's request budget (None: no budget); each workspace plans
    #: on its share of them (see :mod:`census_exporter.refresh.schedule`).
    request_interval_seconds: float | None = None


class SyncGone(Exception):
    """The sync's runs endpoint answered 404."""


class SyncRefresh:
    """Pages one sync's runs back to the last known one and advances its ledger."""

    def __init__(
        self,
        api: CensusAPI,
        settings: RefreshSettings,
        logs: RefreshLog,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._clock = clock
        self._wall_clock = wall_clock
        self._settings = settings
        self._logs = logs

    def max_pages(self) -> int:
        """Pages of one sync's runs read per refresh at most: enough for ``max_new_runs_per_sync`` and the
        known run that ends the paging, so a server that ignores ``page`` cannot keep a refresh paging."""
        page_size = max(1, self._settings.runs_page_size)
        return -(-self._settings.max_new_runs_per_sync // page_size) + 2

    def run(self, sync: Sync, previous: SyncState | None, deadline: float) -> SyncOutcome:
        """The sync's next state; raises :class:`SyncGone` on 404 and ``CensusAPIError`` on other faults."""
        ledger = previous.ledger if previous else None
        label = bounded_text(sync.label, LABEL_LOG_LIMIT)
        now = self._wall_clock()
        fetched: dict[int, SyncRun] = {}
        first_page: list[SyncRun] = []
        unusable_first_page = False
        page, new_runs = 1, 0
        while True:
            try:
                result = self._api.list_sync_runs(sync.id, page, self._settings.runs_page_size, deadline)
            except NotFoundError:
                raise SyncGone from None
            except CensusAPIError as error:
                if ledger is None and page > 1 and not isinstance(error, AuthError):
                    # Paging back at a first read is a bonus: the pages already read make a baseline, and
                    # failing the whole read would leave the sync without any run data, every round.
                    self._logs.once(
                        ("first read paging", sync.id),
                        "sync %s (%s): runs page %d failed (%s) while paging back at the first read; "
                        "the newer pages make the baseline",
                        sync.id,
                        label,
                        page,
                        type(error).__name__,
                    )
                    break
                raise
            runs = self._own_runs(sync, self._logs.usable(result.items, parse_sync_run, "run", sync.id))
            runs = [self._plausible(sync, run, now) for run in runs]
            if page == 1:
                first_page = runs
                unusable_first_page = bool(result.items) and not runs
            reached_known, brought_new = False, False
            for run in runs:
                if run.id in fetched:
                    continue
                fetched[run.id] = run
                brought_new = True
                if ledger is not None and ledger.knows(run.id):
                    reached_known = True
                else:
                    new_runs += 1
            if ledger is None and self._first_read_goes_back(fetched.values(), page, result.has_more, now):
                page += 1
                continue
            if ledger is None or reached_known or not result.has_more:
                break
            if not brought_new:
                # The same page again, or nothing parseable: further pages would only repeat that.
                self._logs.once(
                    ("paging stopped", sync.id),
                    "sync %s (%s): runs page %d brought no run not already read; stopped paging",
                    sync.id,
                    label,
                    page,
                )
                break
            if new_runs >= self._settings.max_new_runs_per_sync or page >= self.max_pages():
                self._logs.once(
                    ("too many new runs", sync.id),
                    "sync %s (%s): more than %d new runs (or %d pages) since the last refresh; "
                    "older ones are not counted",
                    sync.id,
                    label,
                    self._settings.max_new_runs_per_sync,
                    self.max_pages(),
                )
                break
            page += 1

        latest = newest_run(first_page)
        if unusable_first_page and previous is not None:
            # Records came back but none could be parsed: that says nothing new about the newest run.
            latest = previous.latest_run
        elif (
            latest is not None
            and latest.status == UNREPORTED_STATUS
            and previous is not None
            and previous.latest_run is not None
            and previous.latest_run.id == latest.id
        ):
            # A status that briefly reads null says nothing new either: keep the one last reported.
            latest = previous.latest_run
        if previous is not None and latest is not None and latest == previous.latest_run:
            # The same run as last time: share the old object rather than keep one copy per snapshot.
            latest = previous.latest_run
        if ledger is None:
            new_ledger = SyncLedger.baseline(fetched.values(), self._settings.duration_buckets, now)
            counted: Iterable[SyncRun] = [latest] if latest and latest.status == "failed" else []
        else:
            gone, last_lookup = self._fetch_missing_pending(sync, ledger, fetched, deadline, now)
            update = ledger.advance(fetched.values(), gone, last_lookup, now)
            new_ledger, counted = update.ledger, update.counted
            self._report(sync, update)
        codes = [latest.error_code if latest else None]
        if new_ledger.failing:
            codes.append(new_ledger.failing_error_code)
        shown = self._shown_error_codes(sync, previous, codes, now)
        state = SyncState(
            sync=sync,
            latest_run=latest,
            ledger=new_ledger,
            shown_error_codes=shown,
            oldest_unfinished_created_at=_oldest_unfinished(new_ledger, fetched),
            runs_read_monotonic=self._clock(),
            runs_read_timestamp=self._wall_clock(),
            read_sync=sync,
        )
        failed = tuple(run for run in counted if run.status == "failed")
        newest_counted = max((run.id for run in counted), default=None) if ledger is not None else None
        return SyncOutcome(state, failed, baseline=ledger is None, newest_counted_run_id=newest_counted)

    def _shown_error_codes(
        self, sync: Sync, previous: SyncState | None, codes: Iterable[str | None], now: float
    ) -> Mapping[str, float]:
        """The error codes the sync may show from now on: those shown within the last hour, plus each of
        ``codes`` while fewer than :data:`MAX_ERROR_CODES_PER_HOUR` are; a code refused is logged once."""
        before = previous.shown_error_codes if previous is not None else _NO_CODES
        window = {code: at for code, at in before.items() if now - at < ERROR_CODE_WINDOW_SECONDS}
        for code in codes:
            if not code:
                continue
            if code in window or len(window) < MAX_ERROR_CODES_PER_HOUR:
                window[code] = now
                continue
            self._logs.once(
                ("error codes capped", sync.id),
                "sync %s (%s): more than %d distinct error codes within an hour; error code %r and further "
                'new ones are shown as error_code="other" for now (each failed run\'s own code is in its '
                '"sync run failed" line)',
                sync.id,
                bounded_text(sync.label, LABEL_LOG_LIMIT),
                MAX_ERROR_CODES_PER_HOUR,
                bounded_text(code, ERROR_CODE_LOG_LIMIT),
            )
        return MappingProxyType(window) if window else _NO_CODES

    def _first_read_goes_back(self, runs: Collection[SyncRun], page: int, has_more: bool, now: float) -> bool:
        """At a sync's first read: whether to read one more page to find how long nothing has succeeded."""
        if not has_more or page >= FIRST_READ_PAGES_WITHOUT_SUCCESS:
            return False
        if any(run.status == "completed" for run in runs):
            return False
        times = [run.created_at for run in runs if run.created_at is not None]
        return not times or min(times) > now - FIRST_READ_LOOKBACK_SECONDS

    def _plausible(self, sync: Sync, run: SyncRun, now: float) -> SyncRun:
        """``run`` with every time further ahead of ``now`` than :data:`CLOCK_SKEW_SECONDS`, or that far
        before the sync was created, made unknown: one such time must not pin a status or fake an age."""
        late = now + CLOCK_SKEW_SECONDS
        early = -math.inf if sync.created_at is None else sync.created_at - CLOCK_SKEW_SECONDS
        names = ("created_at", "updated_at", "completed_at", "scheduled_execution_time")
        future = [name for name in names if (getattr(run, name) or 0.0) > late]
        past = [name for name in names if getattr(run, name) is not None and getattr(run, name) < early]
        if not future and not past:
            return run
        reasons = [
            *(f"{name} in the future" for name in future),
            *(f"{name} before the sync existed" for name in past),
        ]
        self._logs.once(
            ("implausible time", sync.id),
            "sync %s (%s): run %s has %s; treated as unknown",
            sync.id,
            bounded_text(sync.label, LABEL_LOG_LIMIT),
            run.id,
            ", ".join(reasons),
        )
        problems = (*run.problems, *reasons)
        return replace(run, **dict.fromkeys([*future, *past]), problems=problems)  # type: ignore[arg-type]

    def _fetch_missing_pending(
        self, sync: Sync, ledger: SyncLedger, fetched: dict[int, SyncRun], deadline: float, now: float
    ) -> tuple[list[int], int | None]:
        """Fetch, by id, pending runs that scrolled out of the pages, least recently looked up first.

        Returns the ids the API lost and the last id looked up (where the next refresh continues).
        """
        gone: list[int] = []
        order = ledger.pending_lookup_order(ledger.pending_missing_from(fetched))
        looked_up = order[: self._settings.max_pending_lookups_per_sync]
        for run_id in looked_up:
            try:
                raw = self._api.get_sync_run(run_id, deadline)
            except NotFoundError:
                log.info("sync %s: pending run %s no longer exists; not counting it", sync.id, run_id)
                gone.append(run_id)
                continue
            for run in self._own_runs(sync, self._logs.usable([raw], parse_sync_run, "run", sync.id)):
                if run.id == run_id:
                    fetched[run.id] = self._plausible(sync, run, now)
        return gone, (looked_up[-1] if looked_up else None)

    def _own_runs(self, sync: Sync, runs: list[SyncRun]) -> list[SyncRun]:
        """The runs that belong to ``sync``: one naming another sync is not counted here (nor twice)."""
        own = [run for run in runs if run.sync_id is None or run.sync_id == sync.id]
        if len(own) < len(runs):
            self._logs.once(
                ("foreign run", sync.id),
                "sync %s (%s): skipping runs that name another sync (sync_id %s)",
                sync.id,
                bounded_text(sync.label, LABEL_LOG_LIMIT),
                next(run.sync_id for run in runs if run.sync_id not in (None, sync.id)),
            )
        return own

    def _report(self, sync: Sync, update: LedgerUpdate) -> None:
        """Say once what the ledger had to guard against."""
        label = bounded_text(sync.label, LABEL_LOG_LIMIT)
        if update.implausible_run_ids:
            self._logs.once(
                ("implausible run id", sync.id),
                "sync %s (%s): run id %s is implausibly far above the others; smaller new ids still count",
                sync.id,
                label,
                update.implausible_run_ids[0],
            )
        if update.relisted_run_ids:
            self._logs.once(
                ("relisted run", sync.id),
                "sync %s (%s): run %s repeats a counted run under a new id (the same creation and finish "
                "time, status and record counts); not counted again",
                sync.id,
                label,
                update.relisted_run_ids[0],
            )
        if update.out_of_order_run_ids:
            self._logs.once(
                ("out of order run id", sync.id),
                "sync %s (%s): run %s was created after the exporter began watching the sync, yet its id is "
                "below every run id remembered; not counted (counting relies on ids growing with creation)",
                sync.id,
                label,
                update.out_of_order_run_ids[0],
            )
        if update.dropped_pending_run_ids:
            self._logs.once(
                ("pending cap", sync.id),
                "sync %s (%s): more than %d runs queued or working; forgetting the oldest %d uncounted",
                sync.id,
                label,
                MAX_PENDING_RUNS_PER_SYNC,
                len(update.dropped_pending_run_ids),
            )


def newest_run(runs: Iterable[SyncRun]) -> SyncRun | None:
    """The newest of ``runs``: the highest run id (ids grow with creation; a timestamp can lie), leaving out
    an id implausibly far above the next lower one, unless no other is left."""
    ordered = plausible_runs(runs)
    return ordered[-1] if ordered else None


def _oldest_unfinished(ledger: SyncLedger, fetched: Mapping[int, SyncRun]) -> float | None:
    """When the oldest run still waited on began: its ``created_at``, else when the exporter first saw it."""
    times = []
    for run_id in ledger.pending_run_ids:
        run = fetched.get(run_id)
        if run is None:
            continue
        created = run.created_at if run.created_at is not None else ledger.pending_seen_at.get(run_id)
        if created is not None:
            times.append(created)
    return min(times, default=None)
