"""The refresh: builds the next Snapshot from the Census API and swaps it in whole.

``refresher`` schedules refreshes (single flight, deadline, snapshot swap, absent syncs); ``one_sync``
refreshes one sync (paging, pending-run lookups; no threads); ``reporting`` decides what is logged and how
often.
"""

from census_exporter.refresh.one_sync import CensusAPI, RefreshSettings
from census_exporter.refresh.refresher import (
    GONE_AFTER_MISSING_LISTINGS,
    GONE_AFTER_MISSING_SECONDS,
    LIST_CHANGED_ERROR,
    MAX_ABANDONED_REFRESHES,
    Refresher,
)

__all__ = [
    "GONE_AFTER_MISSING_LISTINGS",
    "GONE_AFTER_MISSING_SECONDS",
    "LIST_CHANGED_ERROR",
    "MAX_ABANDONED_REFRESHES",
    "CensusAPI",
    "RefreshSettings",
    "Refresher",
]
