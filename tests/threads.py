"""Counting the exporter's own threads, for the tests that bound them (mark those serial: the count is of
this process's threads, and in a parallel worker an earlier test's exporter may still be ending its own)."""

from __future__ import annotations

import threading

#: The simulator's own threads (census_exporter.demo), which share the exporter's "census-" prefix.
SIMULATOR_THREADS = frozenset({"census-simulator", "census-churn"})


def exporter_threads() -> int:
    """Threads of the exporter's own background work, the garbage collector's ``census-gc`` among them
    (the simulator's and the HTTP server's are not)."""
    return sum(
        thread.name.startswith("census-") and thread.name not in SIMULATOR_THREADS
        for thread in threading.enumerate()
    )
