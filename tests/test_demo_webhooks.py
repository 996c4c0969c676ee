"""`make demo` with webhooks, as a real process: the simulator's signed events reach the receiver and the
workspace turns to the reconcile interval (what the demo is meant to show)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Scrape, parse_scrape, wait_for
from tests.stack import Process, free_port
from tests.webhook_harness import WORKSPACE  # the demo's one workspace has the default name too


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

        def scrape() -> Scrape | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            except httpx.HTTPError:
                return None
            return parse_scrape(response.text) if response.status_code == 200 else None

        def reconciling() -> Scrape | None:
            found = scrape()
            if found is None or found.value("census_webhook_reconciling", workspace=WORKSPACE) != 1:
                return None
            return found

        found = wait_for(reconciling, timeout=60, what=lambda: f"the demo's webhooks: {process.output()}")
        assert (found.value("census_webhook_requests_total", workspace=WORKSPACE, result="accepted") or 0) > 0
        # Only verified deliveries: the sender signs with the secret the demo's receiver takes.
        assert not found.value("census_webhook_requests_total", workspace=WORKSPACE, result="bad_signature")
        log = process.output()
        assert "the simulator posts signed webhooks for its runs to http://127.0.0.1:" in log
    finally:
        process.stop()
