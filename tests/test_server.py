"""The HTTP server under hostile clients, over real sockets: idle and half-open connections, slow headers,
a failing app, and the scrape budget against a slow API."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from census_exporter.demo import DEMO_TOKEN, SimulatedWorkspace
from census_exporter.http.cheroot_adapter import ServerLimits
from census_exporter.http.scrape import scrape_budget
from census_exporter.http.server import HTTPServer
from tests.conftest import HarnessFactory, wait_for


def _hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


@pytest.fixture
def slow_header_server() -> Iterator[HTTPServer]:
    server = HTTPServer(_hello, "127.0.0.1", 0, limits=ServerLimits(header_timeout_seconds=1.0))
    server.start()
    yield server
    server.close()


def test_scrape_budget_keeps_a_margin_and_subtracts_the_time_already_spent() -> None:
    assert scrape_budget("2") == pytest.approx(1.5)
    assert scrape_budget("30") == pytest.approx(27.0)  # 10% of long timeouts
    assert scrape_budget("10", elapsed_seconds=4.0) == pytest.approx(5.0)
    assert scrape_budget("2", elapsed_seconds=5.0) == 0.0
    assert scrape_budget(None) == pytest.approx(9.0)
    assert scrape_budget("inf") == pytest.approx(9.0)
    assert scrape_budget("nan") == pytest.approx(9.0)


def test_hundreds_of_idle_connections_hold_no_threads_and_scrapes_still_answer(
    harness_factory: HarnessFactory,
) -> None:
    harness = harness_factory(cache_ttl=300)
    harness.refresh()
    threads_before = threading.active_count()
    held: list[socket.socket] = []
    try:
        for _ in range(300):
            held.append(socket.create_connection(("127.0.0.1", harness.exporter.port), timeout=5))
        # Half of them stop inside their headers (slowloris); they must not hold the workers either.
        for connection in held[::2]:
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        wait_for(
            lambda: harness.exporter.http.open_connections >= 300,
            what=lambda: f"300 accepted connections, have {harness.exporter.http.open_connections}",
        )
        assert threading.active_count() - threads_before < 20

        def scrape(_: int) -> int:
            with httpx.Client(timeout=5) as client:
                return client.get(harness.base_url + "/metrics").status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(scrape, range(20)))
        assert statuses == [200] * 20
    finally:
        for connection in held:
            connection.close()


def test_a_client_sending_headers_byte_by_byte_is_cut_off(slow_header_server: HTTPServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", slow_header_server.port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\n")
        cut_off = False
        while time.monotonic() - started < 10:
            try:
                connection.sendall(b"X")
                connection.settimeout(0.2)
                if connection.recv(1024) == b"":
                    cut_off = True
                    break
            except TimeoutError:
                continue
            except OSError:
                cut_off = True
                break
    assert cut_off, "the server kept reading headers for 10 s"
    # Correctness bound: the 1 s header timeout plus the watchdog's slack and a loaded machine.
    assert time.monotonic() - started < 1.0 + 3.0
    response = httpx.get(f"http://127.0.0.1:{slow_header_server.port}/", timeout=5)
    assert response.text == "hello\n"


def test_close_works_when_the_server_never_started() -> None:
    server = HTTPServer(_hello, "127.0.0.1", 0)
    port = server.port
    server.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_close_is_bounded_even_when_the_server_hangs_in_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM must end the process promptly: a stop that never returns costs close() its bound, no more."""
    server = HTTPServer(_hello, "127.0.0.1", 0)
    server.start()
    real_stop = server._servers[0].stop
    never = threading.Event()
    monkeypatch.setattr(server._servers[0], "stop", never.wait)
    started = time.monotonic()
    assert server.close(timeout=0.5) is False
    assert time.monotonic() - started < 5
    never.set()
    real_stop()  # the worker threads are not daemons: stop them for real so the test run can end


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = HTTPServer(_hello, "::1", 0)
    except OSError:
        pytest.skip("::1 is not configured")
    server.start()
    try:
        assert httpx.get(f"http://[::1]:{server.port}/", timeout=5).text == "hello\n"
    finally:
        server.close()


def test_a_scrape_during_a_slow_refresh_answers_within_the_prometheus_timeout(
    harness_factory: HarnessFactory,
) -> None:
    harness = harness_factory(cache_ttl=0.5)
    harness.refresh()
    first = harness.scrape()
    assert first.value("census_up", workspace="default") == 1
    harness.simulator.latency_seconds = 5.0  # every API request from now on takes 5 s
    wait_for(harness.exporter.refresher.is_stale, what="the snapshot to go stale")
    started = time.monotonic()
    response = harness.get("/metrics", **{"X-Prometheus-Scrape-Timeout-Seconds": "2"})
    assert response.status_code == 200
    assert "census_up" in response.text  # the previous snapshot
    assert time.monotonic() - started < 2.0


APP_ERROR_SCRIPT = textwrap.dedent(
    """
    import sys
    from census_exporter.config import Config, TokenSource
    from census_exporter.demo import DEMO_TOKEN, start_demo
    from census_exporter.exporter import Exporter
    from census_exporter.logs import setup_logging

    setup_logging("info", "logfmt")
    simulator = start_demo()
    secret = DEMO_TOKEN
    exporter = Exporter(Config(api_url=simulator.url, token=TokenSource(value=secret),
                               listen_host="127.0.0.1", listen_port=0))
    calls = []
    real_render = exporter.collector.render

    def render(view):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("collector broke near " + secret)
        return real_render(view)

    exporter.collector.render = render
    exporter.http.start()
    print(exporter.port, flush=True)
    sys.stdin.read()
    exporter.close()
    simulator.close()
    """
)


