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


def test_a_published_view_is_frozen_once(unfrozen: None) -> None:
    views = [FleetView()]
    frozen = FrozenGenerations(lambda: views[-1], floor_objects=10**9)
    assert frozen.step()  # the first view seen
    assert not frozen.step()  # nothing new published: nothing to do
    before = gc.get_freeze_count()
    kept = [_Kept() for _ in range(5_000)]
    views.append(FleetView())
    assert frozen.step()
    assert gc.get_freeze_count() >= before + len(kept)
    in_generations = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in in_generations for o in kept)  # no full collection traverses them now
    assert frozen.full_collections == 0


def test_cycles_that_die_frozen_are_collected_once_the_frozen_objects_have_grown(unfrozen: None) -> None:
    views = [FleetView()]
    frozen = FrozenGenerations(lambda: views[-1], growth=2.0, floor_objects=0)
    frozen.step()  # the first: a full collection (nothing frozen yet to compare with)
    assert frozen.full_collections == 1
    base = gc.get_freeze_count()
    cycle = _Cycle()
    dead = weakref.ref(cycle)
    views.append(FleetView())
    frozen.step()  # the cycle is frozen while alive
    assert frozen.full_collections == 1
    del cycle
    gc.collect()
    assert dead() is not None, "a frozen cycle is not collected (this is the leak the growth bound ends)"
    # The frozen objects grow past twice their number after the last full collection: one full
    # collection, which frees the dead cycle, then everything alive is frozen again.
    grown = [_Kept() for _ in range(2 * base + 1)]
    views.append(FleetView())
    frozen.step()
    assert frozen.full_collections == 2
    assert dead() is None
    assert gc.get_freeze_count() >= len(grown)


def test_the_exporter_freezes_while_running_and_unfreezes_when_closed(
    harness_factory: HarnessFactory, unfrozen: None
) -> None:
    harness = harness_factory(start=True)
    assert gc.get_freeze_count() > 0  # start-up's objects, frozen when it started
    harness.exporter.close()
    assert gc.get_freeze_count() == 0
