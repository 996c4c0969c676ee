"""Issue 18's fleet benchmark: scrapes, /readyz, memory and threads of one exporter over a large fleet.

Scenarios (each against the project's simulator on loopback, the exporter in its own process at its
default bounds): 200 and 300 discovered V2 groups of one sync each, one V1 workspace listing 200,000 syncs,
the bound filled with data (20,000 syncs of 3 runs each listed, the request budget off so that every sync
within --census.max-syncs is read: the most the syncs of the fleet can make the process hold), one
workspace whose API answers every request in 8 s beside five fast ones, and the bound filled beside 200
discovered groups (the worst case at the defaults). While each runs, a scraper sends
``X-Prometheus-Scrape-Timeout-Seconds: 10`` every second and a prober, a process of its own, asks
``/readyz`` every 100 ms and an idle server process as often (the control); the exporter's peak RSS
(VmHWM) and thread count come from /proc. The simulator's threads run at nice 10 (see
:data:`SIMULATOR_NICENESS`). Writes benchmarks/fleet-results.md.

    make bench-fleet                                 # about 11 minutes on two cores
    .venv/bin/python benchmarks/fleet.py --only 4 6  # the two scenarios at the bound
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from census_exporter.demo import SimulatedOrganization, SimulatedWorkspace, SimulatorServer
from census_exporter.demo.organization import base_url

REPO = Path(__file__).resolve().parent.parent
PAT = "secret-token:bench-pat"
KEY = "secret-token:bench-key"
SCRAPE_TIMEOUT = 10.0
CHART_MEMORY_LIMIT_MIB = 256
#: The simulator stands in for Census's servers, which do not share the exporter's CPU: its threads run
#: this much nicer than the exporter, the scraper and the prober, so that on a 2-core machine the
#: exporter is not measured waiting for the CPU its own API is using.
SIMULATOR_NICENESS = 10
#: How the exporter is started: as shipped, or (``--compare-switch-interval``) keeping CPython's default
#: GIL switch interval of 5 ms instead of the exporter's own (census_exporter.cli.main).
EXPORTER_AS_SHIPPED = ("-m", "census_exporter")
EXPORTER_DEFAULT_SWITCH_INTERVAL = (
    "-c",
    "import sys; sys.setswitchinterval = lambda seconds: None; "
    "from census_exporter.cli.main import main; raise SystemExit(main(sys.argv[1:]))",
)
exporter_command = EXPORTER_AS_SHIPPED


@dataclass
class Result:
    name: str
    scrapes: list[float] = field(default_factory=list)
    overruns: int = 0
    readyz: list[float] = field(default_factory=list)
    #: The same prober's answers from an idle server process: the machine's own delays.
    control: list[float] = field(default_factory=list)
    #: The 1-minute load average when the scenario ended.
    load: float = 0.0
    peak_rss_mib: float = 0.0
    peak_threads: int = 0
    workspaces: int = 0
    syncs: int = 0
    #: Syncs whose runs were read (they have census_sync_data_timestamp_seconds).
    read: int = 0
    left_out: float = 0.0
    ready_after: float | None = None


def niced(start: Callable[[], SimulatorServer]) -> SimulatorServer:
    """Call ``start`` (which starts a simulator's serving thread) from a thread at
    :data:`SIMULATOR_NICENESS`: on Linux a thread's nice value is its own, and the threads it starts
    (the simulator's, and the one per request they start) inherit it."""
    started: list[SimulatorServer] = []

    def lowered() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, SIMULATOR_NICENESS)
        started.append(start())

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    return started[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, str]:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def with_runs(syncs: int, runs: int) -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, syncs + 1):
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
        for _ in range(runs):
            workspace.add_run(sync_id, "completed", records=5)
    return workspace


def one_sync() -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="only sync")
    workspace.add_run(1, "completed", records=5)
    return workspace


