"""RefreshLog: what the refresher says, and how often.

Every line is said once per cause: skipped records and model problems once per (sync, reason) an hour, the
refresh outcome only when it changes, failed runs once when counted, and on startup one summary instead of a
line per failure that happened before the exporter was watching. API strings are bounded before logging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import TTLCache

from census_exporter.census.errors import AuthError, CensusAPIError
from census_exporter.census.models.fields import MESSAGE_LIMIT, NAME_LIMIT, WORD_LIMIT, Skipped, bounded_text
from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync
from census_exporter.snapshot import Snapshot, SyncState

log = logging.getLogger(__name__)

# The models bound these texts already; the log keeps to the same bounds, whatever reaches it.
LABEL_LOG_LIMIT = NAME_LIMIT
ERROR_CODE_LOG_LIMIT = WORD_LIMIT
ERROR_MESSAGE_LOG_LIMIT = MESSAGE_LIMIT
STARTUP_FAILURES_NAMED = 5

Parsed = TypeVar("Parsed")


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """One sync's next state, and the failed runs it counted (logged only if the refresh is kept)."""

    state: SyncState
    failed_runs: tuple[SyncRun, ...] = ()
    #: True when this was the sync's first observation (its newest failed run is old news).
    baseline: bool = False
    #: The newest run this read counted (None: it counted none), to match against the runs events named.
    newest_counted_run_id: int | None = None


class RefreshLog:
    """The refresher's log policy; thread-safe enough for its use (a lost race logs a line twice)."""

    def __init__(self) -> None:
        self._logged_once: TTLCache[tuple[object, ...], bool] = TTLCache(maxsize=10_000, ttl=3600)
        self._last_error_signature: frozenset[str] = frozenset()
        #: Exception types of unexpected refresh failures already logged since the last kept refresh.
        self._unexpected_failures: set[str] = set()
        self._refreshes_blocked = False

    def once(
        self, key: tuple[object, ...], message: str, *args: object, level: int = logging.WARNING
    ) -> None:
        """Log ``message`` unless the same ``key`` was logged within the last hour."""
        if key not in self._logged_once:
            self._logged_once[key] = True
            log.log(level, message, *args)

    def usable(
        self,
        raw_records: Iterable[Any],
        parse: Callable[[Any], Parsed | Skipped],
        what: str,
        sync_id: int | None = None,
    ) -> list[Parsed]:
        """Parse each record; log the skipped ones, and each problem of a kept one, once; keep the rest.

        ``sync_id`` names the sync the records belong to; a sync record names itself.
        """
        usable: list[Parsed] = []
        for raw in raw_records:
            parsed = parse(raw)
            if isinstance(parsed, Skipped):
                self.once(
                    (what, sync_id, parsed.reason),
                    "skipping a %s record%s: %s",
                    what,
                    "" if sync_id is None else f" of sync {sync_id}",
                    parsed.reason,
                )
                continue
            usable.append(parsed)
            owner = parsed.id if isinstance(parsed, Sync) else sync_id
            for problem in getattr(parsed, "problems", ()):
                self.once(
                    ("problem", owner, problem),
                    "sync %s: %s record with an unusable field: %s",
                    owner,
                    what,
                    bounded_text(problem, ERROR_MESSAGE_LOG_LIMIT),
                )
        return usable

    def failed_runs(
        self, outcomes: Iterable[tuple[Sync, SyncOutcome]], *, first_refresh: bool, watched: int = 0
    ) -> None:
        """Log failed runs of a refresh that was kept; the first refresh sums up old failures in one line,
        and says when the request budget left some of the ``watched`` syncs for later refreshes."""
        outcomes = list(outcomes)
        if first_refresh:
            failing = sorted(
                (sync for sync, outcome in outcomes if outcome.baseline and outcome.failed_runs),
                key=lambda sync: sync.id,
            )
            named = ", ".join(
                bounded_text(sync.label, LABEL_LOG_LIMIT) for sync in failing[:STARTUP_FAILURES_NAMED]
            )
            more = "…" if len(failing) > STARTUP_FAILURES_NAMED else ""
            read = f"{len(outcomes)} syncs"
            if watched > len(outcomes):
                read = f"{len(outcomes)} of {watched} syncs read (the others in later refreshes)"
            log.log(
                logging.WARNING if failing else logging.INFO,
                "first refresh: %s, %d whose newest run failed%s",
                read,
                len(failing),
                f": {named}{more}" if failing else "",
            )
        for sync, outcome in outcomes:
            if first_refresh and outcome.baseline:
                continue
            for run in outcome.failed_runs:
                log.warning(
                    "sync run failed: sync_id=%s label=%r run_id=%s error_code=%s error_message=%r",
                    sync.id,
                    bounded_text(sync.label, LABEL_LOG_LIMIT),
                    run.id,
                    bounded_text(run.error_code or "", ERROR_CODE_LOG_LIMIT),
                    bounded_text(run.error_message or "", ERROR_MESSAGE_LOG_LIMIT),
                )

    def round_kept(
        self,
        snapshot: Snapshot,
        outcomes: list[tuple[Sync, SyncOutcome]],
        errors: list[CensusAPIError],
        *,
        first_refresh: bool,
    ) -> None:
        """Log a full refresh round that was swapped in as ``snapshot``: its failed runs (``outcomes``, of
        the syncs it read and kept) and its outcome (:meth:`failed_runs`, :meth:`outcome`)."""
        if snapshot.up:
            self.succeeded()
        self.failed_runs(outcomes, first_refresh=first_refresh, watched=len(snapshot.syncs))
        self.outcome(errors, have_data=snapshot.listed)

    def outcome(self, errors: list[CensusAPIError], *, have_data: bool = True) -> None:
        """Log the refresh outcome when it differs from the previous one (not on every refresh).

        ``have_data`` is False while the sync list was never read: then there is no previous data to serve.
        """
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
            # The detail says what happened: a rejected token, or one that could not even be read.
            log.error("%s", auth.detail)
            return
        log.warning(
            "Census API refresh incomplete, %s: %d error(s), first: %s",
            "serving previous data where needed" if have_data else "no data to serve yet",
            len(errors),
            errors[0],
        )

    def abandoned(self, message: str, generation: int) -> None:
        """Log an abandoned refresh, unless the previous outcome was the same abandonment."""
        signature = frozenset({message})
        if signature == self._last_error_signature:
            return
        self._last_error_signature = signature
        log.warning(
            "%s; abandoned it and serving the previous data with census_up 0 (refresh %d)",
            message,
            generation,
        )

    def succeeded(self) -> None:
        """A refresh without errors was kept: the next unexpected failure is news again."""
        self._unexpected_failures.clear()

    def unexpected_failure(self, error: Exception) -> None:
        """Log a refresh that failed with a bug, once per exception type until a refresh is kept again."""
        kind = type(error).__name__
        if kind in self._unexpected_failures:
            return
        self._unexpected_failures.add(kind)
        log.error(
            "refresh failed unexpectedly: %s: %s",
            kind,
            error,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    def refreshes_blocked(self, limit: int) -> None:
        """Log, once until a refresh can start again, that abandoned refreshes block new ones."""
        if self._refreshes_blocked:
            return
        self._refreshes_blocked = True
        log.warning(
            "%d abandoned refreshes are still waiting on the Census API; no new refresh starts until one "
            "ends, serving the previous data",
            limit,
        )

    def refreshes_unblocked(self) -> None:
        """A refresh could start again: the next block is worth a new line."""
        self._refreshes_blocked = False
