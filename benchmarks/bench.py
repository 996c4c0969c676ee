"""Issue 9's scale benchmark: the exporter at 100 / 1,000 / 5,000 syncs, written to benchmarks/results.md.

    .venv/bin/python benchmarks/bench.py [--syncs 100 1000 5000] [--latency 0.05] [--concurrency 16]

One process tree, one run. For each workspace size the simulated Census API runs in a child process (so its
work does not share an interpreter lock with the clients measured here) with a fixed per-request latency, and
against it, one after the other:

* a single-request latency check: 20 requests on one keep-alive connection; the run FAILS (exit 1) when
  their median is more than 10 % off the configured latency: then the simulator, not the client, is measured;
* a plain thread-pool client (``--concurrency`` threads): list the syncs, then each sync's newest runs;
* a naive sequential client doing the same, measured at the smallest size only and estimated at larger
  ones from its measured time per request;
* the exporter as a subprocess (real HTTP, ``--census.concurrency`` the same, ``--census.cache-ttl``
  ``--ttl``): its cold refresh (its own ``census_refresh_duration_seconds``), warm scrapes per format, the
  size of one scrape, then two scrapers mixing every format through steady-state refreshes, after which its
  peak RSS (VmHWM) and the API requests per hour (simulator requests between the starts of two steady-state
  refreshes, scaled to an hour) are read;
* when the exporter has ``--census.max-requests-per-second``: the same with a budget of half the requests per
  second that N syncs per TTL need, and the distribution of the data age it leaves (now minus
  ``census_sync_data_timestamp_seconds``).

The simulator's demo activity (runs starting and finishing) advances at most once a second rather than on
every request: it walks every sync, which at 5,000 syncs would add milliseconds of the simulator's own to each
request. Times depend on the machine; compare ratios between versions.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.client
import math
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from census_exporter import __version__
from census_exporter.demo import DEMO_TOKEN, DemoActivity, SimulatedWorkspace, SimulatorServer

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results.md"
SEED = 1
LATENCY_TOLERANCE = 0.10
LATENCY_CHECK_REQUESTS = 20
RUNS_PAGE_SIZE = 25  # what the exporter asks for per page of a sync's runs
SYNCS_PAGE_SIZE = 100
ACTIVITY_INTERVAL_SECONDS = 1.0
BUDGET_FLAG = "--census.max-requests-per-second"
# Accept headers as Prometheus sends them (OpenMetrics first when it prefers it).
FORMATS: dict[str, dict[str, str]] = {
    "text": {"Accept": "text/plain;version=0.0.4"},
    "text+gzip": {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"},
    "openmetrics": {"Accept": "application/openmetrics-text;version=1.0.0"},
    "openmetrics+gzip": {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
}
TARGET_RSS_BYTES = 100 * 2**20
TARGET_BYTES_PER_SYNC = 1500
TARGET_SERIES_PER_SYNC = 20
TARGET_COLD_RATIO = 1.1
TARGET_WARM_P50_SECONDS = 0.003


class SimulatorLatencyError(RuntimeError):
    """The simulator's own latency is more than the tolerance off the configured one."""


@dataclass(frozen=True)
class Settings:
    """How one benchmark run is set up."""

    latency_seconds: float = 0.05
    concurrency: int = 16
    ttl_seconds: int = 60
    warm_scrapes: int = 100
    scrape_pause_seconds: float = 1.0
    sequential_up_to: int = 100
    startup_timeout_seconds: float = 300.0


@dataclass(frozen=True)
class BudgetResult:
    """The exporter under a request budget smaller than N syncs per TTL."""

    requests_per_second: int
    requests_per_hour: int
    data_age_p50_seconds: float
    data_age_p90_seconds: float
    data_age_max_seconds: float


