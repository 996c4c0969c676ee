"""Fleet: every watched workspace's refresher, and the view a scrape renders.

Each workspace refreshes on its own (its own client, TTL, single flight and deadline), so one workspace's
401 or outage never touches another's data. A scrape starts the refreshes of every stale workspace at once
and waits for all of them within its one budget. Workspaces found by discovery join and leave here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace

from census_exporter.config import Workspace
from census_exporter.refresh.refresher import Refresher
from census_exporter.snapshot import DiscoveryStatus, FleetView, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchedWorkspace:
    """One workspace being watched: its settings, its refresher, and how to release its resources."""

    workspace: Workspace
    refresher: Refresher
    release: Callable[[], None]


#: Builds the refresher (and client) of a workspace; the exporter owns how.
WatchFactory = Callable[[Workspace], WatchedWorkspace]


class Fleet:
    """The watched workspaces: named ones for the process's life, discovered ones as discovery says."""

    def __init__(self, watch: WatchFactory, named: Sequence[Workspace]) -> None:
        self._watch = watch
        self._lock = threading.Lock()
        self._named: dict[str, WatchedWorkspace] = {w.name: watch(w) for w in named}
        #: Per discovery entry (by its name), the workspaces it currently watches, by workspace name.
        self._discovered: dict[str, dict[str, WatchedWorkspace]] = {}
        self._discoveries: dict[str, DiscoveryStatus] = {}
        self._view = FleetView()
        self._closed = False
        self._logged_conflicts: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ what scrapes see

    @property
    def view(self) -> FleetView:
        """The current snapshots by workspace name and discovery states (never blocks on a refresh)."""
        with self._lock:
            members = self._members()
            discoveries = tuple(self._discoveries[name] for name in sorted(self._discoveries))
            cached = self._view
        snapshots = tuple(member.refresher.snapshot for member in members)
        if _same(snapshots, cached.snapshots) and _same(discoveries, cached.discoveries):
            return cached
        view = FleetView(snapshots, discoveries)
        with self._lock:
            self._view = view
        return view

    @property
    def ready(self) -> bool:
        """True once every workspace has finished its first refresh and every discovery its first listing."""
        with self._lock:
            members = self._members()
            listed = all(status.attempted for status in self._discoveries.values())
        return listed and all(member.refresher.ready for member in members)

    def is_stale(self) -> bool:
        """True when some workspace's data is older than its TTL."""
        return any(member.refresher.is_stale() for member in self.members())

    def trigger(self) -> list[Future[Snapshot]]:
        """Start the refresh of every stale workspace (single flight each); return the running ones."""
        return [member.refresher.trigger() for member in self.members() if member.refresher.is_stale()]

    def view_within(self, budget_seconds: float) -> FleetView:
        """The view after waiting, at most ``budget_seconds`` in all, for the refreshes of stale workspaces.

        They run in parallel; a workspace whose refresh is not done in time shows its previous snapshot.
        """
        running = self.trigger()
        if running:
            _, late = wait(running, timeout=max(0.0, budget_seconds))
            if late:
                log.debug(
                    "%d refreshes still running after the scrape budget; serving previous data", len(late)
                )
        return self.view

    def members(self) -> list[WatchedWorkspace]:
        """Every watched workspace, ordered by name."""
        with self._lock:
            return self._members()

    def replace_named(self, workspaces: Sequence[Workspace]) -> tuple[list[str], list[str], list[str]]:
        """Watch ``workspaces`` as the named ones (a re-read workspaces file); (added, removed, changed).

        An unchanged entry keeps its refresher, ledger and token source; a removed one stops and loses its
        series; a changed one (URL, dialect, group, filter, or where its token comes from) starts over.
        """

        def same(old: Workspace, new: Workspace) -> bool:
            where = (old.api_url, old.api_version, old.group_id, old.syncs)
            if where != (new.api_url, new.api_version, new.group_id, new.syncs):
                return False
            if old.token.path is not None or new.token.path is not None:
                return old.token.path == new.token.path
            return old.token() == new.token()

        started: list[WatchedWorkspace] = []
        stopped: list[WatchedWorkspace] = []
        added: list[str] = []
        changed: list[str] = []
        with self._lock:
            if self._closed:
                return [], [], []
            wanted = {workspace.name: workspace for workspace in workspaces}
            removed = sorted(name for name in self._named if name not in wanted)
            stopped.extend(self._named.pop(name) for name in removed)
            for name, workspace in wanted.items():
                kept = self._named.get(name)
                if kept is not None and same(kept.workspace, workspace):
                    continue
                if kept is not None:
                    stopped.append(kept)
                (changed if kept is not None else added).append(name)
                self._named[name] = self._watch(workspace)
                started.append(self._named[name])
        for member in stopped:
            member.release()
        for member in started:
            member.refresher.trigger()
        return added, removed, changed

    # ------------------------------------------------------------------ discovery

    def declare_discovery(self, name: str) -> None:
        """Register a discovery entry before its first listing, so readiness waits for it."""
        with self._lock:
            self._discoveries.setdefault(name, DiscoveryStatus(name))
            self._discovered.setdefault(name, {})

    def discovered(self, name: str, workspaces: Iterable[Workspace], status: DiscoveryStatus) -> None:
        """What discovery ``name`` now sees: new workspaces start, vanished ones stop and lose their series.

        A workspace whose name is already watched (named in the file, or found by another entry) is skipped,
        with one log line.
        """
        started: list[WatchedWorkspace] = []
        stopped: list[WatchedWorkspace] = []
        with self._lock:
            if self._closed:
                return
            current = self._discovered.setdefault(name, {})
            wanted: dict[str, Workspace] = {}
            for workspace in workspaces:
                if self._taken_elsewhere(workspace.name, name):
                    self._log_conflict_once(name, workspace.name)
                    continue
                wanted.setdefault(workspace.name, workspace)
            for workspace_name in list(current):
                if workspace_name not in wanted:
                    stopped.append(current.pop(workspace_name))
            for workspace_name, workspace in wanted.items():
                kept = current.get(workspace_name)
                if kept is not None and _same_target(kept.workspace, workspace):
                    continue
                if kept is not None:
                    stopped.append(kept)
                member = self._watch(workspace)
                current[workspace_name] = member
                started.append(member)
            # What it watches, not what it listed: a workspace named in the file is not counted twice.
            self._discoveries[name] = replace(status, workspaces=len(current))
        for member in stopped:
            log.info(
                "workspace %s is no longer visible to discovery %s; dropping its series",
                member.workspace.name,
                name,
            )
            member.release()
        for member in started:
            found = member.workspace
            group = f" (group_id {found.group_id})" if found.group_id else ""
            log.info("discovery %s found workspace %s%s; watching it", name, found.name, group)
            member.refresher.trigger()

    def discovery_failed(self, status: DiscoveryStatus) -> None:
        """A listing failed: its workspaces stay watched as they were; only its status changes."""
        with self._lock:
            self._discoveries[status.name] = status

    def close(self) -> None:
        """Stop every refresher and release every client."""
        with self._lock:
            self._closed = True
            members = self._members()
        for member in members:
            member.release()

    # ------------------------------------------------------------------ helpers (lock held)

    def _members(self) -> list[WatchedWorkspace]:
        everyone = dict(self._named)
        for found in self._discovered.values():
            for workspace_name, member in found.items():
                everyone.setdefault(workspace_name, member)
        return [everyone[workspace_name] for workspace_name in sorted(everyone)]

    def _taken_elsewhere(self, workspace_name: str, discovery: str) -> bool:
        if workspace_name in self._named:
            return True
        return any(workspace_name in found for other, found in self._discovered.items() if other != discovery)

    def _log_conflict_once(self, discovery: str, workspace_name: str) -> None:
        if (discovery, workspace_name) in self._logged_conflicts:
            return
        self._logged_conflicts.add((discovery, workspace_name))
        log.info(
            "discovery %s found a workspace named %s, which is already watched under that name; "
            "the entry watching it already wins",
            discovery,
            workspace_name,
        )


def _same(left: Sequence[object], right: Sequence[object]) -> bool:
    return len(left) == len(right) and all(a is b for a, b in zip(left, right, strict=True))


def _same_target(old: Workspace, new: Workspace) -> bool:
    """Whether ``new`` watches what ``old`` does.

    Discovery keeps one token source per Census workspace and rotates its key in place, so a different
    source under the same name is a different workspace (one deleted, another created with its name): it
    starts over rather than inheriting the other's ledger.
    """
    same_place = (old.api_url, old.api_version, old.group_id, old.syncs) == (
        new.api_url,
        new.api_version,
        new.group_id,
        new.syncs,
    )
    return same_place and old.token is new.token
