"""Adversarial review of the rendering and HTTP changes of issue 9, over real HTTP.

Each test is a way a client (or, for the bucket labels, a setting) made the exporter fail a scrape, break
a connection or export a wrong series, found by an adversarial review; the last one pins a known limit's
bound (clients that never read).
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from census_exporter.demo import SimulatedWorkspace
from census_exporter.http import cheroot_writer as server_module
from census_exporter.http.cheroot_adapter import ServerLimits
from census_exporter.http.server import HTTPServer
from tests.conftest import HarnessFactory, wait_for


def _read_response_head(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """The status line and headers of one response, and whatever arrived after them."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the headers ended: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_head_of_metrics_sends_no_body_so_the_next_response_on_the_connection_is_read_right(
    harness_factory: HarnessFactory,
) -> None:
    """HEAD must not carry a body (RFC 9110 9.3.2); the exporter sent the whole exposition after the
    headers, so a keep-alive client read the exposition as the status line of its next response."""
    h = harness_factory()
    h.refresh()
    with socket.create_connection(("127.0.0.1", h.exporter.port), timeout=10) as sock:
        sock.sendall(
            b"HEAD /metrics HTTP/1.1\r\nHost: exporter\r\n\r\nGET /healthz HTTP/1.1\r\nHost: exporter\r\n\r\n"
        )
        head, rest = _read_response_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"content-length:" in head.lower()  # what a GET would send, but no body follows
        second, _ = _read_response_head(sock, rest)
        assert second.startswith(b"HTTP/1.1 200"), f"after HEAD the next response began {second[:80]!r}"
    with httpx.Client(timeout=10) as client:  # the same through an ordinary keep-alive client
        assert client.head(h.base_url + "/metrics").status_code == 200
        after = client.get(h.base_url + "/healthz")
        assert (after.status_code, after.text) == (200, "ok\n")


def test_gzip_refused_by_name_is_not_sent_when_a_wildcard_is_also_accepted(
    harness_factory: HarnessFactory,
) -> None:
    """``*`` covers only the codings the header does not name (RFC 9110 12.5.3): ``gzip;q=0, *`` refuses
    gzip, and a client that cannot inflate got a gzip body it cannot read."""
    h = harness_factory()
    for header in ("gzip;q=0, *", "*, gzip;q=0", "gzip;q=0, *;q=1"):
        response = h.get("/metrics", **{"Accept-Encoding": header})
        assert response.status_code == 200
        assert response.headers.get("content-encoding") != "gzip", header


def test_an_absurd_scrape_timeout_header_still_gets_the_scrape(harness_factory: HarnessFactory) -> None:
    """``X-Prometheus-Scrape-Timeout-Seconds: 1e300`` is finite and positive, so it became the wait for a
    pending refresh, which threading cannot take (OverflowError): the scrape answered 500 and logged an
    error, once per such request."""
    h = harness_factory(cache_ttl=0.5)
    h.refresh()
    h.simulator.latency_seconds = 0.5  # the refresh the scrape waits for is still running when it asks
    wait_for(h.exporter.refresher.is_stale, what="the snapshot to go stale")
    for header in ("1e300", "1e20"):
        response = h.get("/metrics", **{"X-Prometheus-Scrape-Timeout-Seconds": header})
        assert response.status_code == 200, (header, response.text)
        assert "census_up" in response.text


_BIG_BODY_BYTES = 32 * 1024 * 1024


def _big_body(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = b"x" * _BIG_BODY_BYTES
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]  # one chunk, as the cached rendering of a large family (or a whole gzip body) is


