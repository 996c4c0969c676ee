"""`make demo` with webhooks, as a real process: the simulator's signed events reach the receiver and the
workspace turns to the reconcile interval (what the demo is meant to show); none arrives before the
exporter has listed the syncs, so a fresh demo shows no ``unknown_sync``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from census_exporter.config import TokenSource
from census_exporter.demo.webhooks import DEMO_WEBHOOK_SECRET, WebhookSender
from tests.conftest import Harness, Scrape, parse_scrape, wait_for
from tests.stack import Process, free_port
from tests.webhook_harness import WORKSPACE, webhook_url, workspace_with_syncs  # the demo's: the default name


def _requests(scrape: Scrape, result: str) -> float | None:
    return scrape.value("census_webhook_requests_total", workspace=WORKSPACE, result=result)


def test_the_sender_holds_its_events_until_the_exporter_has_listed_the_syncs(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = workspace_with_syncs(2)
    harness = harness_factory(
        workspace,
        cache_ttl=3600.0,
        webhook_listen=("127.0.0.1", 0),
        webhook_secrets=(TokenSource(value=DEMO_WEBHOOK_SECRET),),
    )
    assert harness.exporter.webhooks is not None
    harness.exporter.webhooks.start()  # the receiver answers; no refresh has listed the syncs yet
    asked: list[bool] = []

    def ready() -> bool:
        asked.append(harness.exporter.refresher.snapshot.listed)
        return asked[-1]

    sender = WebhookSender(webhook_url(harness), ready=ready).start()
    workspace.run_listeners.append(sender)
    try:
        workspace.add_run(1, "failed")  # its two events are queued at once
        wait_for(lambda: len(asked) >= 3, what="the sender to ask three times whether the exporter is ready")
        assert sender.sent == sender.refused == 0
        assert _requests(harness.scrape(), "unknown_sync") == 0
        harness.refresh()  # the first listing
        wait_for(lambda: sender.sent == 2, what=lambda: f"both events posted: sent={sender.sent}")
        scrape = harness.scrape()
        assert _requests(scrape, "accepted") == 2
        assert _requests(scrape, "unknown_sync") == 0
    finally:
        sender.close()


@pytest.mark.slow  # 5-6 s: test-fast keeps to tests under ~5 s
def test_the_demo_posts_signed_webhooks_that_the_receiver_takes(tmp_path: Path) -> None:
    port, hooks = free_port(), free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "census_exporter",
            "--demo",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.webhook-listen-address=127.0.0.1:{hooks}",
        ],
        tmp_path / "demo.log",
    )
    try:
        scrapes: list[Scrape] = []

        def scrape() -> Scrape | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            except httpx.HTTPError:
                return None
            if response.status_code != 200:
                return None
            scrapes.append(parse_scrape(response.text))
            return scrapes[-1]

        def reconciling() -> Scrape | None:
            found = scrape()
            if found is None or found.value("census_webhook_reconciling", workspace=WORKSPACE) != 1:
                return None
            return found

        found = wait_for(reconciling, timeout=60, what=lambda: f"the demo's webhooks: {process.output()}")
        assert (_requests(found, "accepted") or 0) > 0
        # The simulator's runs began before the exporter's first listing; their events waited for it.
        assert [_requests(each, "unknown_sync") for each in scrapes] == [0] * len(scrapes)
        # Only verified deliveries: the sender signs with the secret the demo's receiver takes.
        assert not _requests(found, "bad_signature")
        log = process.output()
        assert "the simulator posts signed webhooks for its runs to http://127.0.0.1:" in log
    finally:
        process.stop()
