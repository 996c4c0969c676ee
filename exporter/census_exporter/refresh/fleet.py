"""Fleet: every watched workspace's refresher, and the view a scrape renders.

Each workspace refreshes on its own (its own client, TTL, single flight and deadline), so one workspace's
401 or outage never touches another's data. A scrape starts the refreshes of every stale workspace at once
and waits, within its one budget, for those that can be expected to finish in it (learnt from how long each
workspace's last refresh took): a workspace slower than the budget is served from its previous snapshot
without holding the scrape. Workspaces found by discovery join and leave here: one that a named entry or an
earlier discovery entry already watches (same V2 group, V1 workspace id or V1 API key at the same API, or a
name equal up to case and Unicode form) is skipped, and at most ``max_workspaces`` are watched in all
(:mod:`.admission`).

Locks: ``_lock`` guards the membership dictionaries for a few lines at a time and is never held across I/O
or client construction, so scrapes and ``/readyz`` never wait on discovery; ``_changing`` serializes the
membership changes themselves (building the clients of new workspaces happens under it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace

from census_exporter.config import Workspace
from census_exporter.refresh.admission import Identity, admitted, identities
from census_exporter.refresh.refresher import Refresher
from census_exporter.snapshot import DiscoveryStatus, FleetView, Snapshot
from census_exporter.workspaces import name_key

log = logging.getLogger(__name__)

#: Share of a scrape's budget it may wait for first refreshes: their view's size is unknown, and rendering
#: 10,000 first-read syncs took over a second on a loaded machine (benchmarks/fleet.py).
FIRST_REFRESH_SHARE = 0.5


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

    def __init__(
        self,
        watch: WatchFactory,
        named: Sequence[Workspace],
        *,
        max_workspaces: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watch = watch
        self._clock = clock
        #: Most workspaces watched in all, named ones included (None: no bound).
        self._max_workspaces = max_workspaces
        self._lock = threading.Lock()
        self._changing = threading.Lock()
        self._named: dict[str, WatchedWorkspace] = {w.name: watch(w) for w in named}
        #: Per discovery entry (by its name), the workspaces it currently watches, by workspace name.
        self._discovered: dict[str, dict[str, WatchedWorkspace]] = {}
        #: The identities of each discovered member, by discovery entry and workspace name.
        self._identities: dict[str, dict[str, frozenset[Identity]]] = {}
        self._discoveries: dict[str, DiscoveryStatus] = {}
        #: Per discovery entry, the workspaces it listed that the bounds left out.
        self._left_out: dict[str, int] = {}
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

        They run in parallel. Only refreshes that can be expected to end within the budget are waited for
        (:meth:`Refresher.expected_finish`). A workspace's first refresh, with nothing to learn from, is
        waited for at most ``FIRST_REFRESH_SHARE`` of the budget, and only while it has been asked for less
        than that ago: the rest is room to render a first view of unknown size. A
        workspace whose refresh is not done in time shows its previous snapshot.
        """
        budget = max(0.0, budget_seconds)
        began = self._clock()
        deadline = began + budget
        first_deadline = began + FIRST_REFRESH_SHARE * budget
        awaited: list[Future[Snapshot]] = []
        first: list[Future[Snapshot]] = []
        slow = 0
        for member in self.members():
            refresher = member.refresher
            if not refresher.is_stale():
                continue
            running = refresher.trigger()
            if running.done():
                continue
            learnt = refresher.snapshot.refresh_duration_seconds is not None
            expected = refresher.expected_finish()
            if expected is not None and expected > (deadline if learnt else first_deadline):
                slow += 1
                continue
            (awaited if learnt else first).append(running)
        late: set[Future[Snapshot]] = set()
        if first:
            late |= wait(first, timeout=max(0.0, first_deadline - self._clock()))[1]
        if awaited:
            late |= wait(awaited, timeout=max(0.0, deadline - self._clock()))[1]
        if late:
            log.debug("%d refreshes still running after the scrape budget; serving previous data", len(late))
        if slow:
            log.debug("%d refreshes expected to outlast the scrape budget; serving previous data", slow)
        return self.view

    def members(self) -> list[WatchedWorkspace]:
        """Every watched workspace, ordered by name."""
        with self._lock:
            return self._members()

    def count(self, *, discovered: bool) -> int:
        """How many workspaces are watched now, of those found by discovery or of the named ones."""
        with self._lock:
            if discovered:
                return sum(len(found) for found in self._discovered.values())
            return len(self._named)

    def left_out(self) -> dict[str, int]:
        """Per discovery entry that has listed, the workspaces it found that the bounds left out."""
        with self._lock:
            return dict(self._left_out)

    def replace_named(self, workspaces: Sequence[Workspace]) -> tuple[list[str], list[str], list[str]]:
        """Watch ``workspaces`` as the named ones (a re-read workspaces file); (added, removed, changed).

        An unchanged entry keeps its refresher, ledger and token source; a removed one stops and loses its
        series; a changed one (URL, dialect, group, filter, or where its token comes from) starts over.
        Clients are built outside the state lock, as for discovery: scrapes never wait on a reload.
        """

        def same(old: Workspace, new: Workspace) -> bool:
            where = (old.api_url, old.api_version, old.group_id, old.syncs)
            if where != (new.api_url, new.api_version, new.group_id, new.syncs):
                return False
            if old.token.path is not None or new.token.path is not None:
                return old.token.path == new.token.path
            return old.token() == new.token()

        started: list[WatchedWorkspace] = []
        added: list[str] = []
        changed: list[str] = []
        with self._changing:
            with self._lock:
                if self._closed:
                    return [], [], []
                current = dict(self._named)
            wanted = {workspace.name: workspace for workspace in workspaces}
            removed = sorted(name for name in current if name not in wanted)
            stopped = [current[name] for name in removed]
            kept: dict[str, WatchedWorkspace] = {}
            for name, workspace in wanted.items():
                before = current.get(name)
                if before is not None and same(before.workspace, workspace):
                    kept[name] = before
                    continue
                if before is not None:
                    stopped.append(before)
                (changed if before is not None else added).append(name)
                kept[name] = self._watch(workspace)
                started.append(kept[name])
            with self._lock:
                closed = self._closed
                if not closed:
                    self._named = kept
        if closed:
            for member in started:
                member.release()
            return [], [], []
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
            self._identities.setdefault(name, {})

    def discovered(
        self, name: str, workspaces: Iterable[Workspace], status: DiscoveryStatus, *, left_out: int = 0
    ) -> None:
        """What discovery ``name`` now sees: new workspaces start, vanished ones stop and lose their series.

        ``workspaces`` come in the discovery's order (by Census id); ``left_out`` more were listed beyond its
        own bound. A workspace already watched (named in the file, or found by another entry: the same
        group, workspace id or API key at the same API, or an equal name) is skipped with one log line. Those
        beyond ``max_workspaces`` are left out too, counted with ``left_out``; workspaces already watched
        keep their place before new ones.
        """
        with self._changing:
            with self._lock:
                if self._closed:
                    return
                current = dict(self._discovered.get(name, {}))
                others = [(entry, dict(found)) for entry, found in self._discovered.items() if entry != name]
                other_identities = [
                    ids
                    for entry, known in self._identities.items()
                    if entry != name
                    for ids in known.values()
                ]
                named = list(self._named.values())
                watched_elsewhere = len(named) + sum(len(found) for _, found in others)
            taken_ids: set[Identity] = set().union(*other_identities) if other_identities else set()
            for member in named:
                taken_ids |= identities(member.workspace)
            taken_names = {name_key(member.workspace.name) for member in named}
            taken_names |= {name_key(workspace_name) for _, found in others for workspace_name in found}
            room = None if self._max_workspaces is None else max(0, self._max_workspaces - watched_elsewhere)
            listed = list(workspaces)
            # Already watched first: a new workspace listed before them cannot push them out at the bound.
            listed.sort(key=lambda workspace: workspace.name not in current)
            wanted, beyond = admitted(
                listed,
                taken_ids=taken_ids,
                taken_names=taken_names,
                room=room,
                skipped=lambda workspace, reason: self._log_conflict_once(name, workspace, reason),
            )
            stopped = [member for workspace_name, member in current.items() if workspace_name not in wanted]
            kept: dict[str, WatchedWorkspace] = {}
            started: list[WatchedWorkspace] = []
            for workspace_name, (workspace, _) in wanted.items():
                before = current.get(workspace_name)
                if before is not None and _same_target(before.workspace, workspace):
                    kept[workspace_name] = before
                    continue
                if before is not None:
                    stopped.append(before)
                # Built without the state lock: a client takes tens of milliseconds to construct.
                member = self._watch(workspace)
                kept[workspace_name] = member
                started.append(member)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._discovered[name] = kept
                    self._identities[name] = {
                        workspace_name: ids for workspace_name, (_, ids) in wanted.items()
                    }
                    # What it watches, not what it listed: a workspace named in the file is not counted twice.
                    self._discoveries[name] = replace(status, workspaces=len(kept))
                    before_left_out = self._left_out.get(name, 0)
                    self._left_out[name] = left_out + beyond
        if closed:
            for member in started:
                member.release()
            return
        self._log_left_out(name, before_left_out, left_out, beyond)
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

    # ------------------------------------------------------------------ helpers

    def _members(self) -> list[WatchedWorkspace]:
        """Lock held."""
        everyone = dict(self._named)
        for found in self._discovered.values():
            for workspace_name, member in found.items():
                everyone.setdefault(workspace_name, member)
        return [everyone[workspace_name] for workspace_name in sorted(everyone)]

    def _log_conflict_once(self, discovery: str, workspace: Workspace, reason: str) -> None:
        census_id = "" if workspace.workspace_id is None else str(workspace.workspace_id)
        key = (discovery, f"{workspace.group_id or census_id}/{workspace.name}")
        if key in self._logged_conflicts:
            return
        self._logged_conflicts.add(key)
        what = f"group {workspace.group_id}" if workspace.group_id else "a workspace"
        log.info(
            "discovery %s: skipping %s named %s: %s; the entry watching it already wins",
            discovery,
            what,
            workspace.name,
            reason,
        )

    def _log_left_out(self, name: str, before: int, listed_beyond: int, beyond: int) -> None:
        now = listed_beyond + beyond
        if now and not before:
            log.warning(
                "discovery %s: %d workspaces left out by --census.max-workspaces-per-discovery (%d) and "
                "--census.max-workspaces (%d); watching the ones that fit "
                "(census_discovery_workspaces_left_out)",
                name,
                now,
                listed_beyond,
                beyond,
            )
        elif before and not now:
            log.info("discovery %s: every workspace it lists fits the bounds again", name)


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