@pytest.mark.slow  # reads 32 MiB through a 32 KiB window, 11-12 s
def test_a_reader_that_keeps_reading_gets_a_chunk_that_takes_longer_than_the_socket_timeout() -> None:
    """sendall() bounds a whole chunk by the socket timeout (the idle timeout, 30 s), where cheroot's
    writer gave each send() its own: a scraper that keeps reading, only slowly (a slow link, a busy
    Prometheus), now loses a large chunk's tail silently once it takes longer than the timeout to read.

    Here the timeout is 2 s and the reader never pauses for longer than a few milliseconds."""
    server = HTTPServer(_big_body, "127.0.0.1", 0, limits=ServerLimits(idle_timeout_seconds=2.0))
    server.start()
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: exporter\r\n\r\n")
            head, received = _read_response_head(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
            size, started = len(received), time.monotonic()
            while size < _BIG_BODY_BYTES:
                chunk = sock.recv(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                time.sleep(0.01)
            elapsed = time.monotonic() - started
        assert size == _BIG_BODY_BYTES, f"the body ended after {size} bytes and {elapsed:.1f}s of reading"
    finally:
        server.close()


def test_a_trickle_reader_holds_a_worker_only_until_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each send() waiting the socket timeout for progress must not let a client that takes a few bytes
    now and then hold a worker for ever: the whole chunk has a deadline (timeout + size at the minimum
    rate; the rate is raised here so that the deadline is seconds, not minutes). One worker: while the
    trickle holds it, nothing else is answered."""
    monkeypatch.setattr(server_module, "MIN_SEND_BYTES_PER_SECOND", 8 * 1024 * 1024)
    limits = ServerLimits(workers=1, idle_timeout_seconds=2.0)
    deadline = limits.idle_timeout_seconds + _BIG_BODY_BYTES / (8 * 1024 * 1024)
    server = HTTPServer(_big_or_small, "127.0.0.1", 0, limits=limits)
    server.start()
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set() and sock.recv(4096):
                stop.wait(0.2)  # far less than the timeout: never idle for it, only slow

    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
            sock.recv(1)  # the answer has begun: the one worker is writing it
            reader = threading.Thread(target=trickle, args=(sock,), daemon=True)
            reader.start()
            started = time.monotonic()
            response = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=deadline + 20)
            waited = time.monotonic() - started
            stop.set()
            reader.join(5)
        assert response.status_code == 200
        assert waited <= deadline + 3, f"/healthz waited {waited:.1f}s behind the trickle"
    finally:
        stop.set()
        server.close()


def test_openmetrics_refused_with_q0_is_not_sent(harness_factory: HarnessFactory) -> None:
    """A client that lists OpenMetrics with ``q=0`` says it cannot take it (RFC 9110 12.4.2), yet any
    mention of ``application/openmetrics-text`` in Accept got OpenMetrics: a text-only parser then reads
    ``# EOF`` and counter families named without ``_total``."""
    h = harness_factory()
    for accept in (
        "text/plain;version=0.0.4, application/openmetrics-text;q=0",
        "application/openmetrics-text; version=1.0.0; q=0.0, text/plain; q=0.5",
    ):
        response = h.get("/metrics", Accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain"), accept
        assert "# EOF" not in response.text


def test_every_duration_bucket_keeps_its_own_exact_le_label(harness_factory: HarnessFactory) -> None:
    """Bucket bounds were written with ``:g`` (six significant digits): 59.9999999 and 60.0000001 both
    became ``le="60"`` (two series with one identity, one of them dropped by Prometheus) and 86400.25
    became ``le="86400.2"``, so histogram_quantile() read wrong bounds."""
    bounds = (59.9999999, 60.0000001, 86400.25, 1234567.0)
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="leads")
    workspace.add_run(1, "completed", duration=60.0)
    h = harness_factory(workspace, duration_buckets=bounds)
    h.refresh()
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        response = h.get("/metrics", Accept=accept)
        assert response.status_code == 200
        les = [
            line.split('le="')[1].split('"')[0]
            for line in response.text.splitlines()
            if line.startswith("census_workspace_run_duration_seconds_bucket{")
        ]
        assert [float(le) for le in les] == [*bounds, math.inf], les


def _big_or_small(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metrics":
        return _big_body(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def test_clients_that_never_read_their_large_scrape_hold_a_worker_no_longer_than_the_idle_timeout() -> None:
    """A known limit (docs/http-server.md): a client that asks for a body larger than the socket buffers and
    never reads holds its worker while the body is sent; as many such clients as workers delay every other
    request. Each send() waits at most the idle timeout for the client to take more, so the delay is bounded
    by it, and the stalled clients are cut off then."""
    limits = ServerLimits(workers=2, idle_timeout_seconds=3.0)
    server = HTTPServer(_big_or_small, "127.0.0.1", 0, limits=limits)
    server.start()
    stalled: list[socket.socket] = []
    try:
        for _ in range(limits.workers):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
            sock.recv(1)  # the answer has begun: a worker is writing it, and no one reads on
            stalled.append(sock)
        started = time.monotonic()
        response = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert waited <= limits.idle_timeout_seconds + 2, f"/healthz waited {waited:.1f}s for a free worker"
    finally:
        for sock in stalled:
            sock.close()
        server.close()
