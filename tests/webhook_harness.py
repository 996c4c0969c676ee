"""What the webhook test modules share: a workspace of completed syncs, the exporter harness with its
webhook receiver started, and signed deliveries of event payloads to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from census_exporter.config import TokenSource
from census_exporter.demo import SimulatedWorkspace
from census_exporter.webhooks.signature import sign
from tests.conftest import Harness

#: The name the harness gives its one workspace (the last part of the receiver's path).
WORKSPACE = "default"


def workspace_with_syncs(count: int) -> SimulatedWorkspace:
    """Syncs 1..count, each with one completed run."""
    workspace = SimulatedWorkspace()
    for sync_id in range(1, count + 1):
        workspace.add_sync(sync_id, label=f"Sync {sync_id}")
        workspace.add_run(sync_id, "completed")
    return workspace


def start_receiving(
    harness_factory: Callable[..., Harness], workspace: SimulatedWorkspace, secret: str, **config: Any
) -> Harness:
    """The exporter over ``workspace`` with its webhook listener on a free loopback port, accepting
    ``secret``; every sync's baseline read before it returns. ``config`` goes to the harness."""
    settings: dict[str, Any] = {
        "webhook_listen": ("127.0.0.1", 0),
        "webhook_secrets": (TokenSource(value=secret),),
    } | config
    harness = harness_factory(workspace, **settings)
    assert harness.exporter.webhooks is not None
    harness.exporter.webhooks.start()
    harness.refresh()
    return harness


def webhook_url(harness: Harness, workspace: str = WORKSPACE) -> str:
    """The receiver's URL for ``workspace``."""
    assert harness.exporter.webhooks is not None
    return f"http://127.0.0.1:{harness.exporter.webhooks.port}/webhooks/census/{workspace}"


def deliver(
    harness: Harness,
    payload: dict[str, Any] | bytes,
    *,
    secret: str | None,
    workspace: str = WORKSPACE,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``payload`` (JSON-encoded unless bytes) as Census would, signed with ``secret`` unless None;
    ``headers`` are added last (they may replace the content type or the signature)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json"}
    if secret is not None:
        sent["X-Signature"] = sign(body, secret)
    sent |= headers or {}
    return harness.http.post(webhook_url(harness, workspace), content=body, headers=sent)


def webhook_event(
    sync_id: int, run_id: int, event: str = "sync.failed", workspace_id: int = 3167
) -> dict[str, Any]:
    """A lifecycle event's payload, in the shape of Census's examples."""
    return {"workspace_id": workspace_id, "sync_id": sync_id, "sync_run_id": run_id, "event": event}
