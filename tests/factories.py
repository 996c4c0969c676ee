"""Model objects built by hand for unit tests: every field ``None`` (or empty) unless the test says otherwise.

The parsers make these from API records; a test that is about the ledger, the plan or the collector builds
them directly and names only the fields it is about.
"""

from __future__ import annotations

from typing import Any

from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync


def make_sync(sync_id: int, **fields: Any) -> Sync:
    """A sync labelled ``s<id>``, upsert, never paused; ``fields`` override any of its fields."""
    values: dict[str, Any] = {
        "id": sync_id,
        "label": f"s{sync_id}",
        "operation": "upsert",
        "source_connection_id": None,
        "destination_connection_id": None,
        "destination_object": "",
        "schedule": "",
        "paused": False,
    }
    return Sync(**(values | fields))


def make_run(run_id: int, status: str = "completed", **fields: Any) -> SyncRun:
    """A run of no sync in particular, nothing known but its id and status; ``fields`` fill in the rest."""
    values: dict[str, Any] = {
        "id": run_id,
        "sync_id": None,
        "status": status,
        "created_at": None,
        "updated_at": None,
        "completed_at": None,
        "scheduled_execution_time": None,
        "source_record_count": None,
        "records_processed": None,
        "records_updated": None,
        "records_failed": None,
        "records_invalid": None,
        "error_code": None,
        "error_message": None,
        "canceled": None,
        "full_sync": None,
        "trigger": None,
    }
    return SyncRun(**(values | fields))
