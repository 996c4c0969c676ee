"""WebhookSender: the simulator's Census sync lifecycle webhooks, signed as Census signs them.

Opt-in: attach one to a :class:`SimulatedWorkspace` and each run it adds or finishes is posted to ``url``
(``sync.started`` when a run starts; ``sync.completed`` with ``status`` ``ok`` or ``emergency`` and then
``sync.success`` or ``sync.failed`` when it ends), with ``X-Signature`` = base64(HMAC-SHA256(body,
secret)). Posting happens on one background thread from a bounded queue, so the simulated API never waits
on the receiver; events beyond the queue are dropped (and counted), as a lost delivery would be. Given
``ready``, nothing is posted until it returns True (the exporter has listed the syncs): the events of runs
the simulator starts meanwhile wait in the queue, so none reaches the receiver before it knows the syncs
(each would be answered ``unknown_sync``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from census_exporter.webhooks.signature import sign

log = logging.getLogger(__name__)

JSON = dict[str, Any]
QUEUE_SIZE = 10_000
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105 - the simulator's own, public, secret
DEMO_WORKSPACE_ID = 3167
#: How often the sender asks whether the exporter is ready, until it is.
READY_POLL_SECONDS = 0.1


class WebhookSender:
    """Posts signed lifecycle events for the runs of one simulated workspace."""

    def __init__(
        self,
        url: str,
        secret: str = DEMO_WEBHOOK_SECRET,
        workspace_id: int = DEMO_WORKSPACE_ID,
        *,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.url = url
        self._ready = ready
        self._stopping = threading.Event()
        self._secret = secret
        self._workspace_id = workspace_id
        self._queue: queue.Queue[JSON | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._client = httpx.Client(timeout=5.0)
        self._thread = threading.Thread(target=self._post_all, name="demo-webhooks", daemon=True)
        self._lock = threading.Lock()
        self._seen: dict[int, str] = {}
        self.sent = 0
        self.dropped = 0
        self.refused = 0
        #: Called with (event payload, monotonic time posted) after each answered post (the benchmark).
        self.on_sent: list[Any] = []

    def start(self) -> WebhookSender:
        """Start posting."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop after the events queued so far (bounded wait); before ``ready``, without posting them."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=5.0)
        self._client.close()

    def __call__(self, run: JSON) -> None:
        """A run was added or changed: queue the events its new status means (each once)."""
        status = str(run.get("status"))
        run_id = int(run["id"])
        with self._lock:
            if self._seen.get(run_id) == status:
                return
            self._seen[run_id] = status
            if len(self._seen) > 50_000:
                self._seen.pop(next(iter(self._seen)))
        base = {"workspace_id": self._workspace_id, "sync_id": int(run["sync_id"]), "sync_run_id": run_id}
        if status in ("queued", "working"):
            events = [base | {"event": "sync.started"}]
        elif status == "failed":
            events = [
                base | {"event": "sync.completed", "status": "emergency"},
                base | {"event": "sync.failed"},
            ]
        elif status == "completed":
            events = [base | {"event": "sync.completed", "status": "ok"}, base | {"event": "sync.success"}]
        else:
            events = [base | {"event": "sync.completed", "status": "ok"}]
        for event in events:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1

    def _post_all(self) -> None:
        ready = self._ready
        while ready is not None and not ready():
            if self._stopping.wait(READY_POLL_SECONDS):
                return
        while (event := self._queue.get()) is not None:
            body = json.dumps(event).encode()
            headers = {"Content-Type": "application/json", "X-Signature": sign(body, self._secret)}
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as error:
                log.debug("webhook post failed: %s", type(error).__name__)
                self.refused += 1
                continue
            if response.status_code >= 300:
                self.refused += 1
            else:
                self.sent += 1
            for listener in self.on_sent:
                listener(event, time.monotonic())
