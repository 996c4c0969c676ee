"""Keep Python's full garbage collections from pausing the process for the size of its snapshots.

CPython's cyclic collector runs a full (generation 2) collection once the objects that survived into the
oldest generation since the last one exceed a quarter of those it holds. Every refresh replaces a
workspace's snapshot with new long-lived objects, so at 10,000 syncs a full collection ran every few
seconds and traversed every snapshot, ledger and module object while holding the GIL: 70 to 680 ms on a
loaded 2-core machine, during which nothing else runs, ``/readyz`` included (benchmarks/fleet.py; the
probe's slow answers fell on those collections).

So the long-lived objects are moved out of the collector's generations with :func:`gc.freeze` whenever
the generations hold more than ``freeze_above`` objects (checked every ``interval_seconds``), after a
collection of the young generations (cheap: bounded by the collector's thresholds) so that short-lived
cycles are freed rather than frozen. A full collection then traverses at most about that many objects,
whatever the fleet's size (25,000: about 20 ms of CPU). Frozen objects are still freed by reference
counting when they die (a replaced snapshot holds no cycles); only a cycle that dies after it was frozen
stays: an HTTP request in flight at that moment (httpx's requests and responses are cycles, about a dozen
objects and 1 KB each, their bodies not included). At 10,000 syncs read without a request budget, 64
requests in flight, that was about 5,000 objects (500 KB) a minute. They are collected by one full collection
over everything (the pause this module avoids: about 180 ms of CPU at 10,000 syncs) once the frozen
objects have grown by ``growth`` (a share) of their number after the last one, by at least
``floor_objects``, and at most every ``full_interval_seconds``: then frozen again.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How often the collector's generations are looked at.
INTERVAL_SECONDS = 5.0
#: Freeze once the generations hold more objects than this: a full collection over them is short.
FREEZE_ABOVE = 25_000
#: The frozen objects are collected again once they have grown by this share of their number after the
#: last full collection (transiently they double: a refresh builds a snapshot while the old one is served),
GROWTH = 0.5
#: and by at least this many objects,
FLOOR_OBJECTS = 100_000
#: and not sooner than this after the last full collection (while the data grows after start-up, the
#: frozen objects grow without any garbage among them): at most 30 minutes of dead requests, about 15 MB
#: at the worst rate measured.
FULL_INTERVAL_SECONDS = 1800.0


def tracked_objects() -> int:
    """Objects in the collector's generations (the unfrozen ones it tracks)."""
    return len(gc.get_objects())


class _Users:
    """Exporters of this process that manage the collector (tests run several): the first starts, the
    last stops and unfreezes."""

    lock = threading.Lock()
    count = 0


class FrozenGenerations:
    """Freezes the collector's generations as they fill (see the module's docstring)."""

    def __init__(
        self,
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        freeze_above: int = FREEZE_ABOVE,
        growth: float = GROWTH,
        floor_objects: int = FLOOR_OBJECTS,
        full_interval_seconds: float = FULL_INTERVAL_SECONDS,
        tracked: Callable[[], int] = tracked_objects,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval_seconds
        self._freeze_above = freeze_above
        self._growth = growth
        self._floor = floor_objects
        self._full_interval = full_interval_seconds
        self._tracked = tracked
        self._clock = clock
        self._collected_when = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counted = False
        #: Frozen objects right after the last full collection.
        self._collected_at = 0
        #: Freezes and full collections done (for tests and the debug log).
        self.freezes = 0
        self.full_collections = 0

    def start(self) -> None:
        """Collect and freeze what start-up left (modules, configuration), then watch the generations."""
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
        """Freeze if the generations hold more than ``freeze_above`` objects, and collect the frozen ones
        if they have grown enough and are due; True if it did either."""
        froze = self._tracked() > self._freeze_above
        if froze:
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
        grown = gc.get_freeze_count() - self._collected_at
        due = self._clock() - self._collected_when >= self._full_interval
        if due and grown > max(self._floor, self._growth * self._collected_at):
            self._full_collection()
            return True
        return froze

    def _full_collection(self) -> None:
        started = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._collected_at = gc.get_freeze_count()
        self._collected_when = self._clock()
        self.full_collections += 1
        self.freezes += 1
        log.debug(
            "full garbage collection: %d objects frozen after it, took %.0f ms",
            self._collected_at,
            1000 * (time.monotonic() - started),
        )
