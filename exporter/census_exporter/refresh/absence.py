"""Absence grace: a sync missing from the sync list keeps its ledger and series until it is confirmed gone.

Its runs endpoint answers 404 while it is missing from the listing (it is probed every refresh while
missing; a 404 for a sync the listing still shows is an error for that sync, not proof), or it was missing
from ``GONE_AFTER_MISSING_LISTINGS`` consecutive complete listings spanning ``GONE_AFTER_MISSING_SECONDS``.
A listing the client reports as incomplete proves nothing about absence. After a restart, the syncs
restored from storage are known before the first listing like the previous snapshot's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from census_exporter.census.models.fields import bounded_text
from census_exporter.census.models.syncs import Sync
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT
from census_exporter.snapshot import SyncState

log = logging.getLogger("census_exporter.refresh.refresher")

#: A sync missing from this many consecutive complete listings, the first at least
#: ``GONE_AFTER_MISSING_SECONDS`` ago, is dropped even though its runs endpoint still answers.
GONE_AFTER_MISSING_LISTINGS = 3
GONE_AFTER_MISSING_SECONDS = 600.0


def still_awaited(
    listed_ids: set[int], complete: bool, previous: Mapping[int, SyncState], truncated: bool, now: float
) -> list[SyncState]:
    """Syncs known before but missing from this listing that are not yet confirmed gone.

    Their counts stay with them: each is probed (its runs fetched as usual) until its runs endpoint
    answers 404 or it has been missing from complete listings for the grace period. A listing cut at the
    syncs bound awaits none: a sync beyond the bound is left out, not missing.
    """
    if truncated:
        return []
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


def restored_state(restored: Mapping[int, SyncState], sync: Sync) -> SyncState | None:
    """A listed sync's state as restored from storage (its ledger only), if the storage held it."""
    state = restored.get(sync.id)
    return None if state is None else SyncState(sync=sync, ledger=state.ledger)


def known_before(
    previous: Mapping[int, SyncState],
    restored: Mapping[int, SyncState],
    admits: Callable[[str, int], bool],
) -> Mapping[int, SyncState]:
    """The syncs known before this listing: the previous snapshot's, and until a listing has been swapped
    in, the watched syncs restored from storage (a listing that misses one after a restart is one
    missing listing, with the same grace and 404 probe, not a loss of its ledger)."""
    if not restored:
        return previous
    awaited = {
        sync_id: state
        for sync_id, state in restored.items()
        if sync_id not in previous and admits(state.sync.label, sync_id)
    }
    return {**awaited, **previous} if awaited else previous
