"""The landing page tells a new user what the exporter sees, without trusting anything the API sent."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from census_exporter.demo import SimulatedWorkspace
from census_exporter.landing import MAX_LISTED_FAILURES, RUNBOOK_URL, render_landing_page
from census_exporter.snapshot import FleetView, Snapshot, SyncState
from tests.conftest import HarnessFactory, wait_for
from tests.factories import make_run, make_sync

REPO = Path(__file__).resolve().parent.parent
US = "https://app.getcensus.com/api/v1"
EU = "https://app-eu.getcensus.com/api/v1"


def sync_state(sync_id: int, label: str, status: str = "completed") -> SyncState:
    sync = make_sync(
        sync_id,
        label=label,
        source_connection_id=1,
        destination_connection_id=2,
        destination_object="Contact",
        schedule="hourly",
    )
    run = make_run(sync_id * 10, status, sync_id=sync_id, created_at=1.0, updated_at=2.0, completed_at=2.0)
    return SyncState(sync=sync, latest_run=run)


def page(snapshot: Snapshot, api_url: str | None = US, ttl: float | None = 60) -> str:
    view = FleetView((replace(snapshot, api_url=api_url),))
    return render_landing_page(view, "/metrics", cache_ttl_seconds=ttl).decode()


def test_before_the_first_list_the_counts_are_unknown_not_zero() -> None:
    text = page(Snapshot(workspace="default"))
    assert "<th>Syncs</th><td>unknown</td>" in text
    assert "<th>Newest run failed</th><td>unknown</td>" in text
    assert "first refresh in progress" in text


def test_a_failed_refresh_shows_its_cause() -> None:
    snapshot = Snapshot(workspace="default", refreshed=True, last_error="401: token rejected")
    assert "down: 401: token rejected" in page(snapshot)


def test_the_page_shows_api_url_without_credentials_ttl_and_refresh_times() -> None:
    now = time.time()
    snapshot = Snapshot(
        workspace="default",
        refreshed=True,
        up=True,
        listed=True,
        last_success_timestamp=now,
        refresh_duration_seconds=1.25,
        started_monotonic=time.monotonic() - 1.25,
    )
    text = page(snapshot, api_url="https://user:secret@proxy.example/api/v1", ttl=120)
    assert "https://proxy.example/api/v1" in text and "secret" not in text
    assert "<th>Cache TTL</th><td>120 s</td>" in text
    assert re.search(r"<th>Last refresh</th><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(took 1\.2 s\)", text)
    assert time.strftime("%Y-%m-%d", time.gmtime(now)) in text
    assert "<th>Syncs</th><td>0</td>" in text


@pytest.mark.parametrize(
    ("api_url", "link"),
    [(US, "https://app.getcensus.com/syncs/7"), (EU, "https://app-eu.getcensus.com/syncs/7"), (None, None)],
)
def test_failing_syncs_are_listed_escaped_and_linked_only_for_census_hosts(
    api_url: str | None, link: str | None
) -> None:
    hostile = '<script>alert("x")</script>'
    syncs = {7: sync_state(7, hostile, "failed"), 8: sync_state(8, "Fine")}
    text = page(Snapshot(workspace="w", refreshed=True, listed=True, syncs=syncs), api_url=api_url)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "<th>Newest run failed</th><td>1</td>" in text
    assert "Fine" not in text
    if link:
        assert f'<a href="{link}">' in text
    else:
        assert "/syncs/7" not in text


def test_a_proxy_or_plain_http_host_gets_no_links() -> None:
    syncs = {7: sync_state(7, "Orders", "failed")}
    snapshot = Snapshot(workspace="w", refreshed=True, listed=True, syncs=syncs)
    for api_url in ("https://census-proxy.internal/api/v1", "http://app.getcensus.com/api/v1"):
        assert "/syncs/7" not in page(snapshot, api_url=api_url)


def test_the_failing_list_is_bounded() -> None:
    count = MAX_LISTED_FAILURES + 5
    syncs = {i: sync_state(i, f"Sync {i:03d}", "failed") for i in range(1, count + 1)}
    text = page(Snapshot(workspace="w", refreshed=True, listed=True, syncs=syncs))
    assert text.count("/syncs/") == MAX_LISTED_FAILURES
    assert "and 5 more" in text
    assert f"<th>Newest run failed</th><td>{count}</td>" in text


def test_over_http_a_rejected_token_shows_unknown_counts_and_the_cause(
    harness_factory: HarnessFactory,
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="Orders")
    harness = harness_factory(workspace, token="secret-token:wrong-value", start=True)
    wait_for(lambda: harness.get("/readyz").status_code == 200, what="the first refresh")
    response = harness.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<th>Syncs</th><td>unknown</td>" in response.text
    assert re.search(r"down: [^<]*401", response.text), response.text
    assert "secret-token" not in response.text
    # The running exporter hands the page its API URL and TTL (not only the pure function's tests).
    assert f"<td>{html.escape(harness.simulator.url)}</td>" in response.text
    assert "<th>Cache TTL</th>" in response.text


def test_the_page_alone_keeps_the_data_fresh(harness_factory: HarnessFactory) -> None:
    """make demo runs no Prometheus: a person watching / must still see runs fail, without any scrape."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="Orders")
    harness = harness_factory(workspace, start=True, cache_ttl=1.0)
    wait_for(lambda: "<th>Syncs</th><td>1</td>" in harness.get("/").text, what="the first refresh")
    workspace.add_run(1, "failed", error_code="INVALID_CREDENTIALS")
    # Only / is asked for: before, nothing but a scrape of /metrics started a refresh, and this timed out.
    wait_for(lambda: "Orders" in harness.get("/").text, what="the failed run on the page, with no scrape")


