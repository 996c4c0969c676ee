"""Discoverer: finds every workspace (V1) or Fivetran group (V2) a token can see; keeps the fleet current.

It lists them at start and every ``relist_interval_seconds``: a new workspace joins the fleet (its first
refresh starts at once), one no longer listed leaves it with its series. A V1 workspace whose API key the
token may not read (403: its user is not an admin there) is skipped with one log line. A failed or
inconsistent listing removes nothing: absence from it proves nothing.

At most ``max_workspaces`` of a listing are kept (the client stops reading pages there; the first ones by
Census id are watched); how many were left out reaches the fleet, which says so in a metric and one log line.
Names are made unique the way the workspaces file compares them (up to case and Unicode form).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, wait
from dataclasses import replace
from typing import Any, Protocol

from census_exporter.census.errors import CensusAPIError, ForbiddenError
from census_exporter.census.listing import Listing
from census_exporter.census.models.organization import (
    Group,
    OrganizationWorkspace,
    parse_organization_workspace,
)
from census_exporter.config import Discovery, TokenSource, Workspace
from census_exporter.refresh.fleet import Fleet
from census_exporter.refresh.groups import find_groups
from census_exporter.refresh.reporting import RefreshLog
from census_exporter.snapshot import DiscoveryStatus
from census_exporter.workers import DaemonPool
from census_exporter.workspaces import name_key

log = logging.getLogger(__name__)

#: V1 API keys read at once; a key is read again once it is this old (Census may rotate it).
KEY_READERS = 8
KEY_MAX_AGE_SECONDS = 3600.0
#: How long one listing waits for key reads; those still running are taken by the next listing.
KEY_WAIT_SECONDS = 5.0


class OrganizationAPI(Protocol):
    """What discovery needs from the client (the real one is :class:`CensusClient`)."""

    def list_workspaces(self, deadline: float) -> Listing: ...
    def workspace_api_key(self, workspace_id: int, deadline: float) -> str: ...
    def list_groups(self, deadline: float) -> Listing: ...
    def list_syncs(self, deadline: float) -> Listing: ...
    def list_sources(self, deadline: float) -> Listing: ...
    def list_destinations(self, deadline: float) -> Listing: ...
    def close(self) -> None: ...


class Discoverer:
    """Lists one discovery entry's workspaces periodically, on its own daemon thread."""

    def __init__(
        self,
        discovery: Discovery,
        fleet: Fleet,
        api: OrganizationAPI,
        *,
        timeout_seconds: float,
        stopping: threading.Event,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        max_workspaces: int | None = None,
    ) -> None:
        self._discovery = discovery
        #: Most workspaces of one listing watched (the client's bound too); None: no bound.
        self._max_workspaces = max_workspaces
        #: Workspaces the last listing held beyond the bound.
        self._left_out = 0
        self._fleet = fleet
        self._api = api
        self._timeout_seconds = timeout_seconds
        self._stopping = stopping
        self._wall_clock = wall_clock
        self._clock = clock
        self._logs = RefreshLog()
        self._status = DiscoveryStatus(discovery.name)
        #: The workspaces of the last listing, by Census id: kept when a later listing cannot vouch for them.
        self._known: dict[str, Workspace] = {}
        #: V1: each workspace's API key and when it was read (monotonic), and the token its client holds.
        self._keys: dict[int, tuple[str, float]] = {}
        self._tokens: dict[int, TokenSource] = {}
        #: Key reads still running (a stalled one must not hold up the listing): taken at a later listing.
        self._reading: dict[int, tuple[OrganizationWorkspace, Future[str]]] = {}
        self._thread = threading.Thread(
            target=self._loop, name=f"census-discovery-{discovery.name}", daemon=True
        )
        fleet.declare_discovery(discovery.name)

    def start(self) -> None:
        """List now, then every ``relist_interval_seconds`` until :meth:`close`."""
        self._thread.start()

    def close(self) -> None:
        """Stop listing; the client's connections are released."""
        self._stopping.set()
        self._api.close()

    def relist(self) -> None:
        """List the workspaces once and hand the result to the fleet; never raises for an API fault."""
        deadline = self._clock() + self._timeout_seconds
        errors: list[str] = []
        try:
            found = self._list(deadline, errors)
        except CensusAPIError as error:
            errors.append(str(error))
            found = None
        except Exception as error:  # noqa: BLE001 - a bug must not end discovery for the process's life
            if self._stopping.is_set():
                return
            errors.append(f"unexpected {type(error).__name__}: {error}")
            found = None
        ok = not errors
        if ok and self._status.attempted and not self._status.up:
            log.info("discovery %s: listing works again", self._discovery.name)
        if errors:
            self._logs.once(
                ("discovery error", errors[0]), "discovery %s: %s", self._discovery.name, errors[0]
            )
        self._status = replace(
            self._status,
            up=ok,
            attempted=True,
            last_error=None if ok else errors[0],
            last_success_timestamp=self._wall_clock() if ok else self._status.last_success_timestamp,
            workspaces=len(found) if found is not None else self._status.workspaces,
        )
        if found is None:
            self._fleet.discovery_failed(self._status)
            return
        self._known = found
        self._fleet.discovered(
            self._discovery.name, list(found.values()), self._status, left_out=self._left_out
        )

    # ------------------------------------------------------------------ listing

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.relist()
            if self._stopping.wait(self._discovery.relist_interval_seconds):
                return

    def _list(self, deadline: float, errors: list[str]) -> dict[str, Workspace]:
        if self._discovery.api_version == "v2":
            # The groups listing where it answers, else the group_id of the listed records.
            groups = find_groups(self._api, deadline, self._logs)
            listing = Listing([], groups.complete, left_out=groups.left_out)
            found = {group.id: self._group(group) for group in groups.groups}
            if groups.unscoped:
                found = {"": self._group(Group(id="", name=self._discovery.unscoped_name))}
        else:
            listing = self._api.list_workspaces(deadline)
            workspaces = self._logs.usable(listing.items, parse_organization_workspace, "workspace")
            if self._max_workspaces is not None:
                del workspaces[self._max_workspaces :]  # no key is read for a workspace left out
            found = self._with_keys(workspaces, deadline, errors)
        left_out = listing.left_out
        if not listing.complete:
            errors.append(
                "the workspace list changed while it was being read; a workspace may be missing from it"
            )
            for key, known in self._known.items():
                found.setdefault(key, known)
        if self._max_workspaces is not None and len(found) > self._max_workspaces:
            ordered = sorted(found, key=_id_order)
            left_out += len(ordered) - self._max_workspaces
            found = {key: found[key] for key in ordered[: self._max_workspaces]}
        self._left_out = left_out
        return _unique_names(found)

    def _with_keys(
        self, workspaces: list[OrganizationWorkspace], deadline: float, errors: list[str]
    ) -> dict[str, Workspace]:
        """The V1 workspaces whose API key the token may read, each with its key.

        Keys are read only for workspaces not seen before and, to follow rotation, once they are
        ``KEY_MAX_AGE_SECONDS`` old; up to ``KEY_READERS`` at once, so one stalled read neither delays the
        others nor keeps a large organization from being covered: a key not read this time keeps the old
        one, and the next listing goes on with those still missing.
        """
        now = self._clock()
        due = [
            workspace
            for workspace in {workspace.id: workspace for workspace in workspaces}.values()
            if workspace.id not in self._reading
            and (workspace.id not in self._keys or now - self._keys[workspace.id][1] >= KEY_MAX_AGE_SECONDS)
        ]
        readers = None
        if due:
            readers = DaemonPool(min(KEY_READERS, len(due)), "census-discovery-keys")
            for workspace in due:
                read = readers.submit(self._api.workspace_api_key, workspace.id, deadline)
                self._reading[workspace.id] = (workspace, read)
        if self._reading:
            budget = max(0.0, min(KEY_WAIT_SECONDS, deadline - now))
            wait([read for _, read in self._reading.values()], timeout=budget)
        if readers is not None:
            readers.shutdown()  # reads still queued are cancelled; running ones finish and are taken later
        unread = 0
        for workspace_id, (workspace, read) in list(self._reading.items()):
            if read.cancelled():
                del self._reading[workspace_id]  # never sent: asked for again by the next listing
                unread += 1
            elif read.done():
                del self._reading[workspace_id]
                self._take_key(workspace, read, errors)
            else:
                unread += 1
        if unread:
            errors.append(f"{unread} workspace API keys not read yet; the next listing goes on with them")
        listed = {workspace.id for workspace in workspaces}
        for gone in [workspace_id for workspace_id in self._keys if workspace_id not in listed]:
            del self._keys[gone]
            self._tokens.pop(gone, None)
        found: dict[str, Workspace] = {}
        for workspace in workspaces:
            if workspace.id not in self._keys:
                continue
            token = self._tokens.setdefault(workspace.id, TokenSource(value=self._keys[workspace.id][0]))
            found[str(workspace.id)] = Workspace(
                name=workspace.name,
                api_url=self._discovery.api_url,
                token=token,
                api_version="v1",
                syncs=self._discovery.syncs,
                workspace_id=workspace.id,
                discovered_by=self._discovery.name,
            )
        return found

    def _take_key(self, workspace: OrganizationWorkspace, read: Future[str], errors: list[str]) -> None:
        try:
            key = read.result()
        except ForbiddenError:
            self._keys.pop(workspace.id, None)
            self._tokens.pop(workspace.id, None)
            self._logs.once(
                ("forbidden", workspace.id),
                "discovery %s: skipping workspace %s (%s): the token may not read its API key (403; "
                "its user is not an admin there)",
                self._discovery.name,
                workspace.id,
                workspace.name,
                level=logging.WARNING,
            )
            return
        except (CensusAPIError, CancelledError) as error:
            # A transient fault: a workspace known before stays watched with the key it had.
            errors.append(f"workspace {workspace.id}: {error or type(error).__name__}")
            return
        self._keys[workspace.id] = (key, self._clock())
        token = self._tokens.get(workspace.id)
        if token is not None and token() != key:
            token.replace(key)  # rotated: the running client sends the new key from its next request

    def _group(self, group: Group) -> Workspace:
        return Workspace(
            name=group.name,
            api_url=self._discovery.api_url,
            token=self._discovery.token,
            api_version="v2",
            group_id=group.id or None,
            syncs=self._discovery.syncs,
            discovered_by=self._discovery.name,
        )


def _unique_names(found: dict[str, Workspace]) -> dict[str, Workspace]:
    """Two workspaces with one name would share series: the later ones get their id appended (and a
    number, should even that name be taken, say by a workspace named "a (3)")."""
    seen: set[str] = set()
    unique: dict[str, Workspace] = {}
    for key in sorted(found, key=_id_order):
        workspace = found[key]
        name = workspace.name
        suffix = 1
        while name_key(name) in seen:
            name = f"{workspace.name} ({key})" if suffix == 1 else f"{workspace.name} ({key}) #{suffix}"
            suffix += 1
        seen.add(name_key(name))
        unique[key] = replace(workspace, name=name) if name != workspace.name else workspace
    return unique


def _id_order(key: str) -> Any:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
