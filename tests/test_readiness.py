"""``/readyz`` never waits on a scrape's rendering, and full garbage collections stay off the snapshots.

Issue 18: at 10,000 syncs ``/readyz`` took up to 613 ms. The slow answers fell on full (generation 2)
collections over every snapshot (census_exporter/garbage.py); these tests check the mechanisms (no timing):
readiness needs nothing a rendering holds, published views are frozen out of the collector's generations,
and what dies frozen is collected again once the frozen objects have grown.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from census_exporter.demo import SimulatedWorkspace
from census_exporter.garbage import FrozenGenerations
from census_exporter.rendering import RenderedFamilies
from census_exporter.snapshot import FleetView
from tests.conftest import HarnessFactory, wait_for


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes goes back to the collector afterwards (other tests share the process)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Kept:
    """A long-lived object the collector tracks (as a snapshot's are)."""


class _Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_readyz_answers_while_a_scrape_is_stuck_rendering(harness_factory: HarnessFactory) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="one")
    workspace.add_run(1, "completed")
    harness = harness_factory(workspace, cache_ttl=300, start=True)
    wait_for(lambda: harness.get("/readyz").status_code == 200, what="the first refresh")
    collector = harness.exporter.collector
    rendering = threading.Event()
    release = threading.Event()
    real_render = collector.render

    def stuck_render(view: FleetView) -> RenderedFamilies:
        rendering.set()
        release.wait(30)
        return real_render(view)

    collector.render = stuck_render  # type: ignore[method-assign]
    # A new view (the rendering of the old one is cached): the scrape must render, and it sticks there.
    harness.exporter.fleet.members()[0].refresher.trigger().result(timeout=30)
    scrape: dict[str, Any] = {}
    scraper = threading.Thread(target=lambda: scrape.update(response=harness.get("/metrics")))
    scraper.start()
    try:
        assert rendering.wait(30), "the scrape never started rendering"
        # Both of the rendering's locks are held now (the render lock by the scrape, the other by us).
        census = harness.exporter.app._census  # the mechanism under test
        with census._lock:
            assert harness.get("/readyz").status_code == 200
            assert harness.get("/healthz").status_code == 200
        assert scraper.is_alive(), "the scrape finished: it did not hold the rendering"
    finally:
        release.set()
        scraper.join(30)
    assert scrape["response"].status_code == 200


def test_the_generations_are_frozen_once_they_hold_more_than_the_threshold(unfrozen: None) -> None:
    tracked = [10]
    frozen = FrozenGenerations(freeze_above=1_000, tracked=lambda: tracked[-1])
    assert not frozen.step()  # few objects: a full collection over them is short anyway
    before = gc.get_freeze_count()
    kept = [_Kept() for _ in range(5_000)]
    tracked.append(5_000)
    assert frozen.step()
    assert gc.get_freeze_count() >= before + len(kept)
    in_generations = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in in_generations for o in kept)  # no full collection traverses them now
    assert frozen.full_collections == 0


def test_cycles_that_die_frozen_are_collected_once_grown_and_due(unfrozen: None) -> None:
    now = [0.0]
    frozen = FrozenGenerations(
        freeze_above=0, growth=0.5, floor_objects=1_000, full_interval_seconds=60, clock=lambda: now[-1]
    )
    frozen.step()
    base = gc.get_freeze_count()
    cycle = _Cycle()
    dead = weakref.ref(cycle)
    frozen.step()  # the cycle is frozen while alive
    del cycle
    gc.collect()
    assert dead() is not None, "a frozen cycle is not collected (this is the leak the full collection ends)"
    # The frozen objects grow by more than half (and the floor), but the last full collection (at
    # construction) was less than a minute ago: no full collection yet.
    grown = [_Kept() for _ in range(base + 1_000)]
    frozen.step()
    assert frozen.full_collections == 0
    assert dead() is not None
    now.append(61.0)
    frozen.step()  # grown and due: one full collection frees the dead cycle; the rest is frozen again
    assert frozen.full_collections == 1
    assert dead() is None
    assert gc.get_freeze_count() >= len(grown)
    now.append(200.0)
    frozen.step()  # due again, but not grown since: no second full collection
    assert frozen.full_collections == 1


def test_the_exporter_freezes_while_running_and_unfreezes_when_closed(
    harness_factory: HarnessFactory, unfrozen: None
) -> None:
    harness = harness_factory(start=True)
    assert gc.get_freeze_count() > 0  # start-up's objects, frozen when it started
    harness.exporter.close()
    assert gc.get_freeze_count() == 0
