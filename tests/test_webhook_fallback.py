"""Webhooks going silent while runs happen: the reconcile finds runs no event announced, the workspace goes
back to full polling, and the shipped alert's signal rises in a real Prometheus.

Over real HTTP throughout: the simulator's WebhookSender posts signed events to the exporter's receiver,
the exporter polls the simulator, Prometheus scrapes the exporter with the shipped rules. The reconcile
interval and the grace for a late event are shortened (15 s and 2 s) so the test runs in under a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from census_exporter.demo.webhooks import DEMO_WEBHOOK_SECRET, WebhookSender
from tests.conftest import Harness, Scrape, wait_for
from tests.stack import Prometheus
from tests.webhook_harness import WORKSPACE, start_receiving, webhook_url, workspace_with_syncs

RECONCILE_SECONDS = 15.0
GRACE_SECONDS = 2.0
#: Its events keep arriving throughout: webhooks as a whole stay alive, only some deliveries are lost.
HEARTBEAT = 1
ANNOUNCED = 2
SILENT = (3, 4, 5)
LATE = 6


def _gauge(scrape: Scrape, name: str) -> float | None:
    return scrape.value(name, workspace=WORKSPACE)


def _runs(scrape: Scrape, sync_id: int, status: str) -> float:
    return scrape.value("census_sync_runs_total", sync_id=str(sync_id), status=status) or 0.0


def _runs_read(harness: Harness, sync_id: int) -> int:
    return harness.simulator.count(rf"/syncs/{sync_id}/sync_runs$")


def test_silent_webhooks_fall_back_to_full_polling_and_raise_the_alert_signal(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    assert (HEARTBEAT, ANNOUNCED, *SILENT, LATE) == tuple(range(1, LATE + 1))  # the syncs made below
    workspace = workspace_with_syncs(LATE)
    # Every sync's first read done on return (no event yet: full polling).
    harness = start_receiving(
        harness_factory,
        workspace,
        DEMO_WEBHOOK_SECRET,
        cache_ttl=1.0,
        webhook_reconcile_interval_seconds=RECONCILE_SECONDS,
        webhook_announcement_grace_seconds=GRACE_SECONDS,
    )
    started = time.monotonic()
    sender = WebhookSender(webhook_url(harness)).start()
    delivering = {"all": True}

    def deliver(run: dict[str, Any]) -> None:
        if delivering["all"] or int(run["sync_id"]) == HEARTBEAT:
            sender(run)

    workspace.run_listeners.append(deliver)
    prometheus = Prometheus(tmp_path, harness.exporter.port)
    try:
        wait_for(lambda: prometheus.query("census_up == 1"), timeout=30, what="census_up in Prometheus")

        # Healthy: events arrive, so polling slows to the reconcile interval.
        workspace.add_run(HEARTBEAT, "completed")
        wait_for(
            lambda: _gauge(harness.scrape(), "census_webhook_reconciling") == 1,
            timeout=10,
            what="reconciling after the first event",
        )
        workspace.add_run(ANNOUNCED, "failed", error_code="DESTINATION_RATE_LIMITED")
        wait_for(
            lambda: _runs(harness.scrape(), ANNOUNCED, "failed") == 1, timeout=10, what="the announced run"
        )
        scrape = harness.scrape()
        assert _gauge(scrape, "census_webhook_polling_fallback") == 0
        assert _gauge(scrape, "census_webhook_unannounced_runs_total") == 0

        # Deliveries for every sync but the heartbeat are lost from here on; runs keep happening.
        delivering["all"] = False
        workspace.add_run(SILENT[0], "failed", error_code="INVALID_CREDENTIALS")
        workspace.add_run(SILENT[1], "completed")
        workspace.add_run(SILENT[2], "failed", error_code="QUERY_TIMEOUT")
        silent_reads = {sync_id: _runs_read(harness, sync_id) for sync_id in SILENT}
        listings = harness.simulator.count(r"/syncs$")
        wait_for(
            lambda: harness.simulator.count(r"/syncs$") >= listings + 3,
            timeout=10,
            what="three more full refreshes",
        )
        # Full refreshes ran, yet read none of the silent syncs: they wait for the reconcile interval.
        assert time.monotonic() - started < RECONCILE_SECONDS, "too slow to see the reconcile at work"
        assert {sync_id: _runs_read(harness, sync_id) for sync_id in SILENT} == silent_reads
        assert _runs(harness.scrape(), SILENT[0], "failed") == 0

        def fell_back() -> bool:
            workspace.add_run(HEARTBEAT, "completed")  # webhooks as a whole stay alive
            scrape = harness.scrape()
            return _gauge(scrape, "census_webhook_polling_fallback") == 1

        wait_for(
            fell_back,
            timeout=RECONCILE_SECONDS + GRACE_SECONDS + 20,
            interval=0.5,
            what="the fallback to full polling",
        )
        scrape = harness.scrape()
        # The reconcile read found the silent syncs' runs; no event came within the grace: one each.
        assert _gauge(scrape, "census_webhook_unannounced_runs_total") == len(SILENT)
        assert _gauge(scrape, "census_webhook_reconciling") == 0
        # Not because events stopped altogether: the heartbeat's arrived within the last seconds.
        last_event = _gauge(scrape, "census_webhook_last_event_timestamp_seconds")
        assert last_event is not None and time.time() - last_event < 5
        # Each run found counted once, whichever path read it (the runs before the first read are its
        # baseline, not counted).
        assert _runs(scrape, SILENT[0], "failed") == 1
        assert _runs(scrape, SILENT[1], "completed") == 1
        assert _runs(scrape, SILENT[2], "failed") == 1
        assert _runs(scrape, ANNOUNCED, "failed") == 1

        # Full polling: a silent run on a sync the reconcile read just now shows within a few refreshes,
        # long before that sync's next reconcile read would have come.
        workspace.add_run(LATE, "failed", error_code="INVALID_CREDENTIALS")
        wait_for(
            lambda: _runs(harness.scrape(), LATE, "failed") == 1,
            timeout=RECONCILE_SECONDS / 3,
            what="a silent run under full polling",
        )

        # The alert's signal in the real Prometheus with the shipped rules (pending: its for: is 10m).
        wait_for(
            lambda: prometheus.query(
                f'ALERTS{{alertname="CensusWebhooksSilent",workspace="{WORKSPACE}",alertstate="pending"}}'
            ),
            timeout=30,
            what="CensusWebhooksSilent pending",
        )
        # Only silent: every delivery that arrived was verified, none refused.
        assert not prometheus.query(f'ALERTS{{alertname="CensusWebhooksRejected",workspace="{WORKSPACE}"}}')
        assert sender.refused == 0
    finally:
        prometheus.proc.stop()
        sender.close()
