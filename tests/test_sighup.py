"""SIGHUP reloads the exporter's files and never ends it, against a real process under scrapes."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import httpx
import pytest

from census_exporter.demo import SimulatorServer, reference_workspace
from tests.conftest import TEST_TOKEN, Scrape, parse_scrape, wait_for
from tests.stack import Process, free_port

ENTRY = """\
  - name: {name}
    api_version: v1
    api_url: {url}
    token_file: {token}
"""


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(reference_workspace(), token=TEST_TOKEN).start()
    yield server
    server.close()


@dataclass
class Exporter:
    """The real census-exporter process on a loopback port, and its /metrics URL."""

    process: Process
    url: str


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Callable[..., Exporter]]:
    """Start the CLI with the given flags, on a free port, a 1 s TTL and no request budget (log in
    ``tmp_path``); it is stopped at teardown."""
    started: list[Process] = []

    def start(*flags: str) -> Exporter:
        port = free_port()
        command = [sys.executable, "-m", "census_exporter", *flags, f"--web.listen-address=127.0.0.1:{port}"]
        command += ["--census.cache-ttl=1", "--census.max-requests-per-second=0"]
        started.append(Process(command, tmp_path / "exporter.log"))
        return Exporter(started[-1], f"http://127.0.0.1:{port}/metrics")

    yield start
    for process in started:
        process.stop()


def workspaces_file(path: Path, url: str, token: Path, *names: str) -> None:
    path.write_text("workspaces:\n" + "".join(ENTRY.format(name=n, url=url, token=token) for n in names))


def test_sighup_under_scrapes_reloads_the_workspaces_file_and_never_fails_a_scrape(
    tmp_path: Path, simulator: SimulatorServer, exporter: Callable[..., Exporter]
) -> None:
    token = tmp_path / "token"
    token.write_text(TEST_TOKEN)
    config = tmp_path / "workspaces.yaml"
    workspaces_file(config, simulator.url, token, "alpha")
    started = exporter(f"--config.file={config}")
    process, url = started.process, started.url
    scrapes: list[Scrape] = []
    failures: list[str] = []
    stop = threading.Event()

    def scrape_forever() -> None:
        with httpx.Client(timeout=15) as client:
            while not stop.is_set():
                try:
                    response = client.get(url)
                except httpx.HTTPError as error:
                    failures.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}")
                else:
                    scrapes.append(parse_scrape(response.text))

    def up(workspace: str) -> bool:
        return bool(scrapes) and scrapes[-1].value("census_up", workspace=workspace) == 1

    def reloads() -> int:
        return process.log.read_text(errors="replace").count("SIGHUP: reading")

    def hang_up(times: int) -> None:
        """``times`` SIGHUPs, each once the previous one's reload began and more scrapes were served."""
        for _ in range(times):
            seen, began = len(scrapes), reloads()
            process.process.send_signal(signal.SIGHUP)
            wait_for(lambda b=began: reloads() > b, what="the SIGHUP's reload to begin")
            wait_for(lambda n=seen: len(scrapes) >= n + 2, what="scrapes between SIGHUPs")

    def serving() -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving, timeout=30, what=lambda: f"the exporter to serve: {process.output()}")
    thread = threading.Thread(target=scrape_forever)
    thread.start()
    try:
        wait_for(lambda: up("alpha"), what="alpha to be up")
        hang_up(10)
        # A workspace added, then the first removed: each applies on a SIGHUP.
        workspaces_file(config, simulator.url, token, "alpha", "beta")
        hang_up(3)
        wait_for(lambda: up("beta"), what="beta to be watched after SIGHUP")
        workspaces_file(config, simulator.url, token, "beta")
        hang_up(3)
        wait_for(
            lambda: scrapes[-1].value("census_up", workspace="alpha") is None,
            what="alpha's series to go after SIGHUP",
        )
        # A broken file keeps what runs, with one warning line however many SIGHUPs.
        config.write_text("workspaces: [unterminated\n")
        hang_up(5)
        assert up("beta")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert process.process.poll() is None, "SIGHUP ended the process"
    assert failures == []
    assert len(scrapes) > 40
    log = process.log.read_text(errors="replace")
    assert "added beta; removed none" in log and "added none; removed alpha" in log, log
    assert log.count("keeping the running workspaces") == 1, log  # once per distinct problem
    assert reloads() == 21, log
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(timeout=15) == 0


def rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """New content of the same size, inode and mtime: only an explicit reload can notice it."""
    before = path.stat()
    assert len(data) == before.st_size
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_sighup_reads_a_token_file_and_the_web_config_that_stat_cannot_tell_changed(
    tmp_path: Path, simulator: SimulatorServer, exporter: Callable[..., Exporter]
) -> None:
    token = tmp_path / "token"
    token.write_text(TEST_TOKEN)
    old_hash = bcrypt.hashpw(b"old", bcrypt.gensalt(rounds=4)).decode()
    new_hash = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {old_hash}\n")
    started = exporter(
        f"--census.api-url={simulator.url}", f"--census.token-file={token}", f"--web.config.file={web}"
    )
    process, url = started.process, started.url

    def status(password: str) -> int:
        try:
            return httpx.get(url, auth=("prometheus", password), timeout=10).status_code
        except httpx.HTTPError:
            return 0

    def up(password: str) -> float | None:
        response = httpx.get(url, auth=("prometheus", password), timeout=10)
        return parse_scrape(response.text).value("census_up", workspace="default")

    wait_for(lambda: status("old") == 200, timeout=30, what=process.output)
    wait_for(lambda: up("old") == 1, what="a first good refresh")
    rewrite_keeping_stat(web, f"basic_auth_users:\n  prometheus: {new_hash}\n".encode())
    wrong = TEST_TOKEN[:-1] + ("x" if TEST_TOKEN[-1] != "x" else "y")
    rewrite_keeping_stat(token, wrong.encode())
    assert status("old") == 200 and status("new") == 401  # stat() saw nothing
    process.process.send_signal(signal.SIGHUP)
    wait_for(lambda: status("new") == 200, what="SIGHUP to apply the new password")
    assert status("old") == 401
    wait_for(lambda: up("new") == 0, what="SIGHUP to put the rewritten (wrong) token in use")
    # An emptied token file on SIGHUP: one warning line naming it, and the exporter carries on.
    token.write_text("")
    for _ in range(3):
        process.process.send_signal(signal.SIGHUP)
    wait_for(lambda: f"SIGHUP: token file {token} is empty" in process.output(), what="the warning")
    assert status("new") == 200
    assert process.process.poll() is None
    process.stop()  # the whole log, before it is read
    assert process.log.read_text().count(f"SIGHUP: token file {token} is empty") == 1
