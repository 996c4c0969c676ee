"""DaemonPool: a fixed set of daemon worker threads that run callables and return futures.

The standard ThreadPoolExecutor joins its threads when the interpreter exits, so a refresh blocked on a slow
Census API would hold up a SIGTERM'd exporter for as long as the refresh deadline. The exporter keeps nothing
that needs flushing, so its background work runs on daemon threads that end with the process.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Task = tuple[Callable[[], Any], "Future[Any]"]


class DaemonPool:
    """Runs submitted callables on ``workers`` daemon threads."""

    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``function(*args)``; its result or exception arrives through the returned future.

        It runs in a copy of the caller's context, so context variables (the workspace of log lines) follow.

        After :meth:`shutdown` no worker is left to run it: the future comes back already cancelled.
        """
        future: Future[T] = Future()
        if self._closed:
            future.cancel()
        else:
            context = contextvars.copy_context()
            self._tasks.put((lambda: context.run(function, *args), future))
        return future

    @property
    def workers(self) -> int:
        """How many threads run the tasks."""
        return len(self._threads)

    def backlog(self) -> int:
        """Tasks queued that no worker has taken yet (approximate while tasks come and go)."""
        return self._tasks.qsize()

    def shutdown(self) -> None:
        """Let the workers finish their current task and stop; queued tasks are cancelled."""
        self._closed = True
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[1].cancel()
        for _ in self._threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            function, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function())
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(error)
