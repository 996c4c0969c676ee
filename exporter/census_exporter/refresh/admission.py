"""Which workspaces a discovery listing may add to the fleet (:class:`~census_exporter.refresh.fleet.Fleet`).

A workspace another entry already watches is skipped: a named one, or one another discovery entry found,
with the same identity (:func:`identities`: the same V2 group, V1 workspace id or V1 API key at the same
API) or a name equal up to case and Unicode form (:func:`~census_exporter.workspaces.name_key`). Of the
others, at most the room ``--census.max-workspaces`` leaves are taken, in the listing's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from census_exporter.config import TokenError, Workspace
from census_exporter.workspaces import name_key

__all__ = ["Identity", "admitted", "identities"]

#: What identifies the Census workspace or group a workspace watches (see :func:`identities`).
Identity = tuple[str, str, str]


def admitted(
    listed: Iterable[Workspace],
    *,
    taken_ids: set[Identity],
    taken_names: set[str],
    room: int | None,
    skipped: Callable[[Workspace, str], None],
) -> tuple[dict[str, tuple[Workspace, frozenset[Identity]]], int]:
    """The ``listed`` workspaces a discovery may watch, by name with their identities, and how many more
    the ``room`` left out (None: no bound).

    ``taken_ids`` and ``taken_names`` (as :func:`~census_exporter.workspaces.name_key`) are those watched
    elsewhere; each admitted workspace takes its own too. ``skipped`` is told of each workspace already
    watched elsewhere, and why.
    """
    wanted: dict[str, tuple[Workspace, frozenset[Identity]]] = {}
    beyond = 0
    for workspace in listed:
        ids = identities(workspace)
        key = name_key(workspace.name)
        if ids & taken_ids:
            skipped(workspace, "it is already watched (same Census id or key)")
            continue
        if key in taken_names:
            skipped(workspace, "a workspace of that name (up to case) is already watched")
            continue
        if room is not None and len(wanted) >= room:
            beyond += 1
            continue
        wanted[workspace.name] = (workspace, ids)
        taken_ids |= ids
        taken_names.add(key)
    return wanted, beyond


def identities(workspace: Workspace) -> frozenset[Identity]:
    """What says two entries watch the same Census workspace or group: at the same API (scheme, host and
    path, case-insensitive where URLs are), the same V2 group id, the same V1 workspace id, or the same V1
    API key (kept as a digest: the token never sits in another structure)."""
    parts = urlsplit(workspace.api_url)
    api = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    found: set[Identity] = set()
    if workspace.group_id is not None:
        found.add(("group", api, workspace.group_id))
    if workspace.workspace_id is not None:
        found.add(("workspace", api, str(workspace.workspace_id)))
    if workspace.api_version == "v1":
        try:
            token = workspace.token()
        except TokenError:
            token = ""
        if token:
            found.add(("key", api, hashlib.sha256(token.encode()).hexdigest()))
    return frozenset(found)
