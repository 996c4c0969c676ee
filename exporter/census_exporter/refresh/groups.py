"""Which Fivetran groups a V2 personal access token can see, without relying on an unpublished route.

The groups listing (``GET /api/v2/groups``) is used where it answers. Where it does not (404 and the like:
Census has not published it), the groups are derived from the ``group_id`` of the records the token lists
(syncs, sources, activations), each named by its id. When no record names a group either, the token's
records cannot be split by group: :attr:`FoundGroups.unscoped` says so, and the caller watches them as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from census_exporter.census._scope import record_group
from census_exporter.census.client import GROUPS_ROUTE_ABSENT_STATUSES
from census_exporter.census.errors import CensusAPIError
from census_exporter.census.listing import Listing
from census_exporter.census.models.organization import Group, parse_group
from census_exporter.refresh.reporting import RefreshLog


class GroupsAPI(Protocol):
    """What finding the groups needs from a V2 client that names no group."""

    def list_groups(self, deadline: float) -> Listing: ...
    def list_syncs(self, deadline: float) -> Listing: ...
    def list_sources(self, deadline: float) -> Listing: ...
    def list_destinations(self, deadline: float) -> Listing: ...


@dataclass(frozen=True, slots=True)
class FoundGroups:
    """The groups found, how, and whether every listing read was consistent."""

    groups: list[Group]
    #: ``listed`` (the groups listing answered) or ``derived`` (from the records' ``group_id``).
    source: str
    complete: bool
    #: True when the groups listing is absent and no record names a group: nothing to split by.
    unscoped: bool = False
    #: Groups the listing held beyond the client's bound (derived groups are bounded by the caller).
    left_out: int = 0


def find_groups(api: GroupsAPI, deadline: float, logs: RefreshLog) -> FoundGroups:
    """The groups the token sees: listed where the route answers, else derived from listed records."""
    try:
        listing = api.list_groups(deadline)
    except CensusAPIError as error:
        if error.status not in GROUPS_ROUTE_ABSENT_STATUSES:
            raise  # a rejected token or an outage: not a sign that the route is missing
    else:
        groups = logs.usable(listing.items, parse_group, "group")
        return FoundGroups(groups, "listed", listing.complete, left_out=listing.left_out)
    return derive_groups(api, deadline)


def derive_groups(api: GroupsAPI, deadline: float) -> FoundGroups:
    """The distinct ``group_id`` of every sync, source and activation listed, each named by its id."""
    seen: dict[str, None] = {}
    complete = True
    for listing in (api.list_syncs(deadline), api.list_sources(deadline), api.list_destinations(deadline)):
        complete = complete and listing.complete
        for record in listing.items:
            group = record_group(record)
            if group is not None:
                parsed = parse_group({"id": group})
                if isinstance(parsed, Group):
                    seen.setdefault(parsed.id)
    groups = [Group(id=group_id, name=group_id) for group_id in sorted(seen)]
    return FoundGroups(groups, "derived", complete, unscoped=not groups)
