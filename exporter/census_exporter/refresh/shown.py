"""Which failing streaks of one workspace have reached a scrape.

A webhook-triggered read can see a sync's failed run alone and the next read its successful retry, both
between two scrapes: no scrape then ever shows the failing streak, and ``CensusSyncRunFailed`` must page
from the superseded-failures counter instead (:meth:`census_exporter.ledger.SyncLedger.advance`). Whether
a streak was shown is known from the snapshots a scrape was served
(:class:`census_exporter.snapshot.ShownMark`): the current one, or the newest one a scrape was served,
even after it was swapped out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from census_exporter.refresh.reporting import SyncOutcome
from census_exporter.snapshot import Snapshot, SyncState


class ShownStreaks:
    """The newest snapshot (in the order of the swaps) that a scrape was served, whose failing streaks (by
    sync id, the run that began each) were therefore shown.

    It is enough to keep that one: a streak lasts, in every snapshot swapped in after the one it began in,
    until the read that ends it; so if any snapshot holding the streak was shown, so was the newest shown
    one, which holds it too. Each swap costs nothing per sync, and a scrape served a snapshot after it was
    swapped out (marked late, at the end of a long rendering) still counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = 0
        #: Written under ``_lock``; the refresh threads read the reference without it.
        self._newest: Snapshot | None = None
        self._newest_sequence = -1

    def swapping_in(self, incoming: Snapshot) -> None:
        """Called as ``incoming`` is swapped in (the refresher's lock held: no scrape can have it yet)."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        incoming.mark.attach(self._saw, sequence)

    def replacing(self, outgoing: Snapshot) -> None:
        """Called as ``outgoing`` is swapped out: if a scrape was served it, its streaks were shown."""
        if outgoing.mark.shown:
            self._saw(outgoing, outgoing.mark.sequence)

    def _saw(self, snapshot: Snapshot, sequence: int) -> None:
        with self._lock:
            if sequence >= self._newest_sequence:
                self._newest, self._newest_sequence = snapshot, sequence

    def shown(self, current: Snapshot, sync_id: int, since_run_id: int) -> bool:
        """True when a scrape showed the sync's failing streak that began with run ``since_run_id``."""
        if current.mark.shown and current.failing_streak(sync_id) == since_run_id:
            return True
        newest = self._newest
        return newest is not None and newest.failing_streak(sync_id) == since_run_id


def recheck(
    streaks: ShownStreaks,
    current: Snapshot,
    syncs: dict[int, SyncState],
    outcomes: Iterable[tuple[int, SyncOutcome]],
) -> bool:
    """Just before ``syncs`` replace ``current``'s (the swap lock held, before the save): a read that ended
    a failing streak no scrape had shown counted its failures superseded; if a scrape has shown the streak
    since (a full round swaps long after its first reads, and scrapes are served the old snapshot, streak
    and all, meanwhile), take them back, so that the failure pages once (``CensusSyncFailed``), not twice.
    Only a ledger no scrape can have seen yet is changed; ``syncs`` is updated in place. True if any was.
    """
    changed = False
    for sync_id, outcome in outcomes:
        if outcome.unshown_streak is None:
            continue
        state = syncs.get(sync_id)
        ledger = state.ledger if state is not None else None
        if state is None or ledger is None or ledger is not outcome.state.ledger:
            continue  # this read's ledger is not the one swapped in
        before = current.syncs.get(sync_id)
        if before is not None and before.ledger is ledger:
            continue  # swapped in already (the first refresh's partial publish): its count was shown
        since, failures = outcome.unshown_streak
        if streaks.shown(current, sync_id, since):
            counters = ledger.counters.with_superseded_failures(-failures)
            syncs[sync_id] = replace(state, ledger=replace(ledger, counters=counters))
            changed = True
    return changed
