"""The fleet-wide bound on watched syncs: what the bounds per workspace cannot hold on their own.

``--census.max-syncs-per-workspace`` bounds one listing, but 250 workspaces of that many syncs each would
still take the process far past its memory limit. Each workspace claims, at every listing, the syncs it
listed (already cut at its own bound); it is granted what the claims of the other workspaces leave of the
total. A workspace keeps what it was granted while it is watched, so one that grows later cannot push
another out: syncs are watched first come, first served, and what does not fit is left out like syncs
beyond the per-workspace bound (``census_syncs_left_out``, ``CensusExporterTruncated``).
"""

from __future__ import annotations

import threading


class SyncQuota:
    """At most ``total`` syncs watched over every workspace of the process."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._lock = threading.Lock()
        #: Syncs granted to each workspace's refresher at its last listing, by the claimant's identity.
        self._granted: dict[int, int] = {}

    def claim(self, claimant: object, wanted: int) -> int:
        """Grant ``claimant`` up to ``wanted`` syncs (its listing): what the others leave of the total."""
        key = id(claimant)
        with self._lock:
            others = sum(granted for holder, granted in self._granted.items() if holder != key)
            granted = max(0, min(wanted, self.total - others))
            self._granted[key] = granted
            return granted

    def release(self, claimant: object) -> None:
        """``claimant`` is no longer watched: its syncs are free for the others' next listings."""
        with self._lock:
            self._granted.pop(id(claimant), None)

    def used(self) -> int:
        """Syncs granted now, over every workspace."""
        with self._lock:
            return sum(self._granted.values())
