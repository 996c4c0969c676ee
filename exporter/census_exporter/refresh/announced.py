"""The announced read: the syncs webhook events marked, read at once, without listing (see
:mod:`.announcements`).

It starts from the current snapshot and changes only the marked syncs it knows (read at least once): no
listing, so the TTL is not renewed and nothing about absence or the API's health is learnt; a sync whose
read fails keeps its state and stays marked for the next full refresh.
"""

from __future__ import annotations

from dataclasses import replace

from census_exporter.census.models.fields import bounded_text
from census_exporter.census.models.syncs import Sync
from census_exporter.refresh.announcements import Announcements, known_ids
from census_exporter.refresh.one_sync import RefreshSettings
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.refresh.rounds import Built, RoundReader
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.workers import DaemonPool


def build_announced(
    previous: Snapshot,
    started: float,
    fetchers: DaemonPool,
    *,
    announcements: Announcements,
    rounds: RoundReader,
    settings: RefreshSettings,
    logs: RefreshLog,
) -> Built:
    """The previous snapshot with the marked syncs it knows read again; no listing, TTL unchanged.

    A sync whose read fails keeps its state and stays marked for the next full refresh; the error is
    logged once per sync and leaves ``up`` as it was (the next full refresh decides that).
    """
    deadline = started + settings.refresh_timeout_seconds
    taken = announcements.take_known(known_ids(previous.syncs))
    known: dict[int, SyncState | None] = {sync_id: previous.syncs[sync_id] for sync_id in taken}
    jobs = {sync_id: previous.syncs[sync_id].sync for sync_id in taken}
    results = rounds.read(taken, jobs, known=known, deadline=deadline, fetchers=fetchers, publish=None)
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
        logs.once(
            ("announced read failed", sync_id),
            "sync %s (%s): the read a webhook event asked for failed (%s); the next refresh reads it",
            sync_id,
            bounded_text(before.sync.label, LABEL_LOG_LIMIT),
            type(result).__name__ if result is not None else "not read",
        )
    announcements.again(failed)
    return Built(replace(previous, syncs=syncs), (), tuple(outcomes), announced=True)
