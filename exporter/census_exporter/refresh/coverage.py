"""What a round's reads cover: syncs the bounds left out of the listing, syncs behind the data-age bound."""

from __future__ import annotations

import logging
from collections.abc import Callable

from census_exporter.snapshot import Snapshot

log = logging.getLogger("census_exporter.refresh.refresher")

#: A sync whose runs were not read for this many TTLs is behind (``census_data_within_bound`` turns 0): its
#: workspace's share of the request budget does not cover it.
DATA_AGE_BOUND_TTLS = 3


def syncs_behind(snapshot: Snapshot, cache_ttl_seconds: float, clock: Callable[[], float]) -> int:
    """Syncs of ``snapshot`` whose runs were last read (or never) more than the data-age bound before it
    started: a read of this refresh always counts as within (a TTL of 0 would otherwise make every sync
    behind)."""
    started = clock() if snapshot.started_monotonic is None else snapshot.started_monotonic
    oldest = started - DATA_AGE_BOUND_TTLS * cache_ttl_seconds
    return sum(
        1
        for state in snapshot.syncs.values()
        if state.runs_read_monotonic is None or state.runs_read_monotonic < oldest
    )


def log_left_out(before: int, left_out: int) -> None:
    """Say once when the bound starts leaving syncs out (``before`` 0, now ``left_out``) and when it ends."""
    if left_out and not before:
        log.warning(
            "the sync list holds more syncs than --census.max-syncs-per-workspace or the fleet's "
            "--census.max-syncs leave room for: the first ones listed are watched, %d are left out "
            "(census_syncs_left_out)",
            left_out,
        )
    elif before and not left_out:
        log.info("every listed sync fits --census.max-syncs-per-workspace and --census.max-syncs again")
