"""Shared fixtures: the Census API simulator, an exporter wired to it over real HTTP, and scrape parsing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from census_exporter.config import Config, TokenSource
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.exporter import Exporter

TEST_TOKEN = "secret-token:test-4f1c9a7e2b"

#: Modules marked `slow` as a whole (`make test-fast` deselects them; `make test` runs everything): they start
#: real binaries (prometheus, helm, docker-compose, the CLI many times), soak, benchmark or sweep properties.
#: A single test over ~5 s elsewhere carries ``@pytest.mark.slow`` itself.
SLOW_MODULES = frozenset(
    {
        "test_alerting",
        "test_benchmark_detection",
        "test_benchmarks",
        "test_counting_property",
        "test_dashboard",
        "test_deployment",
        "test_detection_alerts",
        "test_end_to_end",
        "test_helm_web_config",
        "test_helm_workspaces",
        "test_listing_churn",
        "test_release",
        "test_refresh_memory",
        "test_sighup",
        "test_simulator_cli",
        "test_simulator_latency",
        "test_sizing",
        "test_soak",
        "test_truncation_alert",
        "test_unseen_failures",
        "test_v2_end_to_end",
        "test_webhook_fallback",
    }
)


#: Modules whose assertions measure this process or this machine (memory by tracemalloc, request rates per
#: wall-clock second, latency within milliseconds), marked `serial` as a whole; a single such test carries
#: ``@pytest.mark.serial`` itself. `make test` runs them first, in one process with nothing else of the suite
#: running, then the rest in parallel (pytest-xdist): on 2 shared cores a neighbouring worker's CPU burst is
#: noise these bounds were not set to absorb. Every serial test is marked slow too: `make test-fast` skips it.
SERIAL_MODULES = frozenset({"test_refresh_memory", "test_sizing", "test_simulator_latency"})

#: Modules started first in a parallel run (longest first), so that no worker picks up a two-minute test
#: when the others are nearly done: the soak, the real-Prometheus episodes, the release build, the fleet.
FIRST = (
    "test_soak",
    "test_alerting",
    "test_release",
    "test_fleet",
    "test_dashboard",
    "test_webhook_fallback",
    "test_detection_alerts",
    "test_simulator_cli",
    "test_benchmark_detection",
    "test_benchmarks",
)


def _module(item: pytest.Item) -> str:
    return item.module.__name__.rpartition(".")[2] if item.module is not None else ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_MODULES` slow and those of :data:`SERIAL_MODULES` serial; put the
    modules of :data:`FIRST` first (a stable sort by module: each module's tests stay together, in order)."""
    for item in items:
        module = _module(item)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
        if item.get_closest_marker("serial") is not None:
            # A serial test needs the machine to itself, which the quick loop cannot give it: `make test`
            # runs it (first, alone); `make test-fast` runs one parallel pass and no second collection.
            item.add_marker(pytest.mark.slow)
    rank = {module: n for n, module in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(_module(item), len(FIRST)))


def version_output(package_parent: Path, *, cwd: Path, path: str | None = None) -> str:
    """What ``python -m census_exporter --version`` prints with the package imported from
    ``package_parent``, run in ``cwd`` (and with ``PATH`` set to ``path`` when given)."""
    env = os.environ | {"PYTHONPATH": str(package_parent)}
    if path is not None:
        env["PATH"] = path
    result = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--version"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=cwd,
    )
    return result.stdout


def require_tool(name: str) -> str:
    """Path of a real binary; skip locally when absent, but fail in CI where a skip would hide a gap."""
    # Tools installed by pip into the test environment live beside its interpreter, maybe not on PATH.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path:
        return path
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(message)
    pytest.skip(message)


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.1,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    ``what`` describes the wait in the failure message; a callable is evaluated only then.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    description = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout}s waiting for {description or condition}: last={last!r}")


HarnessFactory = Callable[..., "Harness"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    """A parsed /metrics response."""

    text: str
    samples: Samples = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample whose labels include ``labels`` (``None`` if absent; error if ambiguous)."""
        matches = self.all(name, **labels)
        assert len(matches) <= 1, f"{name}{labels} is ambiguous: {matches}"
        return next(iter(matches.values()), None)

    def all(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return {
            sample_labels: value
            for (sample_name, sample_labels), value in self.samples.items()
            if sample_name == name and wanted <= sample_labels
        }


def parse_scrape(text: str) -> Scrape:
    """Parse classic text exposition into a Scrape."""
    scrape = Scrape(text=text)
    for family in text_string_to_metric_families(text):
        scrape.types[family.name] = family.type
        scrape.helps[family.name] = family.documentation
        for sample in family.samples:
            scrape.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return scrape


@dataclass
class Harness:
    """A simulator and an exporter that talks to it, both on loopback."""

    workspace: SimulatedWorkspace
    simulator: SimulatorServer
    exporter: Exporter
    http: httpx.Client

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter.port}"

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.http.get(self.base_url + path, headers=headers)

    def scrape(self, **headers: str) -> Scrape:
        response = self.get("/metrics", **headers)
        assert response.status_code == 200, response.text
        return parse_scrape(response.text)

    def refresh(self) -> None:
        """Run one refresh to completion (independent of the TTL)."""
        self.exporter.refresher.trigger().result(timeout=30)


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    """Build harnesses; everything started is stopped at teardown."""
    started: list[Harness] = []

    def build(
        workspace: SimulatedWorkspace | None = None,
        *,
        cache_ttl: float = 0.0,
        token: str = TEST_TOKEN,
        token_source: TokenSource | None = None,
        simulator_token: str = TEST_TOKEN,
        latency: float = 0.0,
        pagination_style: str = "both",
        start: bool = False,
        **config: Any,
    ) -> Harness:
        workspace = workspace or SimulatedWorkspace()
        simulator = SimulatorServer(
            workspace,
            token=simulator_token,
            latency_seconds=latency,
            pagination_style=pagination_style,
        ).start()
        settings: dict[str, Any] = {
            "api_url": simulator.url,
            "token": token_source or TokenSource(value=token),
            "cache_ttl_seconds": cache_ttl,
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "refresh_timeout_seconds": 20.0,
            # No request budget unless a test asks for one: most tests refresh at a TTL of 0.
            "max_requests_per_second": 0.0,
        } | config
        exporter = Exporter(Config(**settings))
        if start:
            exporter.start()
        else:
            exporter.http.start()
        harness = Harness(workspace, simulator, exporter, httpx.Client(timeout=30))
        started.append(harness)
        return harness

    yield build
    for harness in started:
        harness.http.close()
        harness.exporter.close()
        harness.simulator.close()


def log_lines_until_listening(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """Start the real CLI with ``argv``, read its log until it says it listens, stop it with SIGTERM.

    Returns the lines read (the start-up log); fails if the line does not come within 30 s.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "census_exporter", *argv],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        stderr = process.stderr

        def listening() -> bool:
            lines.append(stderr.readline())
            return "listening on" in lines[-1]

        wait_for(listening, timeout=30, interval=0, what="the listening log line")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    return lines


class Recorder:
    """Stands in for the self-metrics and for time.sleep."""

    def __init__(self) -> None:
        self.observed: list[tuple[str, str]] = []
        self.slept: list[float] = []

    def observe(self, endpoint: str, code: str, seconds: float) -> None:
        self.observed.append((endpoint, code))

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