@dataclass(frozen=True)
class Result:
    """Everything measured at one workspace size."""

    syncs: int
    single_request_seconds: float
    thread_pool_seconds: float
    sequential_seconds: float
    sequential_measured: bool
    cold_refresh_seconds: float
    warm_p50_seconds: dict[str, float]
    warm_p99_seconds: dict[str, float]
    scrape_bytes: dict[str, int]
    series: int
    peak_rss_bytes: int
    requests_per_refresh: int
    requests_per_hour: int
    #: A bare socket server sending as many bytes as the text scrape, to the same client (median).
    text_floor_seconds: float = 0.0
    budget: BudgetResult | None = None

    @property
    def cold_ratio(self) -> float:
        """Cold refresh of the exporter over the plain thread pool's time for the same requests."""
        return self.cold_refresh_seconds / self.thread_pool_seconds

    @property
    def bytes_per_sync(self) -> float:
        """Uncompressed text exposition per sync (the exporter's own metrics included)."""
        return self.scrape_bytes["text"] / self.syncs

    @property
    def series_per_sync(self) -> float:
        """Series of one scrape per sync (the exporter's own metrics included)."""
        return self.series / self.syncs


# ---------------------------------------------------------------------------------------- the simulator


def serve_simulator(conn: Connection, syncs: int, latency_seconds: float, seed: int) -> None:
    """Child process: the simulated API; answers ``"times"`` (request times) and ``"stop"`` on ``conn``."""
    workspace = SimulatedWorkspace()
    activity = DemoActivity(workspace, seed=seed, syncs=syncs)
    request_times: list[float] = []
    last_advance = [0.0]

    def before_request() -> None:
        now = time.monotonic()
        request_times.append(now)
        if now - last_advance[0] >= ACTIVITY_INTERVAL_SECONDS:
            last_advance[0] = now
            activity.advance()

    server = SimulatorServer(
        workspace, token=DEMO_TOKEN, latency_seconds=latency_seconds, before_request=before_request
    ).start()
    conn.send(server.url)
    while (command := conn.recv()) != "stop":
        if command == "times":
            conn.send(list(request_times))
    server.close()


def serve_bytes(conn: Connection, size: int) -> None:
    """Child process: a bare socket server answering every request on a keep-alive connection with ``size``
    bytes, the least any HTTP server can take to send them; answers ``"stop"`` on ``conn``."""
    body = b"x" * size
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % size
    listener = socket.create_server(("127.0.0.1", 0))
    conn.send(listener.getsockname()[1])

    def answer() -> None:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with client, client.makefile("rb") as requests:
            while requests.readline():
                while requests.readline() not in (b"\r\n", b""):
                    pass
                client.sendall(head)
                client.sendall(body)

    threading.Thread(target=answer, daemon=True).start()
    conn.recv()  # "stop"


def bare_socket_p50(size: int, scrapes: int) -> float:
    """The median time the bench's scrape client takes to get ``size`` bytes from a bare socket server."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_bytes, args=(child, size), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the bare socket server did not start within 60 s")
        connection = http.client.HTTPConnection("127.0.0.1", parent.recv(), timeout=60)
        try:
            scrape(connection, {})
            return statistics.median(scrape(connection, {})[0] for _ in range(scrapes))
        finally:
            connection.close()
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()


class Simulator:
    """The parent's handle on the simulator child process."""

    def __init__(self, syncs: int, latency_seconds: float, seed: int = SEED) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=serve_simulator, args=(child, syncs, latency_seconds, seed), daemon=True
        )
        self._process.start()
        if not self._conn.poll(120):
            raise RuntimeError("the simulator did not start within 120 s")
        self.url: str = self._conn.recv()
        self.port = int(re.search(r":(\d+)/", self.url).group(1))  # type: ignore[union-attr]

    def request_times(self) -> list[float]:
        """Monotonic times (shared clock on Linux) of every authorised request so far."""
        self._conn.send("times")
        times: list[float] = self._conn.recv()
        return times

    def close(self) -> None:
        """Stop the child."""
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


def single_request_latency(simulator: Simulator) -> float:
    """Median time of one request on a keep-alive connection, as any client would see it."""
    connection = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=30)
    latencies = []
    try:
        for _ in range(LATENCY_CHECK_REQUESTS):
            started = time.perf_counter()
            connection.request("GET", "/api/v1/syncs?per_page=1", headers=_auth())
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()
    return statistics.median(latencies)


def check_latency(measured: float, configured: float) -> None:
    """Raise :class:`SimulatorLatencyError` when ``measured`` is more than 10 % off ``configured``."""
    if abs(measured - configured) > LATENCY_TOLERANCE * configured:
        raise SimulatorLatencyError(
            f"the simulator's single-request latency is {measured * 1000:.1f} ms, configured "
            f"{configured * 1000:.1f} ms (more than {LATENCY_TOLERANCE:.0%} off): the benchmark would "
            "measure the simulator, not the exporter"
        )


