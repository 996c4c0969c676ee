"""A web config rewritten in place never turns authentication off, against a real exporter process.

A client hammers ``GET /metrics`` without credentials while the file passes through the states an in-place
rewrite goes through (truncated to empty, then holding only ``basic_auth_users:``): it must never get a
200. A config that really drops basic auth applies only after the settle period (shortened here with
``--web.config.settle-period``, the documented flag).
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.conftest import Scrape, parse_scrape, wait_for
from tests.stack import Process, free_port

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
AUTH_CONFIG = f"basic_auth_users:\n  prometheus: {PASSWORD_HASH}\n".encode()
SETTLE_SECONDS = 4.0


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Running:
    process: Process
    url: str
    web_config: Path

    def scrape(self) -> Scrape:
        response = httpx.get(self.url + "/metrics", headers=basic("prometheus", PASSWORD), timeout=10)
        assert response.status_code == 200, response.text
        return parse_scrape(response.text)

    def reloads(self, result: str) -> float:
        return self.scrape().value("census_exporter_web_config_reloads_total", result=result) or 0.0

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")


def start(tmp_path: Path, *extra: str) -> Iterator[Running]:
    web_config = tmp_path / "web.yml"
    web_config.write_bytes(AUTH_CONFIG)
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "census_exporter",
            "--demo",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web_config}",
            f"--web.config.settle-period={SETTLE_SECONDS:g}",
            *extra,
        ],
        tmp_path / "exporter.log",
    )
    running = Running(process, f"http://127.0.0.1:{port}", web_config)

    def up() -> bool:
        try:
            response = httpx.get(running.url + "/healthz", headers=basic("prometheus", PASSWORD))
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    try:
        wait_for(up, timeout=30, what=lambda: f"the exporter to serve: {process.output()}")
        yield running
    finally:
        process.stop()


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Running]:
    yield from start(tmp_path)


@dataclass
class Hammer:
    """Unauthenticated GET /metrics in a loop, every status recorded."""

    url: str
    statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                self.statuses.append(client.get(self.url + "/metrics").status_code)


def rewrite_in_place(path: Path, data: bytes) -> None:
    """One step of an in-place rewrite: same inode, new content, flushed to the file."""
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def test_a_file_rewritten_in_place_never_serves_metrics_without_credentials(exporter: Running) -> None:
    hammer = Hammer(exporter.url)
    thread = threading.Thread(target=hammer.run)
    thread.start()
    try:
        wait_for(lambda: len(hammer.statuses) > 20, what="the hammer to run")

        def hold(data: bytes, result: str, before: float) -> None:
            rewrite_in_place(exporter.web_config, data)
            seen = len(hammer.statuses)
            wait_for(lambda: exporter.reloads(result) > before, what=f"the exporter to count {result}")
            wait_for(lambda: len(hammer.statuses) > seen + 20, what="unauthenticated requests in this state")

        # Truncated to empty, then holding only the section's key: the two states of an in-place rewrite.
        hold(b"", "rejected", exporter.reloads("rejected"))
        hold(b"basic_auth_users:\n", "weakening_deferred", exporter.reloads("weakening_deferred"))
        assert exporter.scrape().value("census_exporter_web_config_weakening_pending") == 1
        hold(b"", "rejected", exporter.reloads("rejected"))
        hold(AUTH_CONFIG, "applied", exporter.reloads("applied"))
        assert exporter.scrape().value("census_exporter_web_config_weakening_pending") == 0
    finally:
        hammer.stop.set()
        thread.join(timeout=15)
    assert len(hammer.statuses) > 100
    counts = {status: hammer.statuses.count(status) for status in set(hammer.statuses)}
    assert set(counts) == {401}, counts
    log = exporter.log()
    assert log.count("is empty; keeping the running web config") == 1, log  # once per distinct problem
    assert log.count("drops basic auth; keeping the running web config until") == 1, log
    assert exporter.reloads("weakening_applied") == 0


def test_a_deliberately_unauthenticated_config_applies_after_the_settle_period(exporter: Running) -> None:
    written = time.monotonic()
    rewrite_in_place(exporter.web_config, b"{}\n")

    def open_door() -> bool:
        return httpx.get(exporter.url + "/metrics", timeout=10).status_code == 200

    wait_for(open_door, timeout=SETTLE_SECONDS + 20, interval=0.2, what="the unauthenticated config to apply")
    # Not a timing assertion on speed: only that it did not apply before the settle period.
    assert time.monotonic() - written >= SETTLE_SECONDS
    scrape = parse_scrape(httpx.get(exporter.url + "/metrics", timeout=10).text)
    assert scrape.value("census_exporter_web_config_reloads_total", result="weakening_deferred") == 1
    assert scrape.value("census_exporter_web_config_reloads_total", result="weakening_applied") == 1
    assert scrape.value("census_exporter_web_config_weakening_pending") == 0
    log = exporter.log()
    assert f"applied after {SETTLE_SECONDS:g}s unchanged, although it drops basic auth" in log
    assert "level=warn" in next(line for line in log.splitlines() if "applied after" in line)


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_changed_weakening_restarts_the_settle_period(exporter: Running) -> None:
    rewrite_in_place(exporter.web_config, b"basic_auth_users:\n")
    wait_for(lambda: exporter.reloads("weakening_deferred") == 1, what="the first weakening to be seen")
    # Another weakening content before the period ends: the wait starts again from it.
    rewrite_in_place(exporter.web_config, b"basic_auth_users: {}\n")
    changed = time.monotonic()
    wait_for(lambda: exporter.reloads("weakening_deferred") == 2, what="the second weakening to be seen")

    def open_door() -> bool:
        return httpx.get(exporter.url + "/metrics", timeout=10).status_code == 200

    wait_for(open_door, timeout=SETTLE_SECONDS + 20, interval=0.2, what="the second weakening to apply")
    assert time.monotonic() - changed >= SETTLE_SECONDS
