"""Attacks on the webhook receiver the issue 20 review found to work, over real HTTP: clients that pipeline
requests and never read the answers, and a secret file removed to withdraw its secret."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from census_exporter.config import TokenSource
from census_exporter.refresh import announcements
from census_exporter.webhooks.receiver import WEBHOOK_LIMITS
from census_exporter.webhooks.signature import sign
from tests.conftest import Harness, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-adversary-3e07"
OTHER_SECRET = "whsec-adversary-next-88d1"

#: Requests a hog sends in one write: answers pile up unread until the socket buffers are full.
_PIPELINED = f"GET /webhooks/census/{WORKSPACE} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 500


class _Hogs:
    """Connections that pipeline requests for as long as the server takes them, reading no answer."""

    def __init__(self, port: int, count: int) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: Hogs the server cut off (their answers went untaken for too long).
        self.cut_off = 0
        self._sockets = []
        for _ in range(count):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            self._sockets.append(sock)
        self._threads = [
            threading.Thread(target=self._pipeline, args=(s,), daemon=True) for s in self._sockets
        ]

    def __enter__(self) -> _Hogs:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def _pipeline(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                sock.sendall(_PIPELINED)  # blocks while the server reads nothing more
        except OSError:
            if not self._stop.is_set():
                with self._lock:
                    self.cut_off += 1


@pytest.mark.slow  # six stalled connections, each held until its send grace ends: about 10 s
def test_clients_that_pipeline_and_never_read_do_not_hold_the_receiver(
    harness_factory: Callable[..., Harness],
) -> None:
    workspace = workspace_with_syncs(2)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    assert harness.exporter.webhooks is not None
    hogs = WEBHOOK_LIMITS.workers + 2
    slowest, deliveries = 0.0, 0
    with _Hogs(harness.exporter.webhooks.port, hogs) as hogging:
        # Each hog's answers fill the socket buffers both ways (seconds of pipelining), and then its worker
        # waits to write more: until the server cuts the hogs off, every worker may be waiting.
        deadline = time.monotonic() + 120
        while hogging.cut_off < hogs and time.monotonic() < deadline:
            run = workspace.add_run(1, "failed")
            started = time.monotonic()
            assert deliver(harness, webhook_event(1, int(run["id"])), secret=SECRET).status_code == 202
            slowest = max(slowest, time.monotonic() - started)
            deliveries += 1
            assert slowest < 1.0, (
                f"delivery {deliveries} waited {slowest:.1f}s behind clients reading nothing"
            )
            time.sleep(0.1)
        assert hogging.cut_off == hogs  # each got stuck, and was cut off
    started = time.monotonic()
    assert harness.scrape().value("census_up") == 1
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("removed", ["old", "new"])
def test_a_removed_secret_file_no_longer_verifies(
    harness_factory: Callable[..., Harness], tmp_path: Path, removed: str, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"old": tmp_path / "old", "new": tmp_path / "new"}
    files["old"].write_text(SECRET + "\n")
    files["new"].write_text(OTHER_SECRET)
    secret_of = {"old": SECRET, "new": OTHER_SECRET}
    kept = "new" if removed == "old" else "old"
    workspace = workspace_with_syncs(2)
    harness = start_receiving(
        harness_factory,
        workspace,
        SECRET,
        cache_ttl=3600.0,
        webhook_secrets=tuple(TokenSource(path=str(path)) for path in files.values()),
    )
    first = workspace.add_run(1, "failed")
    assert deliver(harness, webhook_event(1, int(first["id"])), secret=secret_of[removed]).status_code == 202
    files[removed].unlink()  # withdrawn (rotation's last step, or a leaked secret revoked)
    second = workspace.add_run(1, "failed")
    event = webhook_event(1, int(second["id"]))
    assert deliver(harness, event, secret=secret_of[removed]).status_code == 401
    assert deliver(harness, event, secret=secret_of[kept]).status_code == 202
    assert deliver(harness, event, secret=secret_of[removed]).status_code == 401
    # One clear line for the withdrawn file, however many deliveries follow; no secret in it.
    said = [r.getMessage() for r in caplog.records if "webhook secret" in r.getMessage()]
    gone = f"cannot read secret file {files[removed]}: no such file or directory"
    assert said == [f"a webhook secret cannot be read: {gone}"]
    assert all(secret not in r.getMessage() for r in caplog.records for secret in secret_of.values())
    wait_for(
        lambda: harness.scrape().value("census_sync_runs_total", sync_id="1", status="failed") == 2,
        timeout=10,
    )


def _unwatched_events_then_a_watched_failure(
    harness_factory: Callable[..., Harness], unwatched: Iterable[int]
) -> Harness:
    """Two watched syncs; a signed event about each of ``unwatched`` (syncs no listing shows), then a failed
    run of sync 1 and its event; returns once a scrape shows the failure, read at once."""
    workspace = workspace_with_syncs(2)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    for sync_id in unwatched:
        assert deliver(harness, webhook_event(sync_id, 1), secret=SECRET).status_code == 202
    run = workspace.add_run(1, "failed")
    assert deliver(harness, webhook_event(1, int(run["id"])), secret=SECRET).status_code == 202
    wait_for(
        lambda: harness.scrape().value("census_sync_runs_total", sync_id="1", status="failed") == 1,
        timeout=10,
        what="the watched sync's failure, read at once",
    )
    return harness


def test_events_about_unwatched_syncs_cannot_crowd_out_a_watched_syncs_read(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound on marked syncs, small enough to reach over HTTP (10,000 in production).
    monkeypatch.setattr(announcements, "MAX_URGENT_SYNCS", 50)
    # Signed events about syncs no listing shows (filtered out, another workspace's, made up): each marks
    # its sync until the next full refresh, an hour away here.
    _unwatched_events_then_a_watched_failure(harness_factory, range(1000, 1100))


def _chunked_request(body: bytes, size: int) -> bytes:
    """A signed delivery of ``body`` in chunks of ``size`` bytes."""
    chunks = b"".join(
        f"{len(body[at : at + size]):x}\r\n".encode() + body[at : at + size] + b"\r\n"
        for at in range(0, len(body), size)
    )
    head = (
        f"POST /webhooks/census/{WORKSPACE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\nX-Signature: {sign(body, SECRET)}\r\n\r\n"
    )
    return head.encode() + chunks + b"0\r\n\r\n"


def _status_line(port: int, request: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b"\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
    return answer.split(b"\r\n", 1)[0], time.monotonic() - started


@pytest.mark.parametrize("padding", [3000, 7000])
def test_a_chunked_body_in_tiny_chunks_is_answered_at_once(
    harness_factory: Callable[..., Harness], padding: int
) -> None:
    workspace = workspace_with_syncs(1)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    assert harness.exporter.webhooks is not None
    port = harness.exporter.webhooks.port
    run = workspace.add_run(1, "failed")
    body = json.dumps(webhook_event(1, int(run["id"])) | {"message": "m" * padding}).encode()
    # Within the cap, but one byte a chunk: six times its size in framing. Before, cheroot's size backstop
    # refused 3 KB of it inside the app (a 500 and an error line), and the listener stopped reading 7 KB
    # past the room it keeps for framing and closed it unanswered after the header timeout.
    status, took = _status_line(port, _chunked_request(body, 1))
    assert status == b"HTTP/1.1 413 Payload Too Large"
    assert took < 1.0
    # Chunks of a sane size are taken.
    status, took = _status_line(port, _chunked_request(body, 256))
    assert status == b"HTTP/1.1 202 Accepted"
    wait_for(lambda: harness.scrape().value("census_sync_runs_total", sync_id="1", status="failed") == 1)
    refused = harness.scrape().value("census_webhook_requests_total", workspace=WORKSPACE, result="too_large")
    assert refused == 1


def test_events_about_unwatched_syncs_are_not_counted_as_reads(
    harness_factory: Callable[..., Harness],
) -> None:
    harness = _unwatched_events_then_a_watched_failure(harness_factory, range(5000, 5005))
    # Only the watched sync's event read anything; the others' marks wait for a listing to show them.
    assert harness.scrape().value("census_webhook_reads_total", workspace=WORKSPACE) == 1
