"""The refresh: builds the next Snapshot from the Census API and swaps it in whole.

``refresher`` schedules refreshes (single flight, TTL, deadline, snapshot swap, partial publish); ``rounds``
builds one full round (listing, plan, reads); ``announced`` reads the syncs webhook events marked;
``absence`` decides when a sync missing from the listing is gone; ``coverage`` counts what a round left
out; ``one_sync`` refreshes one sync (paging, pending-run lookups; no threads); ``reporting`` decides what
is logged and how often.
"""

from census_exporter.refresh.absence import GONE_AFTER_MISSING_LISTINGS, GONE_AFTER_MISSING_SECONDS
from census_exporter.refresh.one_sync import CensusAPI, RefreshSettings
from census_exporter.refresh.refresher import MAX_ABANDONED_REFRESHES, Refresher
from census_exporter.refresh.rounds import LIST_CHANGED_ERROR

__all__ = [
    "GONE_AFTER_MISSING_LISTINGS",
    "GONE_AFTER_MISSING_SECONDS",
    "LIST_CHANGED_ERROR",
    "MAX_ABANDONED_REFRESHES",
    "CensusAPI",
    "RefreshSettings",
    "Refresher",
]
