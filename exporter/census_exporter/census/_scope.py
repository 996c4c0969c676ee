"""Group scoping of V2 lists: which listed records belong to the client's Fivetran group.

Census has not published whether V2 list calls filter by ``?group_id=``. So a V2 client keeps only the
records of its own group itself, whatever the API did: a record's group is its own ``group_id``, else that
of its source connection or activation (their ``group_id`` is documented). A record with no group at all
cannot be placed by this client alone; :class:`SyncClaims`, shared by every client of the process, keeps
such a sync watched by one group only and counts, per group, the syncs left to another.

Nothing here sends a request: the client hands in raw records, before the models parse them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from census_exporter.census import _paging

GROUP_FIELD = "group_id"
"""DOCUMENTED: the field naming an object's Fivetran group (activations, webhooks, sources)."""

LONGEST_GROUP_ID = 128
"""Longest ``group_id`` read from a record; Fivetran's are two short words."""

#: What a V2 list call did with the group parameter, as far as the records show.
GroupParameter = Literal["honoured", "ignored", "refused", "unverifiable", "not_sent"]
#: Which listed records name their group: syncs (``yes``), only sources or activations (``connections``),
#: none (``no``), or nothing listed yet (``unknown``).
GroupCarriers = Literal["yes", "connections", "no", "unknown"]
#: How the API described further pages.
Pagination = Literal["pagination_block", "next_link", "none"]
#: Whether the groups listing answered: ``listed``, ``absent`` (404 or similar), or never asked.
GroupsRoute = Literal["listed", "absent", "not_asked"]


class ScopeObserver(Protocol):
    """Where a V2 client reports what the API showed (the start-up probe) and claims its untagged syncs."""

    #: The claimant's name in :attr:`claims` (its ``workspace`` label).
    name: str
    #: The process's claims on syncs that name no group; None: this client claims nothing.
    claims: SyncClaims | None

    def pagination(self, form: Pagination) -> None:
        """The paging form of a list's first page."""

    def groups_route(self, route: GroupsRoute) -> None:
        """Whether the groups listing answered."""

    def shape(self, carried: GroupCarriers, parameter: GroupParameter, complete: bool) -> None:
        """Which records carry ``group_id`` and what the group parameter did; ``complete`` once the syncs
        were listed."""

    def shared_syncs(self, count: int) -> None:
        """How many listed syncs without a group another group already watches (left out here)."""


def record_group(record: object) -> str | None:
    """The ``group_id`` of a raw record as text, or None when it has none usable."""
    if not isinstance(record, Mapping):
        return None
    value = record.get(GROUP_FIELD)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value and len(value) <= LONGEST_GROUP_ID and value.isprintable():
        return value
    return None


def connection_of(record: object, side: str) -> int | str | None:
    """A sync's ``source_attributes``/``destination_attributes`` ``connection_id``, if an int or a string."""
    attributes = record.get(side) if isinstance(record, Mapping) else None
    if not isinstance(attributes, Mapping):
        return None
    key = attributes.get("connection_id")
    return key if isinstance(key, int | str) and not isinstance(key, bool) else None


def pagination_form(body: Mapping[str, Any]) -> Pagination:
    """Which paging description a list answer used: the ``pagination`` block, the legacy link, or none."""
    if isinstance(body.get("pagination"), Mapping):
        return "pagination_block"
    if _paging.page_from_link(body.get("next")) is not None or "next" in body:
        return "next_link"
    return "none"


@dataclass(frozen=True, slots=True)
class ScopeOutcome:
    """What scoping one list did: the records kept, and what they showed about the API."""

    kept: list[Any]
    #: The other groups whose records the list returned (and which were dropped).
    foreign_groups: frozenset[str]
    #: Records that carried a group (their own, or their connection's).
    tagged: int
    #: Records that carried none.
    untagged: int


class ConnectionGroups:
    """The group of each source connection and activation, from the latest listings that named them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, int | str], str] = {}

    def learn(self, kind: str, records: Iterable[Any]) -> None:
        """Remember the group of every ``kind`` (``source`` or ``destination``) record that names one."""
        learned = {}
        for record in records:
            key, group = _paging.record_id(record), record_group(record)
            if key is not None and group is not None:
                learned[(kind, key)] = group
        with self._lock:
            self._groups = {k: v for k, v in self._groups.items() if k[0] != kind} | learned

    def group_of_sync(self, record: object) -> str | None:
        """The group of a sync's source connection, else of its activation, if known."""
        with self._lock:
            for kind, side in (("source", "source_attributes"), ("destination", "destination_attributes")):
                key = connection_of(record, side)
                if key is not None and (group := self._groups.get((kind, key))) is not None:
                    return group
        return None


def scope(records: list[Any], group_id: str, connections: ConnectionGroups | None = None) -> ScopeOutcome:
    """The records of ``group_id`` among ``records``; those without any group are kept (the caller decides).

    ``connections`` places a sync that names no group by its source connection or activation.
    """
    kept: list[Any] = []
    foreign: set[str] = set()
    tagged = untagged = 0
    for record in records:
        group = record_group(record)
        if group is None and connections is not None:
            group = connections.group_of_sync(record)
        if group is None:
            untagged += 1
            kept.append(record)
            continue
        tagged += 1
        if group == group_id:
            kept.append(record)
        else:
            foreign.add(group)
    return ScopeOutcome(kept, frozenset(foreign), tagged, untagged)


class SyncClaims:
    """Which group watches each sync that carries no group, shared by every V2 client of the process.

    The first group to list such a sync keeps it for as long as that group's listings go on including it;
    any other group listing it leaves it out and counts it as shared, so a sync is never watched (and its
    runs never counted) twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: dict[tuple[str, int | str], str] = {}
        self._listed: dict[tuple[str, str], set[int | str]] = {}

    def claim(
        self, realm: str, group: str, sync_ids: set[int | str], *, complete: bool = True
    ) -> tuple[set[int | str], dict[str, int]]:
        """The ids among ``sync_ids`` another group already watches, and how many per such group.

        ``realm`` separates unrelated APIs (the base URL); ``group`` is the claimant's name. An incomplete
        listing (``complete=False``) proves nothing by absence, so the claimant keeps what it had.
        """
        with self._lock:
            if not complete:
                sync_ids = sync_ids | self._listed.get((realm, group), set())
            self._listed[(realm, group)] = set(sync_ids)
            elsewhere: set[int | str] = set()
            by_owner: dict[str, int] = {}
            for sync_id in sync_ids:
                owner = self._owner.get((realm, sync_id))
                if owner is not None and owner != group and sync_id in self._listed.get((realm, owner), ()):
                    elsewhere.add(sync_id)
                    by_owner[owner] = by_owner.get(owner, 0) + 1
                else:
                    self._owner[(realm, sync_id)] = group
            for key in [k for k, owner in self._owner.items() if k[0] == realm and owner == group]:
                if key[1] not in sync_ids:
                    del self._owner[key]
            return elsewhere, by_owner

    def release_all(self, group: str) -> None:
        """Forget a group that is no longer watched: its syncs go to the next group that lists them."""
        with self._lock:
            for listed in [key for key in self._listed if key[1] == group]:
                del self._listed[listed]
            for key in [key for key, owner in self._owner.items() if owner == group]:
                del self._owner[key]