def run(
    name: str, workspaces_file: str, env: dict[str, str], seconds: float, flags: tuple[str, ...] = ()
) -> Result:
    result = Result(name)
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "workspaces.yaml"
        path.write_text(workspaces_file)
        process = subprocess.Popen(
            [
                sys.executable,
                *exporter_command,
                "--config.file",
                str(path),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--census.cache-ttl",
                "10",
                "--log.level",
                "warn",
                *flags,
            ],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        started = time.monotonic()

        def scraper() -> None:
            with httpx.Client(timeout=SCRAPE_TIMEOUT + 5) as http:
                while not stop.is_set():
                    begun = time.monotonic()
                    try:
                        http.get(
                            url + "/metrics",
                            headers={"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)},
                        )
                        result.scrapes.append(time.monotonic() - begun)
                    except httpx.TransportError:
                        if time.monotonic() - started > 5:
                            result.overruns += 1
                    stop.wait(max(0.0, 1.0 - (time.monotonic() - begun)))

        try:
            # until it listens
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    httpx.get(url + "/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            # The prober is a process of its own: in this one the simulator's threads (serving the
            # exporter's requests) would hold the GIL, and the prober would time them, not the exporter.
            prober = subprocess.Popen(
                [sys.executable, __file__, "--probe", url + "/readyz", "--seconds", str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
            )
            threads = [threading.Thread(target=scraper)]
            for thread in threads:
                thread.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                status = proc_status(process.pid)
                result.peak_threads = max(result.peak_threads, int(status["Threads"]))
                time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join()
            probed, _ = prober.communicate(timeout=30)
            answers = [line.split() for line in probed.splitlines()]
            result.readyz = [float(latency) for _, latency, _, _ in answers]
            result.control = [float(control) for _, _, _, control in answers]
            result.ready_after = next(
                (float(at) - float(answers[0][0]) for at, _, code, _ in answers if code == "200"), None
            )
            result.load = os.getloadavg()[0]
            status = proc_status(process.pid)
            result.peak_rss_mib = int(status["VmHWM"].split()[0]) / 1024
            text = httpx.get(url + "/metrics", timeout=30).text
            for family in text_string_to_metric_families(text):
                if family.name == "census_up":
                    result.workspaces = len(family.samples)
                if family.name == "census_syncs":
                    result.syncs = int(sum(sample.value for sample in family.samples))
                if family.name == "census_sync_data_timestamp_seconds":
                    result.read = len(family.samples)
                if family.name in ("census_syncs_left_out", "census_discovery_workspaces_left_out"):
                    result.left_out += sum(sample.value for sample in family.samples)
        finally:
            process.terminate()
            process.wait(10)
    return result


def probe(url: str, seconds: float) -> None:
    """Ask ``url`` every 100 ms for ``seconds``, and as often an idle server process of its own (the
    control: what the loaded machine alone costs an answer); print one line per pair of answers: when
    (Unix time, to compare with the exporter's logs), the latency in seconds, the status code (000: it
    failed) and the control's latency."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "ready").write_text("ready\n")
        port = free_port()
        control = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", directory, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(timeout=5) as http:
                control_url = f"http://127.0.0.1:{port}/ready"
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        http.get(control_url)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                started = time.monotonic()
                while time.monotonic() - started < seconds:
                    begun = time.monotonic()
                    try:
                        code = http.get(url).status_code
                    except httpx.TransportError:
                        code = 0
                    latency = time.monotonic() - begun
                    asked = time.monotonic()
                    with contextlib.suppress(httpx.TransportError):
                        http.get(control_url)
                    control_latency = time.monotonic() - asked
                    print(f"{time.time():.3f} {latency:.4f} {code:03d} {control_latency:.4f}", flush=True)
                    time.sleep(max(0.0, 0.1 - (time.monotonic() - begun)))
        finally:
            control.terminate()
            control.wait(5)


def groups(count: int, seconds: float) -> Result:
    organization = SimulatedOrganization(pat=PAT)
    for number in range(count):
        organization.add_workspace(f"group {number}", workspace=one_sync())
    server = niced(organization.serve)
    try:
        text = f"""workspaces:
  - auto: true
    api_version: v2
    api_url: {base_url(server, "v2")}
    token_env: CENSUS_PAT
"""
        return run(f"{count} discovered groups", text, {"CENSUS_PAT": PAT}, seconds)
    finally:
        server.close()


def huge_listing(syncs: int, seconds: float) -> Result:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, syncs + 1):
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
    server = niced(SimulatorServer(workspace, token=KEY).start)
    try:
        text = f"""workspaces:
  - name: huge
    api_version: v1
    api_url: {server.url}
    token_env: KEY
"""
        return run(f"one workspace listing {syncs:,} syncs", text, {"KEY": KEY}, seconds)
    finally:
        server.close()


#: No request budget and a refresh timeout long enough to read every sync within the bound.
FULL_FLAGS = ("--census.max-requests-per-second", "0", "--census.refresh-timeout", "300")


def full_workspace(syncs: int) -> tuple[SimulatorServer, str]:
    """The named workspace "full": its own simulator (niced) serving ``syncs`` syncs of 3 runs each, and
    its entry in a workspaces file (token in ``KEY``; run it with :data:`FULL_FLAGS`)."""
    server = niced(SimulatorServer(with_runs(syncs, 3), token=KEY).start)
    entry = f"""  - name: full
    api_version: v1
    api_url: {server.url}
    token_env: KEY
"""
    return server, entry


def bound_filled(syncs: int, seconds: float) -> Result:
    """Twice the default --census.max-syncs listed, each sync with 3 runs: the bound filled with data."""
    server, full = full_workspace(syncs)
    try:
        text = "workspaces:\n" + full
        name = f"{syncs:,} syncs of 3 runs listed, those within the bound all read (no budget)"
        return run(name, text, {"KEY": KEY}, seconds, FULL_FLAGS)
    finally:
        server.close()


def combined(syncs: int, count: int, seconds: float) -> Result:
    """The bound filled with data (as :func:`bound_filled`) in a named workspace, and ``count`` discovered
    groups of one sync each beside it: the worst case at the defaults, syncs and workspaces at once."""
    organization = SimulatedOrganization(pat=PAT)
    for number in range(count):
        organization.add_workspace(f"group {number}", workspace=one_sync())
    groups_server = niced(organization.serve)
    server, full = full_workspace(syncs)
    try:
        text = f"""workspaces:
{full}  - auto: true
    api_version: v2
    api_url: {base_url(groups_server, "v2")}
    token_env: CENSUS_PAT
"""
        name = f"{syncs:,} syncs of 3 runs listed (no budget) and {count} discovered groups"
        return run(name, text, {"KEY": KEY, "CENSUS_PAT": PAT}, seconds, FULL_FLAGS)
    finally:
        server.close()
        groups_server.close()


def one_slow(seconds: float) -> Result:
    organization = SimulatedOrganization(pat=PAT)
    members = [organization.add_workspace(f"fast {n}", workspace=one_sync()) for n in range(5)]
    server = niced(organization.serve)
    slow = niced(SimulatorServer(one_sync(), token=KEY, latency_seconds=8.0).start)
    try:
        entries = "".join(
            f"""  - name: {member.name}
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: KEY_{n}
"""
            for n, member in enumerate(members)
        )
        text = f"""workspaces:
{entries}  - name: slow
    api_version: v1
    api_url: {slow.url}
    token_env: SLOW_KEY
"""
        env = {f"KEY_{n}": member.api_key for n, member in enumerate(members)} | {"SLOW_KEY": KEY}
        return run("one workspace answering in 8 s beside five fast ones", text, env, seconds)
    finally:
        slow.close()
        server.close()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(results: list[Result], commit: str) -> str:
    lines = [
        "# Fleet benchmark (issue 18)",
        "",
        f"Measured at commit `{commit}` by `make bench-fleet` (benchmarks/fleet.py) on a shared 2-core",
        "machine, "
        "the exporter at its default bounds, scraped every second with a 10 s scrape-timeout header and",
        "probed on /readyz every 100 ms by a process of its own, which asks an idle server process as often",
        "(the control: what the machine's load alone costs an answer). The simulator's threads run at",
        f"nice {SIMULATOR_NICENESS}: they stand in for Census's servers, which do not share the exporter's",
        "CPU. Load is the 1-minute load average at the end of the scenario. Peak RSS is the exporter",
        "process's VmHWM; the chart's limit is",
        f"{CHART_MEMORY_LIMIT_MIB} MiB.",
        "",
        "| Scenario | Scrapes | p50 s | p100 s | overruns | /readyz p99 ms | /readyz p100 ms "
        "| control p100 ms | load | peak RSS MiB | peak threads | watched | syncs | read | left out |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        median = statistics.median(r.scrapes) if r.scrapes else float("nan")
        slowest = max(r.scrapes, default=float("nan"))
        readyz_ms = 1000 * max(r.readyz, default=0)
        control_ms = 1000 * max(r.control, default=0)
        lines.append(
            f"| {r.name} | {len(r.scrapes)} | {median:.2f} | {slowest:.2f} | {r.overruns} "
            f"| {1000 * percentile(r.readyz, 0.99):.0f} | {readyz_ms:.0f} | {control_ms:.0f} | {r.load:.1f} "
            f"| {r.peak_rss_mib:.0f} | {r.peak_threads} | {r.workspaces} | {r.syncs:,} | {r.read:,} "
            f"| {r.left_out:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="how long each scenario is measured")
    parser.add_argument("--only", type=int, nargs="*", help="run only these scenarios (1-based)")
    parser.add_argument(
        "--compare-switch-interval",
        action="store_true",
        help="run each scenario with CPython's default GIL switch interval (5 ms), then as shipped (1 ms); "
        "writes benchmarks/fleet-switch-interval.md",
    )
    parser.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)  # the /readyz prober's process
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.seconds)
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout.strip()
    results = []
    scenarios = (
        lambda: groups(200, args.seconds),
        lambda: groups(300, args.seconds),
        lambda: huge_listing(200_000, args.seconds),
        lambda: bound_filled(20_000, max(args.seconds, 150.0)),
        lambda: one_slow(args.seconds),
        lambda: combined(20_000, 200, max(args.seconds, 150.0)),
    )
    global exporter_command  # noqa: PLW0603 - which exporter the scenarios start
    for number, scenario in enumerate(scenarios, 1):
        if args.only and number not in args.only:
            continue
        arms = (EXPORTER_DEFAULT_SWITCH_INTERVAL, EXPORTER_AS_SHIPPED)
        for command in arms if args.compare_switch_interval else (EXPORTER_AS_SHIPPED,):
            exporter_command = command
            result = scenario()
            if args.compare_switch_interval:
                result.name += (
                    " (5 ms)" if command is EXPORTER_DEFAULT_SWITCH_INTERVAL else " (1 ms, shipped)"
                )
            print(report([result], commit).splitlines()[-1], flush=True)
            results.append(result)
    text = report(results, commit)
    if args.compare_switch_interval:
        text += switch_interval_ratios(results)
        (REPO / "benchmarks" / "fleet-switch-interval.md").write_text(text)
    else:
        (REPO / "benchmarks" / "fleet-results.md").write_text(text)
    print(text)


def switch_interval_ratios(results: list[Result]) -> str:
    """Per scenario, the shipped arm's /readyz p100 and slowest scrape over the 5 ms arm's."""
    lines = ["", "| Scenario | /readyz p100, 1 ms / 5 ms | slowest scrape, 1 ms / 5 ms |", "|---|---|---|"]
    for default, shipped in zip(results[::2], results[1::2], strict=True):
        readyz = max(shipped.readyz, default=0) / max(max(default.readyz, default=0), 1e-9)
        scrape = max(shipped.scrapes, default=0) / max(max(default.scrapes, default=0), 1e-9)
        lines.append(f"| {default.name.removesuffix(' (5 ms)')} | {readyz:.2f} | {scrape:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