def test_a_failed_sync_shows_its_id_error_code_and_the_runbook(harness_factory: HarnessFactory) -> None:
    """Issue 21: the page listed failed syncs by name only; an operator needs the id, the code and what
    to do. The error code comes from the API: it is escaped like every other API text."""
    workspace = SimulatedWorkspace()
    workspace.add_sync(41, label="Orders")
    workspace.add_sync(42, label="Leads")
    workspace.add_run(41, "failed", error_code="INVALID_CREDENTIALS")
    workspace.add_run(42, "failed", error_code='<img src=x onerror="alert(1)">')
    harness = harness_factory(workspace, start=True)

    def both_listed() -> str | None:
        text = harness.get("/").text
        return text if "Leads" in text and "Orders" in text else None

    text = wait_for(both_listed, what="both failed syncs on the page")
    assert "Orders (sync id 41): <code>INVALID_CREDENTIALS</code></li>" in text
    assert "<img" not in text
    assert "Leads (sync id 42): <code>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</code></li>" in text
    assert f'<a href="{RUNBOOK_URL}">the runbook</a>' in text
    assert RUNBOOK_URL.endswith("#censussyncfailed")
    runbook = (REPO / "docs" / "runbook.md").read_text()
    assert "\n## CensusSyncFailed\n" in runbook, "the link's anchor names a runbook section"
    assert "Demo:" not in text, "a real (here: simulated but not --demo) workspace is no demo"


def test_a_failed_run_without_an_error_code_says_so() -> None:
    syncs = {7: sync_state(7, "Orders", "failed")}
    text = page(Snapshot(workspace="w", refreshed=True, listed=True, syncs=syncs), api_url=None)
    assert "<li>Orders (sync id 7): no error code</li>" in text


def test_the_demo_says_it_is_the_demo() -> None:
    """The real CLI with --demo, over HTTP: the page says the data is simulated."""
    argv = [sys.executable, "-m", "census_exporter", "--demo", "--demo.syncs", "3"]
    argv += ["--web.listen-address", "127.0.0.1:0"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    process = subprocess.Popen(argv, env=clean, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        stderr = process.stderr

        def listening() -> str | None:
            found = re.search(r"(http://\S+?)/metrics", stderr.readline())
            return found[1] if found else None

        base = wait_for(listening, timeout=30, interval=0, what="the listening log line")
        text = httpx.get(f"{base}/", timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert "<strong>Demo:</strong>" in text and "simulated" in text and "<code>--demo</code>" in text