def test_an_app_error_answers_500_and_logs_one_redacted_line() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", APP_ERROR_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(wait_for(process.stdout.readline, timeout=30, interval=0, what="the port"))
        url = f"http://127.0.0.1:{port}/metrics"
        failed = httpx.get(url, timeout=10)
        assert failed.status_code == 500
        assert failed.text == "internal error\n"
        assert httpx.get(url, timeout=10).status_code == 200
        _, stderr = process.communicate(input="", timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in stderr.splitlines() if line]
    assert lines, "expected the failure to be logged"
    assert all(line.startswith("ts=") for line in lines), stderr
    errors = [line for line in lines if "level=error" in line]
    assert len(errors) == 1, stderr
    assert "GET /metrics failed: RuntimeError" in errors[0]
    assert DEMO_TOKEN not in stderr and "[REDACTED]" in errors[0]
    assert "Traceback" not in stderr


def test_at_the_connection_cap_the_longest_waiting_connection_makes_room() -> None:
    server = HTTPServer(_hello, "127.0.0.1", 0, limits=ServerLimits(max_connections=20))
    server.start()
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(40)]
    try:
        wait_for(lambda: server.open_connections <= 21, what="the cap to close the oldest connections")
        assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "hello\n"
        assert held[0].recv(1) == b""  # the oldest was closed
    finally:
        for connection in held:
            connection.close()
        server.close()


def test_a_request_body_is_refused_unread_so_dripping_bodies_hold_no_worker(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory()
    port = h.exporter.port
    drippers = []
    try:
        for _ in range(ServerLimits().workers + 4):  # more than every worker
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nx")
            drippers.append(sock)
        for sock in drippers:  # each is answered 413 and closed, not drained
            answer = sock.recv(200)
            assert answer.startswith(b"HTTP/1.1 413"), answer
        with httpx.Client(timeout=5) as client:
            for _ in range(5):
                assert client.get(f"{h.base_url}/metrics").status_code == 200
    finally:
        for sock in drippers:
            sock.close()


def test_gzip_refused_with_q0_is_not_sent_and_odd_codings_are_not_gzip(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory()
    for header, gzipped in [
        ("gzip", True),
        ("GZIP", True),
        ("identity, *;q=0.5", True),
        ("gzip;q=0", False),
        ("identity, gzip;q=0", False),
        ("x-notgzip", False),
        ("nogzipplease", False),
    ]:
        response = h.get("/metrics", **{"Accept-Encoding": header})
        assert response.status_code == 200
        assert (response.headers.get("content-encoding") == "gzip") is gzipped, header


def test_ever_new_openmetrics_versions_render_once(harness_factory: HarnessFactory) -> None:
    h = harness_factory(cache_ttl=600)
    for minor in range(20):
        accept = f"application/openmetrics-text; version=1.{minor}.{minor}"
        response = h.get("/metrics", Accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert len(h.exporter.app._census._plain) == 1


def test_a_scrape_keeps_the_time_its_rendering_takes_out_of_its_wait(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting the whole budget for a refresh, then rendering the new snapshot, overran the scrape timeout."""
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 201):
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
        workspace.add_run(sync_id, "completed")
    h = harness_factory(workspace)
    h.get("/metrics", **{"Accept-Encoding": "gzip"})
    render_seconds = h.exporter.app._census.render_seconds
    assert render_seconds > 0
    budgets: list[float] = []
    real = h.exporter.fleet.view_within
    monkeypatch.setattr(h.exporter.fleet, "view_within", lambda b: budgets.append(b) or real(b))
    h.get("/metrics", **{"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    assert budgets and budgets[0] <= scrape_budget("10") - render_seconds + 1e-3


@pytest.mark.slow  # 306 registrations, each compiling the pattern: 11-26 s of CPU
def test_the_redaction_list_keeps_the_newest_secrets_within_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from census_exporter import redaction
    from census_exporter.logs import MAX_REDACTED_SECRETS, RedactingFilter

    # The list is process-wide: the secrets other tests registered come back afterwards.
    monkeypatch.setattr(redaction, "SECRETS", redaction.SecretRegistry())
    for number in range(MAX_REDACTED_SECRETS + 50):
        RedactingFilter.register(f"secret-token:rotated-{number:06d}")
    secrets = redaction.SECRETS.secrets
    assert len(secrets) <= MAX_REDACTED_SECRETS
    assert f"secret-token:rotated-{MAX_REDACTED_SECRETS + 49:06d}" in secrets
    assert "secret-token:rotated-000000" not in secrets


def test_a_scrape_holding_the_replaced_view_is_served_the_newer_one() -> None:
    """A scrape that fetched its view just before a swap and asks for the rendering just after gets the newer
    view's rendering: going back would render the old view again, then the new one again for the next scrape,
    and show older data than the scrape before it."""
    from census_exporter.collector import CensusCollector
    from census_exporter.http.view_cache import ViewRendering
    from census_exporter.snapshot import FleetView, Snapshot

    renders: list[FleetView] = []
    collector = CensusCollector(60.0)
    original = collector.render

    def counting(view: FleetView) -> Any:
        renders.append(view)
        return original(view)

    collector.render = counting  # type: ignore[method-assign]
    cache = ViewRendering(collector)
    older = FleetView((Snapshot(workspace="older", up=True, refreshed=True, listed=True),))
    newer = FleetView((Snapshot(workspace="newer", up=True, refreshed=True, listed=True),))
    cache.body(older, False, b"", False)
    newest_text = b"".join(cache.body(newer, False, b"", False))
    assert b"".join(cache.body(older, False, b"", False)) == newest_text
    assert b"".join(cache.body(newer, True, b"", True)) != b""
    assert renders == [older, newer]
    assert b'workspace="newer"' in newest_text
