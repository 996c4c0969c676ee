"""The stand-alone simulated organization, ``python -m census_exporter.demo``, as a real process over HTTP."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from census_exporter.config import Config
from census_exporter.demo import DEMO_MARKETING_API_KEY, DEMO_ORGANIZATION_PAT, DEMO_SALES_GROUP_ID
from census_exporter.exporter import Exporter
from census_exporter.workspaces import load_workspaces_file
from tests.conftest import parse_scrape, wait_for
from tests.stack import REPO

SIMULATOR = [sys.executable, "-m", "census_exporter.demo"]
SYNCS = 12
STOP_SECONDS = 3.0


@dataclass
class Simulator:
    """A running simulator process and what it logged at start."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def logged(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in self.lines if (m := re.search(pattern, line))), None)

    def url(self, workspace: str) -> str:
        match = self.logged(rf"workspace {workspace}: .*api_url (http://\S+),")
        assert match, self.lines
        return match.group(1)


def start_simulator(*args: str) -> Simulator:
    process = subprocess.Popen([*SIMULATOR, *args], stderr=subprocess.PIPE, text=True)
    simulator = Simulator(process)

    def both_workspaces_logged() -> bool:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line or process.poll() is None, f"the simulator exited: {simulator.lines}"
        simulator.lines.append(line)
        return simulator.logged("workspace sales:") is not None

    wait_for(both_workspaces_logged, timeout=30, interval=0, what="the simulator's start-up log lines")
    return simulator


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    running = start_simulator("--listen-address", "127.0.0.1:0", "--seed", "7", "--syncs", str(SYNCS))
    try:
        yield running
    finally:
        stop(running.process)


def get(url: str, token: str, **params: str) -> httpx.Response:
    return httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def answers(url: str, token: str, **params: str) -> Any:
    try:
        response = get(url, token, **params)
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


def newest_run_ids(url: str, token: str, sync_ids: list[Any], **params: str) -> dict[Any, Any]:
    """The id of each sync's newest run (None for a sync without runs)."""
    newest = {}
    for sync_id in sync_ids:
        runs = get(f"{url}/syncs/{sync_id}/sync_runs", token, per_page="1", **params).json()["data"]
        newest[sync_id] = runs[0]["id"] if runs else None
    return newest


