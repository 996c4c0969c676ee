"""CensusCollector: renders a FleetView's Census families straight to bytes (see census_exporter.rendering).

The families are declared in :mod:`census_exporter.families` and their sample lines written by
:mod:`census_exporter.family_lines`; this module decides what each view renders and what happens when a
value cannot be rendered. The Census families are rendered from the view alone, so no series can outlive
the sync it describes; the one exception are the per-workspace run totals, which also remember the counts of
syncs that left (:mod:`census_exporter.totals`).

Each sync's lines are written (every value converted, every label encoded) before any is kept, so a sync
holding a value that cannot be rendered loses its series for that view, is logged once, and every other
sync and family still renders.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from functools import partial

from cachetools import LRUCache

from census_exporter.build import BUILD
from census_exporter.census.budget import BudgetUse
from census_exporter.census.models.fields import bounded_text, clean_text
from census_exporter.config import Exposition
from census_exporter.families import (
    BUDGET_COUNTERS,
    BUDGET_RATE,
    BUILD_INFO,
    DATA_TIMESTAMP,
    DISCOVERY_UP,
    DISCOVERY_WORKSPACES,
    LAST_REFRESH,
    RECORD_COUNTERS,
    REFRESH_DURATION,
    SYNCS,
    UP,
)
from census_exporter.family_lines import Families, Line, PerSyncFamilies, WorkspaceTotalFamilies
from census_exporter.rendering import FamilyBlocks, RenderedFamilies, label_text, number, sample
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import FleetView, Snapshot
from census_exporter.totals import WorkspaceTotals

log = logging.getLogger(__name__)


def render_budget(use: BudgetUse | None) -> RenderedFamilies:
    """How the request budget is spent, rendered fresh on every scrape; without a budget its rate reads 0
    and its counters stay 0."""
    use = use or BudgetUse(requests_per_second=0.0)
    blocks = FamilyBlocks([BUDGET_RATE, *(series.family for series in BUDGET_COUNTERS)])
    lines = [(0, sample(BUDGET_RATE.name, "", use.requests_per_second))]
    for index, series in enumerate(BUDGET_COUNTERS, start=1):
        lines.append((index, sample(series.family.name, "", series.read(use) or 0)))
    blocks.add(lines)
    return blocks.rendered()


#: Errors a value or label can raise while it is rendered (``float(10**400)``, a lone surrogate).
RENDERING_ERRORS = (ArithmeticError, ValueError, TypeError)

#: How many (sync, error type) pairs the log-once memory keeps; beyond it the oldest may be logged again.
_LOGGED_ONCE_LIMIT = 1024
_logged_unrenderable: LRUCache[tuple[str, int, str], bool] = LRUCache(maxsize=_LOGGED_ONCE_LIMIT)
_logged_unrenderable_lock = threading.Lock()


def _log_unrenderable_once(workspace: str, sync_id: int, error: Exception) -> None:
    """One line per (sync, error type), without traceback: the same bad value recurs on every scrape."""
    key = (workspace, sync_id, type(error).__name__)
    with _logged_unrenderable_lock:
        if key in _logged_unrenderable:
            return
        _logged_unrenderable[key] = True
    log.warning(
        "sync %s of workspace %s left out of the scrape: a value cannot be rendered (%s: %s)",
        sync_id,
        workspace,
        type(error).__name__,
        bounded_text(clean_text(str(error)), 200),
    )


def _renders(snapshot: Snapshot, sync_id: int, counters: RunCounters) -> bool:
    """Whether a sync's counters can join its workspace's totals; logged once when they cannot."""
    try:
        for series in RECORD_COUNTERS:
            number(series.read(counters) or 0)
        number(counters.duration_sum_seconds)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(snapshot.workspace, sync_id, error)
        return False
    return True


def _add_or_log(blocks: FamilyBlocks, lines: Sequence[Line], workspace: str, sync_id: int) -> None:
    """Keep ``lines``, or none of them (logged once) when one cannot be encoded (a lone surrogate)."""
    try:
        blocks.add(lines)
    except RENDERING_ERRORS as error:
        _log_unrenderable_once(workspace, sync_id, error)


class CensusCollector:
    """Renders a view's Census families; it never calls the API itself."""

    def __init__(self, cache_ttl_seconds: float, exposition: Exposition | None = None) -> None:
        self._cached_note = f" Cached: up to {cache_ttl_seconds:g}s old."
        self._exposition = exposition or Exposition()
        self._workspace_totals = WorkspaceTotals()

    def seed_totals(self, workspace: str, departed: RunCounters, restored: Mapping[int, RunCounters]) -> None:
        """Start ``workspace``'s run totals after a restart: the counts of syncs that had left, and the
        counters of the restored syncs."""
        self._workspace_totals.seed(workspace, departed, restored)

    def render(self, view: FleetView) -> RenderedFamilies:
        """Every Census family of ``view``: the same for the same view, so its rendering can be reused.

        Only the workspace totals remember earlier views, to keep counting the runs of syncs that left.
        """
        return self._health(view) + self._per_sync(view) + self._totals(view)

    def _health(self, view: FleetView) -> RenderedFamilies:
        """Build info, each workspace's refresh health, discovery, and when each sync's runs were read."""
        families = Families()
        build, up, last, duration = (
            families.add(f) for f in (BUILD_INFO, UP, LAST_REFRESH, REFRESH_DURATION)
        )
        count = families.add(dataclasses.replace(SYNCS, help=SYNCS.help + self._cached_note))
        discovery_up = discovered = -1
        if view.discoveries:
            discovery_up, discovered = families.add(DISCOVERY_UP), families.add(DISCOVERY_WORKSPACES)
        read = families.add(DATA_TIMESTAMP)
        blocks = FamilyBlocks(families.families)
        blocks.add([families.line(build, label_text(BUILD.labels()), 1)])
        for snapshot in view.snapshots:
            workspace = label_text([("workspace", snapshot.workspace)])
            lines = [families.line(up, workspace, snapshot.up)]
            if snapshot.last_success_timestamp is not None:
                lines.append(families.line(last, workspace, snapshot.last_success_timestamp))
            if snapshot.refresh_duration_seconds is not None:
                lines.append(families.line(duration, workspace, snapshot.refresh_duration_seconds))
            if snapshot.listed:
                lines.append(families.line(count, workspace, len(snapshot.syncs)))
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        for status in view.discoveries:
            name = label_text([("discovery", status.name)])
            lines = [families.line(discovery_up, name, status.up)]
            if status.workspaces is not None:
                lines.append(families.line(discovered, name, status.workspaces))
            _add_or_log(blocks, lines, status.name, 0)
        for snapshot in view.snapshots:
            for sync_id, state in snapshot.syncs.items():
                if state.runs_read_timestamp is not None:
                    ids = label_text([("sync_id", str(sync_id)), ("workspace", snapshot.workspace)])
                    line = families.line(read, ids, state.runs_read_timestamp)
                    _add_or_log(blocks, [line], snapshot.workspace, sync_id)
        return blocks.rendered()

    def _per_sync(self, view: FleetView) -> RenderedFamilies:
        """Every sync's series, family by family; a sync that cannot render is left out whole."""
        families = PerSyncFamilies(self._cached_note, self._exposition)
        blocks = FamilyBlocks(families.families)
        for snapshot in view.snapshots:
            for state in snapshot.syncs.values():
                try:
                    lines = families.lines(snapshot, state)
                except RENDERING_ERRORS as error:
                    _log_unrenderable_once(snapshot.workspace, state.sync.id, error)
                    continue
                _add_or_log(blocks, lines, snapshot.workspace, state.sync.id)
        return blocks.rendered()

    def _totals(self, view: FleetView) -> RenderedFamilies:
        """The per-workspace run totals (the default; none when every total is per sync)."""
        families = WorkspaceTotalFamilies(self._cached_note, self._exposition)
        if not families.families:
            return RenderedFamilies()
        blocks = FamilyBlocks(families.families)
        self._workspace_totals.forget_except(snapshot.workspace for snapshot in view.snapshots)
        for snapshot in view.snapshots:
            if not snapshot.listed:
                continue
            counters = self._workspace_totals.total(snapshot, partial(_renders, snapshot))
            try:
                lines = families.lines(snapshot, counters)
            except RENDERING_ERRORS as error:  # only a sum of values each renderable on its own
                _log_unrenderable_once(snapshot.workspace, 0, error)
                continue
            _add_or_log(blocks, lines, snapshot.workspace, 0)
        return blocks.rendered()
