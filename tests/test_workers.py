"""DaemonPool: futures carry results and exceptions, work is bounded, and shutdown cancels the queue."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from census_exporter.workers import DaemonPool


def test_results_and_exceptions_arrive_through_futures() -> None:
    pool = DaemonPool(2, "test")
    assert pool.submit(lambda a, b: a + b, 2, 3).result(timeout=5) == 5

    def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pool.submit(broken).result(timeout=5)
    pool.shutdown()


def test_at_most_n_tasks_run_at_once_and_shutdown_cancels_queued_ones() -> None:
    pool = DaemonPool(2, "test")
    release = threading.Event()
    running = threading.Semaphore(0)
    active, peak = [0], [0]
    lock = threading.Lock()

    def task() -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        running.release()
        release.wait(timeout=10)
        with lock:
            active[0] -= 1
        return 1

    futures = [pool.submit(task) for _ in range(5)]
    assert running.acquire(timeout=5) and running.acquire(timeout=5)
    pool.shutdown()
    release.set()
    assert [f.result(timeout=5) for f in futures[:2]] == [1, 1]
    assert all(f.cancelled() for f in futures[2:])
    assert peak[0] == 2
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("test-"))


def test_work_submitted_after_shutdown_is_cancelled_not_left_hanging() -> None:
    pool = DaemonPool(1, "test-closed")
    pool.shutdown()
    future = pool.submit(lambda: 1)
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result(timeout=5)
