"""Snapshot: the immutable result of one refresh, replaced whole by the next.

The collector renders only what a snapshot holds, so a sync that left the workspace cannot leave a stale
series behind, and a scrape can never see half of a refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from census_exporter.census.models.fields import ConnectionId
from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import DEFAULT_DURATION_BUCKETS, SyncLedger

#: The ``error_code`` label of a code past the per-sync bound (see ``SyncState.shown_error_codes``).
OTHER_ERROR_CODE = "other"


@dataclass(frozen=True, slots=True)
class SyncState:
    """Everything known about one sync: its definition, newest run and ledger."""

    sync: Sync
    latest_run: SyncRun | None = None
    #: ``None`` until the sync's runs have been fetched successfully once.
    ledger: SyncLedger | None = None
    #: Creation time of the oldest run still queued or working. While a run hangs, Census records the
    #: runs scheduled after it as skipped, so the newest run alone cannot show that a sync is stuck.
    oldest_unfinished_created_at: float | None = None
    #: Consecutive complete sync listings this sync was missing from (0 while it is listed). A sync keeps
    #: its ledger and series until it is confirmed gone (see ``refresh.GONE_AFTER_MISSING_LISTINGS``).
    missing_listings: int = 0
    #: Monotonic time of the first complete listing it was missing from (``None`` while it is listed).
    missing_since: float | None = None
    #: Monotonic time at which its runs were last read successfully (``None``: never); a round the request
    #: budget cannot cover leaves some syncs unread, and this says how old their data is.
    runs_read_monotonic: float | None = None
    #: The same moment as Unix time, for ``census_sync_data_timestamp_seconds``.
    runs_read_timestamp: float | None = None
    #: The sync as listed when its runs were last read: a listing that differs since (its health or update
    #: time) is read first (see :mod:`census_exporter.refresh.schedule`).
    read_sync: Sync | None = None
    #: The error codes the exposition may show for this sync, each with the Unix time it was last shown;
    #: bounded per hour (``refresh.one_sync.MAX_ERROR_CODES_PER_HOUR``), so a sync inventing a new code per
    #: run cannot grow one series per run. Any other code is shown as :data:`OTHER_ERROR_CODE`.
    shown_error_codes: Mapping[str, float] = field(default_factory=dict)

    def error_code_label(self, code: str | None) -> str:
        """The ``error_code`` label value for ``code``: itself if admitted, empty if none, else ``other``."""
        if not code:
            return ""
        return code if code in self.shown_error_codes else OTHER_ERROR_CODE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One workspace as of one refresh."""

    workspace: str
    syncs: Mapping[int, SyncState] = field(default_factory=dict)
    source_names: Mapping[ConnectionId, str] = field(default_factory=dict)
    destination_names: Mapping[ConnectionId, str] = field(default_factory=dict)
    #: True when the refresh that built this snapshot finished without any error.
    up: bool = False
    #: True once at least one refresh has finished (successfully or not).
    refreshed: bool = False
    #: True once the sync list has been read successfully at least once: before that the number of syncs
    #: is unknown (absent), not zero.
    listed: bool = False
    #: One line saying why the refresh that built this snapshot was not error-free (``None`` when it was).
    last_error: str | None = None
    #: Unix time at which the last error-free refresh finished.
    last_success_timestamp: float | None = None
    #: How long the refresh that built this snapshot took.
    refresh_duration_seconds: float | None = None
    #: Monotonic time at which the refresh that built this snapshot started (drives the cache TTL).
    started_monotonic: float | None = None
    #: Monotonic time at which connection names were last fetched.
    connections_fetched_monotonic: float | None = None
    duration_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    #: The API base URL the workspace is read from (no credentials), for the landing page's links.
    api_url: str | None = None

    def source_name(self, sync: Sync) -> str:
        """The source connection's name, falling back to its id."""
        return _connection_name(self.source_names, sync.source_connection_id)

    def destination_name(self, sync: Sync) -> str:
        """The destination connection's name, falling back to its id."""
        return _connection_name(self.destination_names, sync.destination_connection_id)


def _connection_name(names: Mapping[ConnectionId, str], connection_id: ConnectionId | None) -> str:
    if connection_id is None:
        return ""
    return names.get(connection_id, str(connection_id))


@dataclass(frozen=True, slots=True)
class DiscoveryStatus:
    """How the last listing of workspaces by one discovery entry went."""

    #: The ``discovery`` label: where it lists from (the API base URL, without credentials).
    name: str
    #: True when the last listing finished without any error.
    up: bool = False
    #: True once a listing has finished (successfully or not).
    attempted: bool = False
    #: Workspaces it watches now (not those watched under the same name by another entry); ``None`` until
    #: a listing succeeded (unknown, not zero).
    workspaces: int | None = None
    last_error: str | None = None
    #: Unix time at which the last error-free listing finished.
    last_success_timestamp: float | None = None


@dataclass(frozen=True, slots=True, weakref_slot=True)
class FleetView:
    """Every watched workspace's current snapshot, by name, and the state of discovery: what one scrape shows.

    A new view exists only when one of its parts changed, so a rendering can be cached per view.
    """

    snapshots: tuple[Snapshot, ...] = ()
    discoveries: tuple[DiscoveryStatus, ...] = ()
