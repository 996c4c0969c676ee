"""The webhook receiver over real HTTP: signed events make runs visible at once; hostile deliveries change
nothing; the poller and the webhook path count each run once."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from census_exporter.config import TokenSource
from census_exporter.demo import SimulatedWorkspace
from census_exporter.webhooks.app import MAX_BODY_BYTES
from census_exporter.webhooks.signature import sign
from tests.conftest import Harness, Scrape, wait_for
from tests.webhook_harness import (
    WORKSPACE,
    deliver,
    start_receiving,
    webhook_event,
    webhook_url,
    workspace_with_syncs,
)

SECRET = "whsec-test-6b1d0e"
OTHER_SECRET = "whsec-other-91ac"


def _start(harness_factory: Callable[..., Harness], workspace: SimulatedWorkspace, **config: Any) -> Harness:
    # No poll can be what shows a run: only the webhook path.
    return start_receiving(harness_factory, workspace, SECRET, **({"cache_ttl": 3600.0} | config))


def _post(
    harness: Harness,
    payload: dict[str, Any] | bytes,
    *,
    secret: str | None = SECRET,
    workspace: str = WORKSPACE,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return deliver(harness, payload, secret=secret, workspace=workspace, headers=headers)


def _failed(scrape: Scrape, sync_id: int) -> float | None:
    return scrape.value("census_sync_runs_total", sync_id=str(sync_id), status="failed")


def _requests(scrape: Scrape, result: str) -> float | None:
    return scrape.value("census_webhook_requests_total", workspace=WORKSPACE, result=result)


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_signed_failure_is_in_metrics_at_once_for_each_of_50_events(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = workspace_with_syncs(50)
    harness = _start(harness_factory, workspace)
    listings = harness.simulator.count(r"/syncs$")
    latencies = []
    for sync_id in range(1, 51):
        run = workspace.add_run(sync_id, "failed", error_code="DESTINATION_RATE_LIMITED")
        sent = time.monotonic()
        assert _post(harness, webhook_event(sync_id, int(run["id"]))).status_code == 202
        wait_for(lambda s=sync_id: _failed(harness.scrape(), s) == 1, timeout=10, interval=0.01)
        latencies.append(time.monotonic() - sent)
    scrape = harness.scrape()
    # A structural bound with a wide margin (the TTL is an hour: only the webhook path can show it); the
    # benchmark measures the latency itself.
    assert max(latencies) < 10
    assert sum(_failed(scrape, s) or 0 for s in range(1, 51)) == 50
    assert _requests(scrape, "accepted") == 50
    assert scrape.value("census_webhook_reads_total", workspace=WORKSPACE) == 50
    assert scrape.value("census_webhook_events_total", workspace=WORKSPACE, event="sync.failed") == 50
    assert scrape.value("census_webhook_last_event_timestamp_seconds", workspace=WORKSPACE) is not None
    # Each event read its sync's runs; none listed the syncs again.
    assert harness.simulator.count(r"/syncs$") == listings


def test_a_replayed_event_is_ignored_and_counted_once(harness_factory: Callable[..., Harness]) -> None:
    workspace = workspace_with_syncs(2)
    harness = _start(harness_factory, workspace)
    run = workspace.add_run(1, "failed")
    event = webhook_event(1, int(run["id"]))
    assert _post(harness, event).status_code == 202
    wait_for(lambda: _failed(harness.scrape(), 1) == 1, timeout=10)
    for _ in range(5):
        assert _post(harness, event).status_code == 200
    # A full refresh (the poller) meets the same ledger: the run stays counted once.
    harness.refresh()
    scrape = harness.scrape()
    assert _failed(scrape, 1) == 1
    assert _requests(scrape, "duplicate") == 5
    assert scrape.value("census_webhook_events_total", workspace=WORKSPACE, event="sync.failed") == 1


def test_an_event_for_a_run_already_counted_reads_nothing(harness_factory: Callable[..., Harness]) -> None:
    workspace = workspace_with_syncs(1)
    harness = _start(harness_factory, workspace)
    run = workspace.add_run(1, "failed")
    harness.refresh()  # the poller counts it first
    reads = harness.simulator.count(r"/sync_runs")
    assert _post(harness, webhook_event(1, int(run["id"]), "sync.completed")).status_code == 202
    wait_for(lambda: harness.scrape().value("census_webhook_events_total", event="sync.completed") == 1)
    assert harness.simulator.count(r"/sync_runs") == reads
    assert _failed(harness.scrape(), 1) == 1


@pytest.mark.parametrize(
    ("case", "status", "result"),
    [
        ("no signature", 401, "bad_signature"),
        ("wrong secret", 401, "bad_signature"),
        ("garbage signature", 401, "bad_signature"),
        ("signature of another body", 401, "bad_signature"),
        ("text/plain", 415, "unsupported_media_type"),
        ("not json", 400, "malformed"),
        ("array", 400, "malformed"),
        ("sync_id a string word", 400, "malformed"),
        ("sync_id missing", 400, "malformed"),
        ("sync_run_id a float", 400, "malformed"),
        ("deep nesting", 400, "malformed"),
        ("oversized", 413, "too_large"),
        ("GET", 405, "method_not_allowed"),
    ],
)
def test_bad_deliveries_are_refused_and_change_nothing(
    harness_factory: Callable[..., Harness], case: str, status: int, result: str
) -> None:
    workspace = workspace_with_syncs(1)
    harness = _start(harness_factory, workspace)
    run = workspace.add_run(1, "failed")
    event = webhook_event(1, int(run["id"]))
    body = json.dumps(event).encode()
    reads = harness.simulator.count(r"/sync_runs")
    if case == "no signature":
        response = _post(harness, event, secret=None)
    elif case == "wrong secret":
        response = _post(harness, event, secret=OTHER_SECRET)
    elif case == "garbage signature":
        response = _post(harness, event, secret=None, headers={"X-Signature": "%%%not base64" * 30})
    elif case == "signature of another body":
        other = json.dumps(webhook_event(1, int(run["id"]) + 1)).encode()
        response = _post(harness, body, secret=None, headers={"X-Signature": sign(other, SECRET)})
    elif case == "text/plain":
        response = _post(harness, event, headers={"Content-Type": "text/plain"})
    elif case == "not json":
        response = _post(harness, b"{not json")
    elif case == "array":
        response = _post(harness, b"[1, 2]")
    elif case == "sync_id a string word":
        response = _post(harness, event | {"sync_id": "one"})
    elif case == "sync_id missing":
        response = _post(harness, {k: v for k, v in event.items() if k != "sync_id"})
    elif case == "sync_run_id a float":
        response = _post(harness, event | {"sync_run_id": 1.5})
    elif case == "deep nesting":
        response = _post(harness, b"[" * 4000 + b"]" * 4000)
    elif case == "oversized":
        response = _post(harness, event | {"details": "x" * (MAX_BODY_BYTES + 1)})
    else:
        response = harness.http.get(webhook_url(harness))
    assert response.status_code == status, response.text
    scrape = harness.scrape()
    assert _requests(scrape, result) == 1
    assert _failed(scrape, 1) == 0
    assert harness.simulator.count(r"/sync_runs") == reads
    assert scrape.value("census_webhook_last_event_timestamp_seconds", workspace=WORKSPACE) is None
    assert SECRET not in scrape.text


def test_an_unknown_workspace_is_404_without_a_label_of_its_own(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory, workspace_with_syncs(1))
    for name in ("nope", "x" * 500, "%00", "default/extra"):
        assert _post(harness, webhook_event(1, 2), workspace=name).status_code == 404
    scrape = harness.scrape()
    assert scrape.value("census_webhook_requests_total", workspace="", result="unknown_workspace") == 4
    assert {dict(labels)["workspace"] for labels in scrape.all("census_webhook_requests_total")} == {
        "",
        WORKSPACE,
    }


def test_any_accepted_secret_verifies_during_a_rotation(
    harness_factory: Callable[..., Harness], tmp_path: Any
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text(SECRET + "\n")
    new.write_text(OTHER_SECRET)
    workspace = workspace_with_syncs(2)
    harness = _start(
        harness_factory,
        workspace,
        webhook_secrets=(TokenSource(path=str(old)), TokenSource(path=str(new))),
    )
    first = workspace.add_run(1, "failed")
    second = workspace.add_run(2, "failed")
    assert _post(harness, webhook_event(1, int(first["id"])), secret=SECRET).status_code == 202
    assert _post(harness, webhook_event(2, int(second["id"])), secret=OTHER_SECRET).status_code == 202
    old.write_text("retired-secret")  # the old one is replaced: its signatures stop verifying
    third = workspace.add_run(1, "failed")
    assert _post(harness, webhook_event(1, int(third["id"])), secret=SECRET).status_code == 401
    wait_for(lambda: _failed(harness.scrape(), 2) == 1)


def _raw(harness: Harness, request: bytes, wait: float = 5.0) -> bytes:
    """Send ``request`` as is on a new connection; what came back before the server closed or ``wait``."""
    assert harness.exporter.webhooks is not None
    with socket.create_connection(("127.0.0.1", harness.exporter.webhooks.port), timeout=wait) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except TimeoutError:
            pass
        return received


def _request_head(body_headers: str) -> bytes:
    return (
        f"POST /webhooks/census/{WORKSPACE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{body_headers}\r\n"
    ).encode()


def test_a_lying_length_or_a_huge_chunk_holds_no_worker_and_reads_nothing(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _start(harness_factory, workspace_with_syncs(1))
    assert harness.exporter.webhooks is not None
    # A Content-Length far above the cap: refused at once, unread.
    answer = _raw(harness, _request_head("Content-Length: 1000000000\r\n") + b"{")
    assert answer.startswith(b"HTTP/1.1 413")
    # A chunk announced larger than the cap: refused before its data arrives.
    answer = _raw(harness, _request_head("Transfer-Encoding: chunked\r\n") + b"FFFFFF\r\nabc")
    assert answer.startswith(b"HTTP/1.1 413")
    # No length at all: 411.
    assert _raw(harness, _request_head("")).startswith(b"HTTP/1.1 411")
    # A length promising more than is sent waits in the selector (no worker), then the connection closes.
    stalled = [
        socket.create_connection(("127.0.0.1", harness.exporter.webhooks.port), timeout=10) for _ in range(20)
    ]
    try:
        for sock in stalled:
            sock.sendall(_request_head("Content-Length: 500\r\n") + b'{"event":')
        # With 20 stalled senders (5 times the workers), a real delivery still gets its answer at once.
        started = time.monotonic()
        assert _post(harness, webhook_event(1, 99)).status_code == 202
        assert time.monotonic() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()


def test_a_signed_chunked_body_within_the_cap_is_taken(harness_factory: Callable[..., Harness]) -> None:
    workspace = workspace_with_syncs(1)
    harness = _start(harness_factory, workspace)
    run = workspace.add_run(1, "failed")
    body = json.dumps(webhook_event(1, int(run["id"]))).encode()
    chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:]))
    request = _request_head(f"Transfer-Encoding: chunked\r\nX-Signature: {sign(body, SECRET)}\r\n")
    assert _raw(harness, request + chunked + b"0\r\n\r\n").startswith(b"HTTP/1.1 202")
    wait_for(lambda: _failed(harness.scrape(), 1) == 1)


def test_a_flood_from_one_address_is_rate_limited_and_answered_fast(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = workspace_with_syncs(1)
    harness = _start(harness_factory, workspace, webhook_max_requests_per_second=5.0)
    answers = []
    slowest = 0.0
    for n in range(200):
        started = time.monotonic()
        answers.append(_post(harness, webhook_event(1, 1000 + n), secret=OTHER_SECRET).status_code)
        slowest = max(slowest, time.monotonic() - started)
    assert answers.count(429) >= 150
    assert set(answers) <= {401, 429}
    assert slowest < 1.0
    scrape = harness.scrape()
    assert _requests(scrape, "rate_limited") == answers.count(429)
    assert _failed(scrape, 1) == 0


def test_the_receiver_is_off_by_default_and_metrics_has_no_webhook_path(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = harness_factory(workspace_with_syncs(1))
    assert harness.exporter.webhooks is None
    response = harness.http.post(
        harness.base_url + "/webhooks/census/default",
        content=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413  # the metrics listener takes no bodies at all
    assert "census_webhook_requests_total" not in harness.scrape().text


def test_neither_a_body_nor_a_secret_reaches_the_log(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    workspace = workspace_with_syncs(2)
    harness = _start(harness_factory, workspace)
    marker = "BODY-MARKER-7f3a"
    run = workspace.add_run(1, "failed")
    alert = webhook_event(1, int(run["id"]), "sync.alert.raised") | {
        "message": marker,
        "details": {"why": marker},
    }
    answers = [
        _post(harness, alert).status_code,  # taken
        _post(harness, alert).status_code,  # a duplicate
        _post(harness, alert, secret=OTHER_SECRET).status_code,
        _post(harness, alert, secret=None).status_code,
        _post(harness, f'{{"{marker}": '.encode()).status_code,
        _post(harness, alert | {"sync_id": marker}).status_code,
        _post(harness, alert | {"pad": marker * 1000}).status_code,
        _post(harness, alert, workspace=marker).status_code,
        _post(harness, alert, headers={"Content-Type": f"text/{marker}"}).status_code,
    ]
    assert answers == [202, 200, 401, 401, 400, 400, 413, 404, 415]
    wait_for(lambda: _failed(harness.scrape(), 1) == 1)
    # The exporter's own records (the test's HTTP client logs the URLs it asks for).
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("census_exporter")
    )
    assert logged, "the exporter logged nothing at DEBUG: the test would show nothing"
    for secret in (SECRET, OTHER_SECRET, sign(json.dumps(alert).encode(), SECRET)):
        assert secret not in logged
    assert marker not in logged


def test_the_rate_limit_is_per_source_address(harness_factory: Callable[..., Harness]) -> None:
    workspace = workspace_with_syncs(2)
    harness = _start(harness_factory, workspace, webhook_max_requests_per_second=5.0)
    flood = [_post(harness, webhook_event(1, 5000 + n), secret=OTHER_SECRET).status_code for n in range(150)]
    assert flood.count(429) >= 100
    # Another source address (loopback has the whole of 127/8) still gets through during the flood.
    run = workspace.add_run(2, "failed")
    body = json.dumps(webhook_event(2, int(run["id"]))).encode()
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as other:
        answer = other.post(
            webhook_url(harness),
            content=body,
            headers={"Content-Type": "application/json", "X-Signature": sign(body, SECRET)},
        )
    assert answer.status_code == 202
    wait_for(lambda: _failed(harness.scrape(), 2) == 1)
