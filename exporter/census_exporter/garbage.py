"""Keep Python's full garbage collections from pausing the process for the size of its snapshots.

CPython's cyclic collector runs a full (generation 2) collection once the objects that survived into the
oldest generation since the last one exceed a quarter of those it holds. Every refresh replaces a
workspace's snapshot with new long-lived objects, so at 10,000 syncs a full collection ran every few
seconds and traversed every snapshot, ledger and module object while holding the GIL: 70 to 680 ms on a
loaded 2-core machine, during which nothing else runs, ``/readyz`` included (benchmarks/fleet.py; the
probe's slow answers fell on those collections).

So once a new view has been published (at most every ``interval_seconds``), its objects are moved out of
the collector's generations with :func:`gc.freeze`, after a collection of the young generations (cheap:
bounded by the collector's thresholds) so that short-lived cycles are freed rather than frozen. Frozen
objects are still freed by reference counting when they die (a replaced snapshot holds no cycles); only a
cycle that dies after it was frozen (an HTTP response in flight at that moment: httpx's responses are
cycles) stays until the frozen objects are collected again. That happens when the frozen objects have
grown to ``growth`` times their number after the last such collection: one full collection then (the
pause this module avoids, rare: after start-up, every few hours at the bounds), and frozen again.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable

from census_exporter.snapshot import FleetView

log = logging.getLogger(__name__)

#: How often the published view is checked, and the least time between two freezes.
INTERVAL_SECONDS = 5.0
#: The frozen objects are collected (and frozen again) once they have grown by this factor.
GROWTH = 2.0
#: Below this many frozen objects a full collection is too short to matter: it is not worth the wait.
FLOOR_OBJECTS = 100_000


class _Users:
    """Exporters of this process that manage the collector (tests run several): the first starts, the
    last stops and unfreezes."""

    lock = threading.Lock()
    count = 0


class FrozenGenerations:
    """Freezes the collector's generations after each newly published view (see the module's docstring)."""

    def __init__(
        self,
        view: Callable[[], FleetView],
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        growth: float = GROWTH,
        floor_objects: int = FLOOR_OBJECTS,
    ) -> None:
        self._view = view
        self._interval = interval_seconds
        self._growth = growth
        self._floor = floor_objects
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counted = False
        #: Weakly: a replaced view's snapshots must not outlive their last scrape because of this.
        self._frozen_view: weakref.ref[FleetView] | None = None
        #: Frozen objects right after the last full collection.
        self._collected_at = 0
        #: Freezes and full collections done (for tests and the debug log).
        self.freezes = 0
        self.full_collections = 0

    def start(self) -> None:
        """Collect and freeze what start-up left (modules, configuration), then follow the published view."""
        if self._counted:
            return
        with _Users.lock:
            _Users.count += 1
            first = _Users.count == 1
        self._counted = True
        if not first:
            return  # another exporter of this process does it
        self._full_collection()
        self._thread = threading.Thread(target=self._run, name="census-gc", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop; the last exporter of the process hands every frozen object back to the collector."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._interval + 5)
        if not self._counted:
            return
        self._counted = False
        with _Users.lock:
            _Users.count -= 1
            last = _Users.count == 0
        if last:
            gc.unfreeze()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.step()
            except Exception:  # never let the thread die: the collector then simply runs as usual
                log.exception("freezing the garbage collector's generations failed")

    def step(self) -> bool:
        """Freeze if a new view was published since the last freeze; True if it froze."""
        view = self._view()
        if self._frozen_view is not None and self._frozen_view() is view:
            return False
        self._frozen_view = weakref.ref(view)
        del view
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        if gc.get_freeze_count() > self._growth * max(self._collected_at, self._floor):
            self._full_collection()
        return True

    def _full_collection(self) -> None:
        started = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._collected_at = gc.get_freeze_count()
        self.full_collections += 1
        self.freezes += 1
        log.debug(
            "full garbage collection: %d objects frozen after it, took %.0f ms",
            self._collected_at,
            1000 * (time.monotonic() - started),
        )