# ------------------------------------------------------------------------------------- plain clients


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO_TOKEN}"}


def _list_sync_ids(client: httpx.Client, url: str) -> list[int]:
    ids: list[int] = []
    page: int | None = 1
    while page is not None:
        body = client.get(f"{url}/syncs", params={"page": page, "per_page": SYNCS_PAGE_SIZE}).json()
        ids += [sync["id"] for sync in body["data"]]
        page = body["pagination"]["next_page"]
    return ids


def _newest_runs(client: httpx.Client, url: str, sync_id: int) -> None:
    client.get(
        f"{url}/syncs/{sync_id}/sync_runs",
        params={"order": "desc", "page": 1, "per_page": RUNS_PAGE_SIZE},
    ).raise_for_status()


def thread_pool_client(url: str, concurrency: int) -> tuple[float, int]:
    """Seconds and requests to list the syncs and read each one's newest runs with ``concurrency`` threads."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(headers=_auth(), limits=limits, timeout=60) as client,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        started = time.perf_counter()
        ids = _list_sync_ids(client, url)
        list(pool.map(lambda sync_id: _newest_runs(client, url, sync_id), ids))
        elapsed = time.perf_counter() - started
    return elapsed, math.ceil(len(ids) / SYNCS_PAGE_SIZE) + len(ids)


def sequential_client(url: str) -> tuple[float, int]:
    """The same requests as :func:`thread_pool_client`, one after the other."""
    with httpx.Client(headers=_auth(), timeout=60) as client:
        started = time.perf_counter()
        ids = _list_sync_ids(client, url)
        for sync_id in ids:
            _newest_runs(client, url, sync_id)
        elapsed = time.perf_counter() - started
    return elapsed, math.ceil(len(ids) / SYNCS_PAGE_SIZE) + len(ids)


# ------------------------------------------------------------------------------------------ the exporter


def free_port() -> int:
    """A free loopback port for the exporter."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@functools.cache
