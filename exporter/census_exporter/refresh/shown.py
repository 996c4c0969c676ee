"""Which failing streaks of one workspace have reached a scrape.

A webhook-triggered read can see a sync's failed run alone and the next read its successful retry, both
between two scrapes: no scrape then ever shows the failing streak, and ``CensusSyncRunFailed`` must page
from the superseded-failures counter instead (:meth:`census_exporter.ledger.SyncLedger.advance`). Whether
a streak was shown is known from the snapshots a scrape was served
(:class:`census_exporter.snapshot.ShownMark`): the current one, and the streaks of the shown ones it replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from census_exporter.snapshot import Snapshot

_NONE_SHOWN: Mapping[int, int] = MappingProxyType({})


class ShownStreaks:
    """The failing streaks (by sync id, the run that began each) that a snapshot shown to a scrape held."""

    def __init__(self) -> None:
        #: Replaced whole, never changed in place: the refresh threads read it without a lock.
        self._shown: Mapping[int, int] = _NONE_SHOWN

    def replacing(self, outgoing: Snapshot) -> None:
        """Called as ``outgoing`` is swapped out (under the refresher's lock): if a scrape was served it,
        the streaks it held were shown. Streaks it no longer held have ended and are not needed."""
        if not outgoing.mark.shown:
            return
        self._shown = MappingProxyType(
            {
                sync_id: state.ledger.failing_since_run_id
                for sync_id, state in outgoing.syncs.items()
                if state.ledger is not None and state.ledger.failing is True
            }
        )

    def shown(self, current: Snapshot, sync_id: int, since_run_id: int) -> bool:
        """True when a scrape showed the sync's failing streak that began with run ``since_run_id``."""
        if current.mark.shown and current.failing_streak(sync_id) == since_run_id:
            return True
        return self._shown.get(sync_id) == since_run_id