def test_help_names_every_option() -> None:
    result = subprocess.run([*SIMULATOR, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for option in ("--listen-address", "--seed", "--syncs", "--latency"):
        assert option in result.stdout


def test_it_logs_the_base_urls_and_the_public_tokens(simulator: Simulator) -> None:
    assert simulator.logged(r"listening on 127\.0\.0\.1:\d+")
    assert simulator.url("marketing").endswith("/api/v1")
    assert simulator.url("sales").endswith("/api/v2")
    assert simulator.logged(f"workspace marketing: .*{re.escape(DEMO_MARKETING_API_KEY)}")
    assert simulator.logged(
        f"workspace sales: .*group_id {DEMO_SALES_GROUP_ID}.*{re.escape(DEMO_ORGANIZATION_PAT)}"
    )


def test_the_marketing_key_lists_its_syncs_over_v1(simulator: Simulator) -> None:
    url = simulator.url("marketing")
    body = wait_for(lambda: answers(f"{url}/syncs", DEMO_MARKETING_API_KEY), what="the V1 sync listing")
    assert body["pagination"]["total_records"] == SYNCS
    assert all(isinstance(sync["id"], int) for sync in body["data"])
    # The key reads its own workspace only; the organization's PAT is not a V1 workspace key.
    assert get(f"{url}/syncs", DEMO_ORGANIZATION_PAT).status_code == 401


def test_the_pat_lists_the_sales_groups_syncs_over_v2(simulator: Simulator) -> None:
    url = simulator.url("sales")
    body = wait_for(
        lambda: answers(f"{url}/syncs", DEMO_ORGANIZATION_PAT, group_id=DEMO_SALES_GROUP_ID),
        what="the V2 sync listing",
    )
    assert body["pagination"]["total_records"] == SYNCS
    assert {sync["group_id"] for sync in body["data"]} == {DEMO_SALES_GROUP_ID}
    assert all(isinstance(sync["id"], str) for sync in body["data"])
    assert get(f"{url}/syncs", DEMO_MARKETING_API_KEY, group_id=DEMO_SALES_GROUP_ID).status_code == 401


def test_runs_keep_appearing_in_both_workspaces(simulator: Simulator) -> None:
    v1, v2 = simulator.url("marketing"), simulator.url("sales")
    group = {"group_id": DEMO_SALES_GROUP_ID}
    v1_syncs = [s["id"] for s in wait_for(lambda: answers(f"{v1}/syncs", DEMO_MARKETING_API_KEY))["data"]]
    v2_syncs = [s["id"] for s in get(f"{v2}/syncs", DEMO_ORGANIZATION_PAT, **group).json()["data"]]
    v1_before = newest_run_ids(v1, DEMO_MARKETING_API_KEY, v1_syncs)
    v2_before = newest_run_ids(v2, DEMO_ORGANIZATION_PAT, v2_syncs, **group)
    assert any(v1_before.values()) and any(v2_before.values()), "the history starts with past runs"
    # Each sync runs every 30 to 120 s from its own offset, so with a dozen syncs a new run is seconds away.
    wait_for(
        lambda: newest_run_ids(v1, DEMO_MARKETING_API_KEY, v1_syncs) != v1_before,
        timeout=150,
        interval=1,
        what="a new run in marketing",
    )
    wait_for(
        lambda: newest_run_ids(v2, DEMO_ORGANIZATION_PAT, v2_syncs, **group) != v2_before,
        timeout=150,
        interval=1,
        what="a new run in sales",
    )


@pytest.mark.parametrize("name", ["marketing", "sales"])
def test_each_compose_workspace_is_exported_from_the_simulator(simulator: Simulator, name: str) -> None:
    """What the compose stack does, one workspace at a time: its entry, its token, this simulator."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["census-exporter"]
    entry = next(
        w for w in load_workspaces_file(REPO / "deploy/compose/workspaces.yaml").workspaces if w.name == name
    )
    root = re.sub(r"/api/v\d$", "", simulator.url(name))
    config = Config(
        api_url=entry.api_url.replace("http://census-simulator:8080", root),
        token=entry.token.token_source(compose["environment"]),
        api_version=entry.api_version,
        group_id=entry.group_id,
        workspace=entry.name,
        listen_host="127.0.0.1",
        listen_port=0,
        cache_ttl_seconds=0.0,
    )
    exporter = Exporter(config)
    try:
        exporter.start()
        url = f"http://127.0.0.1:{exporter.port}"
        wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, timeout=30, what="readiness")
        scrape = parse_scrape(httpx.get(url + "/metrics", timeout=30).text)
        assert scrape.value("census_up", workspace=name) == 1
        assert scrape.value("census_syncs", workspace=name) == SYNCS
        assert scrape.all("census_sync_last_run_status", workspace=name)
    finally:
        exporter.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_quietly_within_3_seconds(simulator: Simulator, signum: signal.Signals) -> None:
    url = simulator.url("marketing")
    wait_for(lambda: answers(f"{url}/syncs", DEMO_MARKETING_API_KEY), what="the simulator to answer")
    simulator.process.send_signal(signum)
    assert simulator.process.wait(timeout=STOP_SECONDS) == 0
    assert simulator.process.stderr is not None
    rest = simulator.process.stderr.read()
    assert "shutting down" in rest
    assert "Traceback" not in rest


def test_a_taken_port_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SIMULATOR, "--listen-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"python -m census_exporter.demo: error: cannot listen on 127.0.0.1:{port} (--listen-address): "
        "address already in use\n"
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--listen-address", ":8080"], "names no host"),
        (["--listen-address", "localhost"], "expected [HOST]:PORT"),
        (["--latency", "inf"], "must be from 0 to 60"),
        (["--syncs", "0"], "must be from 1 to 20000"),
    ],
)
def test_bad_options_exit_2_naming_the_problem(args: list[str], complaint: str) -> None:
    result = subprocess.run([*SIMULATOR, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