def exporter_has_budget_flag() -> bool:
    """Whether this exporter has the request budget of issue 9 (``--census.max-requests-per-second``)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "census_exporter", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return BUDGET_FLAG in help_text


@contextmanager
def running_exporter(api_url: str, settings: Settings, *extra: str) -> Iterator[tuple[int, int]]:
    """The exporter as a subprocess; yields (pid, port) and stops it afterwards."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "census_exporter",
        f"--census.api-url={api_url}",
        f"--census.concurrency={settings.concurrency}",
        f"--census.cache-ttl={settings.ttl_seconds}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=error",
        *extra,
    ]
    if not any(arg.startswith(BUDGET_FLAG) for arg in extra) and exporter_has_budget_flag():
        # Without a budget unless one is asked for: the unbudgeted figures compare with the thread pool.
        command.append(f"{BUDGET_FLAG}=0")
    process = subprocess.Popen(
        command,
        env=os.environ | {"CENSUS_API_TOKEN": DEMO_TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_ready(port: int, timeout: float) -> None:
    """Poll /readyz until the first refresh finished (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the exporter on port {port} was not ready within {timeout:.0f} s")


def scrape(connection: http.client.HTTPConnection, headers: dict[str, str]) -> tuple[float, bytes]:
    """Seconds and raw (possibly gzipped) body of one scrape on a keep-alive connection."""
    started = time.perf_counter()
    connection.request("GET", "/metrics", headers=headers | {"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"scrape answered {response.status}")
    return elapsed, body


def text_of(body: bytes) -> str:
    """The exposition text of a scrape body, gunzipped when it is."""
    return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()


def samples(text: str) -> list[str]:
    """The sample lines of an exposition."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def sample_values(text: str, name: str) -> list[float]:
    """Values of every sample of metric ``name`` (no suffix) in an exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{.*\}})? (\S+)")
    return [float(match.group(1)) for line in samples(text) if (match := pattern.match(line))]


def peak_rss_bytes(pid: int) -> int:
    """Peak resident memory of a process (VmHWM from /proc/<pid>/status)."""
    match = re.search(r"^VmHWM:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmHWM for process {pid}")
    return int(match.group(1)) * 1024


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def burst_starts(times: list[float], since: float, quiet_seconds: float) -> list[float]:
    """Starts of the bursts of requests after ``since``: a refresh each, separated by ``quiet_seconds``."""
    starts: list[float] = []
    previous = -math.inf
    for moment in sorted(t for t in times if t >= since):
        if moment - previous > quiet_seconds:
            starts.append(moment)
        previous = moment
    return starts


def steady_state_rate(times: list[float], ready: float, quiet_seconds: float) -> tuple[int, float] | None:
    """(requests, seconds) from the start of the first refresh after the cold one (done at ``ready``) to
    the start of the next."""
    starts = burst_starts(times, ready, quiet_seconds)
    if len(starts) < 2:
        return None
    first, second = starts[0], starts[1]
    return sum(first <= t < second for t in times), second - first


@dataclass
class _Scrapers:
    """Two Prometheus-like scrapers cycling through every format until stopped."""

    port: int
    pause_seconds: float
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for offset in range(2):
            thread = threading.Thread(target=self._scrape_forever, args=(offset,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _scrape_forever(self, offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        formats = list(FORMATS.values())
        turn = offset
        while not self.stop.is_set():
            try:
                scrape(connection, formats[turn % len(formats)])
            except (OSError, RuntimeError, http.client.HTTPException) as error:
                self.errors.append(str(error))
                connection.close()
            turn += 1
            self.stop.wait(self.pause_seconds)
        connection.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _wait_for_steady_state(
    simulator: Simulator, ready: float, settings: Settings, timeout: float
) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rate = steady_state_rate(simulator.request_times(), ready, settings.ttl_seconds / 3)
        if rate is not None:
            return rate
        time.sleep(1)
    raise RuntimeError(f"no two steady-state refreshes within {timeout:.0f} s")


def measure_exporter(simulator: Simulator, settings: Settings) -> dict[str, object]:
    """Cold refresh, warm scrapes, size, peak RSS and steady-state API cost of the exporter."""
    with running_exporter(simulator.url, settings) as (pid, port):
        wait_ready(port, settings.startup_timeout_seconds)
        ready = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            text = text_of(scrape(connection, FORMATS["text"])[1])
            cold = max(sample_values(text, "census_refresh_duration_seconds"))
            sizes, p50, p99 = {}, {}, {}
            for name, headers in FORMATS.items():
                sizes[name] = len(scrape(connection, headers)[1])  # also renders this format once
                times = [scrape(connection, headers)[0] for _ in range(settings.warm_scrapes)]
                p50[name], p99[name] = statistics.median(times), percentile(times, 0.99)
            series = len(samples(text_of(scrape(connection, FORMATS["text"])[1])))
        finally:
            connection.close()
        floor = bare_socket_p50(sizes["text"], settings.warm_scrapes)
        scrapers = _Scrapers(port, settings.scrape_pause_seconds)
        scrapers.start()
        try:
            timeout = cold * 3 + settings.ttl_seconds * 3 + 60
            requests, seconds = _wait_for_steady_state(simulator, ready, settings, timeout)
        finally:
            scrapers.close()
        if scrapers.errors:
            raise RuntimeError(f"scrapes failed: {scrapers.errors[:3]}")
        peak = peak_rss_bytes(pid)
    return {
        "cold_refresh_seconds": cold,
        "warm_p50_seconds": p50,
        "warm_p99_seconds": p99,
        "text_floor_seconds": floor,
        "scrape_bytes": sizes,
        "series": series,
        "peak_rss_bytes": peak,
        "requests_per_refresh": requests,
        "requests_per_hour": round(requests / seconds * 3600),
    }


def measure_budget(simulator: Simulator, syncs: int, settings: Settings) -> BudgetResult:
    """The exporter with a budget of half the requests per second ``syncs`` per TTL need."""
    budget = max(1, syncs // (2 * settings.ttl_seconds))
    with running_exporter(simulator.url, settings, f"{BUDGET_FLAG}={budget}") as (_, port):
        wait_ready(port, settings.startup_timeout_seconds)
        scrapers = _Scrapers(port, settings.scrape_pause_seconds)
        scrapers.start()
        try:
            # Long enough for the budget to go round every sync once and reach a steady state.
            settle = math.ceil(syncs / budget) + settings.ttl_seconds
            scrapers.stop.wait(settle)
            before, started = len(simulator.request_times()), time.monotonic()
            scrapers.stop.wait(settings.ttl_seconds)
            requests, seconds = len(simulator.request_times()) - before, time.monotonic() - started
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                text = text_of(scrape(connection, FORMATS["text"])[1])
            finally:
                connection.close()
        finally:
            scrapers.close()
    now = time.time()
    ages = [now - read for read in sample_values(text, "census_sync_data_timestamp_seconds")]
    if not ages:
        raise RuntimeError("the exporter has a budget flag but exports no census_sync_data_timestamp_seconds")
    return BudgetResult(
        requests_per_second=budget,
        requests_per_hour=round(requests / seconds * 3600),
        data_age_p50_seconds=percentile(ages, 0.5),
        data_age_p90_seconds=percentile(ages, 0.9),
        data_age_max_seconds=max(ages),
    )


def run_size(
    syncs: int,
    settings: Settings,
    *,
    with_budget: bool = False,
    sequential_per_request: float | None = None,
    check: Callable[[float, float], None] = check_latency,
) -> Result:
    """Measure everything at one workspace size against a fresh simulator."""
    simulator = Simulator(syncs, settings.latency_seconds)
    try:
        single = single_request_latency(simulator)
        check(single, settings.latency_seconds)
        pool_seconds, requests = thread_pool_client(simulator.url, settings.concurrency)
        if syncs <= settings.sequential_up_to or sequential_per_request is None:
            sequential_seconds, _ = sequential_client(simulator.url)
            sequential_measured = True
        else:
            sequential_seconds = sequential_per_request * requests
            sequential_measured = False
        exporter = measure_exporter(simulator, settings)
        budget = measure_budget(simulator, syncs, settings) if with_budget else None
    finally:
        simulator.close()
    return Result(
        syncs=syncs,
        single_request_seconds=single,
        thread_pool_seconds=pool_seconds,
        sequential_seconds=sequential_seconds,
        sequential_measured=sequential_measured,
        budget=budget,
        **exporter,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------ the report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def git_commit() -> str:
    """The checked-out commit, marked ``+dirty`` when the work tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    """Cores, CPU model and Python of this machine."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and (found := re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)):
        model = found.group(1).strip()
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def targets(results: list[Result]) -> list[str]:
    """Issue 9's done-when lines, met or missed, at the largest size measured."""
    largest = max(results, key=lambda result: result.syncs)
    at = f"at {largest.syncs:,} syncs"

    def line(met: bool, text: str) -> str:
        return f"- {'met' if met else '**missed**'}: {text}"

    lines = [
        line(
            largest.peak_rss_bytes <= TARGET_RSS_BYTES,
            f"peak RSS <= 100 MiB {at}: {largest.peak_rss_bytes / 2**20:.0f} MiB",
        ),
        line(
            largest.bytes_per_sync <= TARGET_BYTES_PER_SYNC,
            f"<= 1.5 KB per sync {at}: {largest.bytes_per_sync:,.0f} bytes",
        ),
        line(
            largest.series_per_sync <= TARGET_SERIES_PER_SYNC,
            f"<= 20 series per sync {at}: {largest.series_per_sync:.1f}",
        ),
    ]
    lines += [
        line(
            result.cold_ratio <= TARGET_COLD_RATIO,
            f"cold refresh <= 1.1 x thread pool at {result.syncs:,} syncs: {result.cold_ratio:.2f}",
        )
        for result in results
        if result.syncs >= 1000
    ]
    lines.append(
        line(
            largest.warm_p50_seconds["text"] <= TARGET_WARM_P50_SECONDS,
            f"warm scrape p50 <= 3 ms (text, no gzip) {at}: {_ms(largest.warm_p50_seconds['text'])} ms",
        )
    )
    return lines


def report(results: list[Result], settings: Settings, *, budget_available: bool) -> str:
    """benchmarks/results.md, from the measurements."""
    out = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/bench.py` (`make bench`) from one run; do not edit by hand. "
        "docs/performance.md explains the method and each column.",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Exporter: census-exporter {__version__}, commit {git_commit()}",
        f"- Simulated API latency {_ms(settings.latency_seconds)} ms per request, concurrency "
        f"{settings.concurrency} (exporter and thread pool), exporter "
        f"`--census.cache-ttl={settings.ttl_seconds}`; "
        "two scrapers mixing text and OpenMetrics, gzip and plain, one scrape each per "
        f"{settings.scrape_pause_seconds:g} s",
        "",
        "## Refresh, size, memory and API cost",
        "",
        "| Syncs | Single request | Thread pool | Sequential | Exporter cold refresh | Cold / thread pool "
        "| Bytes per sync | Series per sync | Peak RSS | API requests per refresh | API requests per hour |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        sequential = f"{r.sequential_seconds:.1f} s" + ("" if r.sequential_measured else " (estimated)")
        out.append(
            f"| {r.syncs:,} | {_ms(r.single_request_seconds)} ms | {r.thread_pool_seconds:.2f} s "
            f"| {sequential} "
            f"| {r.cold_refresh_seconds:.2f} s | {r.cold_ratio:.2f} | {r.bytes_per_sync:,.0f} "
            f"| {r.series_per_sync:.1f} | {r.peak_rss_bytes / 2**20:.0f} MiB | {r.requests_per_refresh:,} "
            f"| {r.requests_per_hour:,} |"
        )
    out += [
        "",
        "## Warm scrapes (p50 / p99) and scrape size",
        "",
        "| Syncs | "
        + " | ".join(FORMATS)
        + " | bare socket, text's bytes | text / bare socket | "
        + " | ".join(f"bytes {name}" for name in FORMATS)
        + " |",
        "|---:|" + "---:|" * (2 * len(FORMATS) + 2),
    ]
    for r in results:
        cells = [f"{_ms(r.warm_p50_seconds[n])} / {_ms(r.warm_p99_seconds[n])} ms" for n in FORMATS]
        ratio = r.warm_p50_seconds["text"] / r.text_floor_seconds if r.text_floor_seconds else math.nan
        cells += [f"{_ms(r.text_floor_seconds)} ms", f"{ratio:.2f}"]
        cells += [f"{r.scrape_bytes[n] / 1e6:.2f} MB" for n in FORMATS]
        out.append(f"| {r.syncs:,} | " + " | ".join(cells) + " |")
    out += ["", "## Under a request budget", ""]
    budgeted = [r for r in results if r.budget is not None]
    if not budget_available:
        out.append(f"Not measured: this exporter has no `{BUDGET_FLAG}`.")
    elif not budgeted:
        out.append("Not measured in this run.")
    else:
        out += [
            "| Syncs | Budget | API requests per hour | Data age p50 | p90 | max |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in budgeted:
            b = r.budget
            assert b is not None
            out.append(
                f"| {r.syncs:,} | {b.requests_per_second}/s | {b.requests_per_hour:,} "
                f"| {b.data_age_p50_seconds:.0f} s | {b.data_age_p90_seconds:.0f} s "
                f"| {b.data_age_max_seconds:.0f} s |"
            )
    out += ["", "## Issue 9's targets", "", *targets(results), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write benchmarks/results.md; 1 when the simulator's latency is off."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--syncs", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per simulated API request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ttl", type=int, default=60, help="the exporter's --census.cache-ttl")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = Settings(latency_seconds=args.latency, concurrency=args.concurrency, ttl_seconds=args.ttl)
    budget_available = exporter_has_budget_flag()
    results: list[Result] = []
    per_request: float | None = None
    sizes = sorted(args.syncs)
    try:
        for syncs in sizes:
            result = run_size(
                syncs,
                settings,
                with_budget=budget_available and syncs == sizes[-1],
                sequential_per_request=per_request,
            )
            if result.sequential_measured and per_request is None:
                per_request = result.sequential_seconds / (math.ceil(syncs / SYNCS_PAGE_SIZE) + syncs)
            results.append(result)
            print(
                f"{syncs:>6,} syncs: cold {result.cold_refresh_seconds:.2f} s "
                f"({result.cold_ratio:.2f} x thread pool), warm text p50 "
                f"{_ms(result.warm_p50_seconds['text'])} ms, {result.bytes_per_sync:,.0f} B and "
                f"{result.series_per_sync:.1f} series per sync, peak RSS "
                f"{result.peak_rss_bytes / 2**20:.0f} MiB",
                flush=True,
            )
    except SimulatorLatencyError as error:
        print(f"bench: FAILED: {error}", file=sys.stderr)
        return 1
    args.output.write_text(report(results, settings, budget_available=budget_available))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
