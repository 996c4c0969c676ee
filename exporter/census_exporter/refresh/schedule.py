"""Which syncs a refresh round reads when the request budget cannot cover all of them: pure functions.

A round may spend the workspace's share of the budget over one TTL (:func:`round_allowance`). If that covers
every sync, every sync is read. Otherwise (:func:`plan`) half of the allowance, rounded down, goes to syncs by
priority, most urgent first:

1. the sync list shows its health (``status``: ``failing``, ``up to date``, ...) changed since the sync was
   last read: a run has just finished with another outcome;
2. a run queued or working (or an unfinished run still waited on): its outcome is due soon;
3. only the listed ``updated_at`` changed: a run has most likely finished (below 2, so a sync whose
   ``updated_at`` moves on every listing cannot crowd out the runs already waited on);
4. its schedule says a run is due or has just run (``quarter_hourly`` .. ``weekly``: the last run seen is at
   least one period minus the horizon old; ``live`` and ``continuous`` syncs always);
5. it is failing (its newest finished run failed, or the listing says ``failing``): to see the retry or fix;

each class least recently read first. The rest of the allowance (at least half, rounded up) goes to the least
recently read syncs whatever their priority, never-read ones first. That share bounds how late any change is
seen, a run triggered by hand included: with ``N`` syncs and an allowance of ``K < N`` sync reads per round, a
sync is read at least every ``ceil(N / ceil(K / 2))`` rounds (:func:`rounds_between_reads`), since each round
reads the ``ceil(K / 2)`` least recently read syncs and a sync only moves up that order. A round takes one TTL
when Prometheus scrapes at least once per TTL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum

from census_exporter.census.models.runs import PENDING_RUN_STATUSES
from census_exporter.snapshot import SyncState

#: Seconds between scheduled runs, by the schedule word ``describe_schedule`` yields.
SCHEDULE_PERIOD_SECONDS = {"quarter_hourly": 900.0, "hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}
#: Share of the budget's requests over a round's time that a round plans on: the rest is room for extra run
#: pages, pending-run lookups, retries and discovery, so a planned round ends before its deadline.
PLANNED_SHARE = 0.8

#: Schedules that run all the time: a run is always due.
ALWAYS_DUE_SCHEDULES = frozenset({"live", "continuous"})


class Priority(IntEnum):
    """Why a sync is read before others; lower is more urgent."""

    HEALTH_CHANGED = 0
    UNFINISHED_RUN = 1
    LISTING_UPDATED = 2
    RUN_DUE = 3
    LAST_RUN_FAILED = 4
    NONE = 5


def planning_seconds(cache_ttl_seconds: float, refresh_timeout_seconds: float, *, first: bool) -> float:
    """The time whose budget a round plans on: ``PLANNED_SHARE`` of the TTL, or of the deadline if shorter.

    The first refresh plans on its whole deadline: every sync needs a first read, nothing else competes for
    the budget yet, and it publishes the syncs it has read as it goes.
    """
    return PLANNED_SHARE * (
        refresh_timeout_seconds if first else min(cache_ttl_seconds, refresh_timeout_seconds)
    )


def round_allowance(requests: int | None, workspaces: int, listing_requests: int) -> int | None:
    """Sync reads one round of one workspace may plan: its fair share of the budget over one round.

    ``requests`` is what the whole process may send in :func:`planning_seconds` (None: no budget);
    it is split evenly
    between the ``workspaces`` watched, and the round's own listing requests come off its share. At least one
    sync is read per round, so a budget smaller than the listings still makes progress (the bucket then
    spaces the requests out and the round takes longer than a TTL). Each sync read is counted as one request:
    its first page of runs (more pages and pending-run lookups are rare and come on top).
    """
    if requests is None:
        return None
    share = requests // max(1, workspaces)
    return max(1, share - listing_requests)


def priority(state: SyncState, now_wall: float, horizon_seconds: float) -> Priority:
    """How urgently ``state``'s sync should be read, from what the last read of it showed.

    ``now_wall`` is Unix time; a scheduled run counts as due when it falls within ``horizon_seconds`` (the
    TTL), since the sync will not be read again before then if it is skipped now.
    """
    read = state.read_sync
    if read is not None and state.sync.health_differs(read):
        return Priority.HEALTH_CHANGED
    latest = state.latest_run
    if unfinished(state):
        return Priority.UNFINISHED_RUN
    if read is not None and state.sync.listing_differs(read):
        return Priority.LISTING_UPDATED
    scheduled = state.ledger is not None and state.sync.paused is not True
    if scheduled and _run_due(state, now_wall, horizon_seconds):
        return Priority.RUN_DUE
    failing = state.ledger is not None and state.ledger.failing is True
    if failing or state.sync.health == "failing" or (latest is not None and latest.status == "failed"):
        return Priority.LAST_RUN_FAILED
    return Priority.NONE


def unfinished(state: SyncState) -> bool:
    """Whether the sync's last read showed a run queued or working (or one still waited on)."""
    if state.ledger is not None and state.ledger.pending_run_ids:
        return True
    if state.oldest_unfinished_created_at is not None:
        return True
    latest = state.latest_run
    return latest is not None and latest.status in PENDING_RUN_STATUSES


def _run_due(state: SyncState, now_wall: float, horizon_seconds: float) -> bool:
    schedule = state.sync.schedule
    if schedule in ALWAYS_DUE_SCHEDULES:
        return True
    period = SCHEDULE_PERIOD_SECONDS.get(schedule)
    latest = state.latest_run
    if period is None or latest is None or latest.created_at is None:
        return False
    return now_wall + horizon_seconds >= latest.created_at + period


def plan(
    states: Sequence[SyncState], allowance: int | None, now_wall: float, horizon_seconds: float
) -> list[int]:
    """The ids of the syncs to read this round, in the order to read them (see the module's rule)."""
    by_age = sorted(states, key=_least_recently_read)
    if allowance is None or allowance >= len(states):
        return [state.sync.id for state in by_age]
    ranked = sorted(
        (state for state in by_age if priority(state, now_wall, horizon_seconds) != Priority.NONE),
        key=lambda state: priority(state, now_wall, horizon_seconds),
    )
    chosen = [state.sync.id for state in ranked[: allowance // 2]]
    taken = set(chosen)
    for state in by_age:
        if len(chosen) >= allowance:
            break
        if state.sync.id not in taken:
            chosen.append(state.sync.id)
            taken.add(state.sync.id)
    return chosen


def rounds_between_reads(syncs: int, allowance: int | None) -> int:
    """Most rounds between two reads of one sync under :func:`plan` (1 when every sync fits a round)."""
    if allowance is None or allowance >= syncs:
        return 1
    return math.ceil(syncs / math.ceil(allowance / 2))


def _least_recently_read(state: SyncState) -> tuple[float, int]:
    read = state.runs_read_monotonic
    return (-math.inf if read is None else read, state.sync.id)
