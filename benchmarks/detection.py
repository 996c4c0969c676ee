"""Issue 16's detection benchmark: how long from a run failing to ``CensusSyncFailed`` selecting its sync.

    .venv/bin/python benchmarks/detection.py [--syncs 3000 5000] [--trials 6] [--held-trials 3]

One run, real processes and real HTTP on loopback: for each size (the sizes run side by side), the simulated
Census API in this process (50 ms per request), the exporter as a subprocess with its **default** request
budget and cache TTL, and a real Prometheus with the example configuration's timing (``scrape_interval`` 60 s,
``scrape_timeout`` 30 s, ``evaluation_interval`` 60 s) and the shipped rules.

Every sync is hourly and has one completed run; the background activity runs each sync once an hour at its
own offset (8 % of runs fail), as a busy workspace does, so the budget's priority classes are in use. Once
Prometheus holds a run status for every sync (each sync read at least once), trials start, a few seconds apart
so they meet the refresh cycle at different phases:

* **listing changes** (``--trials``): a run of an idle sync fails; the sync list then says ``failing`` and its
  ``updated_at`` moves, as Census's does;
* **listing unchanged** (``--held-trials``): a run fails in a sync whose listed health and ``updated_at`` are
  held (:meth:`SimulatedWorkspace.hold_listing`), so only the budget's rotation reads it.

For each trial the benchmark evaluates ``CensusSyncFailed``'s expression (read from prometheus/alerts.yaml)
in Prometheus once a second and records the first time it selects the sync. It reads only Prometheus, never
the exporter, so it adds no scrapes. Target: every listing-change trial within 2 x TTL + scrape interval.
Writes Markdown to stdout (and ``--output``); exits 1 when a listing-change trial misses the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "exporter"))
sys.path.insert(0, str(REPO))

from benchmarks.webhooks import Activity  # noqa: E402
from census_exporter.demo import DEMO_TOKEN, SimulatedWorkspace, SimulatorServer  # noqa: E402
from census_exporter.refresh.schedule import (  # noqa: E402
    PLANNED_SHARE,
    round_allowance,
    rounds_between_reads,
)

BUDGET_PER_SECOND = 10  # the exporter's default --census.max-requests-per-second
HOUR = 3600.0


@dataclass(frozen=True)
class Timing:
    """The exporter's TTL and Prometheus's scrape and evaluation interval (defaults unless a test asks)."""

    ttl_seconds: float = 60.0  # the exporter's default --census.cache-ttl
    scrape_seconds: float = 60.0  # prometheus/prometheus.yml

    @property
    def target_seconds(self) -> float:
        return 2 * self.ttl_seconds + self.scrape_seconds

    @property
    def exporter_flags(self) -> list[str]:
        """No flag at the default TTL, so the benchmark runs what users run."""
        return (
            [] if self.ttl_seconds == Timing().ttl_seconds else [f"--census.cache-ttl={self.ttl_seconds:g}"]
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def failed_alert_expression() -> str:
    """``CensusSyncFailed``'s expression as shipped."""
    groups = yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == "CensusSyncFailed":
                return str(rule["expr"])
    raise RuntimeError("no CensusSyncFailed in prometheus/alerts.yaml")


@dataclass
class Trial:
    sync_id: int
    held: bool
    failed_at: float = 0.0
    selected_after: float | None = None


@dataclass
class SizeResult:
    syncs: int
    warmup_seconds: float
    requests_per_second: float
    trials: list[Trial] = field(default_factory=list)

    def seconds(self, held: bool) -> list[float | None]:
        return [trial.selected_after for trial in self.trials if trial.held is held]


class Stack:
    """The simulator, the exporter subprocess and Prometheus for one size."""

    def __init__(self, syncs: int, workdir: Path, seed: int, timing: Timing) -> None:
        self.syncs = syncs
        self.timing = timing
        self.workdir = workdir
        self.workspace = SimulatedWorkspace()
        self.activity = Activity(self.workspace, syncs, HOUR, seed=seed)
        now = time.time()
        for sync_id in range(1, syncs + 1):
            self.workspace.add_sync(sync_id, label=f"Sync {sync_id}", schedule="hourly")
            # The last run one period before the activity's next one, as an hourly schedule would have it.
            last = now - HOUR + self.activity.offsets[sync_id]
            self.workspace.add_run(sync_id, "completed", created_at=last, duration=30.0)
        self.simulator = SimulatorServer(self.workspace, token=DEMO_TOKEN, latency_seconds=0.05).start()
        self.exporter_port = free_port()
        self.prometheus_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @contextmanager
    def running(self) -> Iterator[Stack]:
        try:
            self._start_exporter()
            self._start_prometheus()
            self.activity.start()
            yield self
        finally:
            self.activity.stop.set()
            for process in self.processes:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            self.simulator.close()

    def _start_exporter(self) -> None:
        log = (self.workdir / "exporter.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "census_exporter",
                    f"--census.api-url={self.simulator.url}",
                    f"--web.listen-address=127.0.0.1:{self.exporter_port}",
                    "--log.level=warning",
                    *self.timing.exporter_flags,
                ],
                env=os.environ | {"CENSUS_API_TOKEN": DEMO_TOKEN, "PYTHONPATH": str(REPO / "exporter")},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def _start_prometheus(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("prometheus is not installed (see docs/performance.md)")
        interval = f"{self.timing.scrape_seconds:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(REPO / "prometheus" / name) for name in ("rules.yaml", "alerts.yaml")],
            "scrape_configs": [
                {
                    "job_name": "census-exporter",
                    "scrape_interval": interval,
                    "scrape_timeout": f"{self.timing.scrape_seconds / 2:g}s",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}],
                }
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def query(self, expr: str) -> list[dict[str, object]]:
        """An instant query; empty while Prometheus is not answering yet."""
        try:
            response = httpx.get(
                f"http://127.0.0.1:{self.prometheus_port}/api/v1/query", params={"query": expr}, timeout=20
            )
            result: list[dict[str, object]] = response.json()["data"]["result"]
            return result
        except (httpx.HTTPError, ValueError, KeyError):
            return []

    def selected(self, expr: str) -> set[int]:
        """The sync ids the expression selects now."""
        ids: set[int] = set()
        for row in self.query(expr):
            labels = row.get("metric")
            if isinstance(labels, dict) and str(labels.get("sync_id", "")).isdigit():
                ids.add(int(labels["sync_id"]))
        return ids


def poll(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(1.0)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_size(
    syncs: int, trials: int, held_trials: int, workdir: Path, timeout: float, timing: Timing
) -> SizeResult:
    """Start one size's stack, wait until every sync was read, run the trials and time each."""
    stack = Stack(syncs, workdir, seed=syncs, timing=timing)
    rng = random.Random(syncs)
    chosen = rng.sample(range(1, syncs + 1), trials + held_trials)
    plan = [Trial(sync_id, held=k >= trials) for k, sync_id in enumerate(chosen)]
    with stack.activity.lock:
        stack.activity.held.update(chosen)
    for trial in plan:
        if trial.held:
            stack.workspace.hold_listing(trial.sync_id)
    started = time.monotonic()
    with stack.running():
        poll(
            lambda: bool(stack.query(f"count(census_sync_last_run_status) >= {syncs}")),
            timeout=3600,
            what=f"a run status for each of the {syncs} syncs in Prometheus",
        )
        warmup = time.monotonic() - started
        requests_before, measured_from = stack.simulator.count("."), time.monotonic()
        expr = failed_alert_expression()
        for trial in plan:
            trial.failed_at = time.time()
            stack.workspace.add_run(
                trial.sync_id,
                "failed",
                created_at=trial.failed_at - 30.0,
                duration=30.0,
                error_code="BENCHMARK_FAILURE",
            )
            time.sleep(timing.ttl_seconds / max(1, trials))  # spread over one refresh cycle
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(trial.selected_after is None for trial in plan):
            now, selected = time.time(), stack.selected(expr)
            for trial in plan:
                if trial.selected_after is None and trial.sync_id in selected:
                    trial.selected_after = now - trial.failed_at
            time.sleep(1.0)
        rate = (stack.simulator.count(".") - requests_before) / (time.monotonic() - measured_from)
    return SizeResult(syncs, warmup, rate, plan)


def describe(values: list[float | None]) -> str:
    seen = sorted(value for value in values if value is not None)
    missed = len(values) - len(seen)
    text = ", ".join(f"{value:.0f}" for value in seen) or "none"
    return text + (f" ({missed} not selected within the timeout)" if missed else "")


def current_commit() -> str:
    """The checkout's commit, read when the run starts (the code the exporter processes run)."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=REPO
    ).stdout.strip()


def report(results: list[SizeResult], timeout: float, timing: Timing, commit: str = "") -> str:
    """The Markdown table of one run."""
    lines = [
        "# Detection benchmark",
        "",
        f"`benchmarks/detection.py`, commit {commit or 'unknown'}, {time.strftime('%Y-%m-%d')}, Python "
        f"{platform.python_version()} on {platform.machine()} ({os.cpu_count()} cores). Default budget "
        f"({BUDGET_PER_SECOND} requests/s), TTL {timing.ttl_seconds:g} s, "
        f"scrape every {timing.scrape_seconds:g} s; "
        f"target {timing.target_seconds:.0f} s (2 x TTL + scrape interval); "
        f"trials time out after {timeout:.0f} s.",
        "",
        "| Syncs | Listing pages | Sync reads a round | Rotation bound (rounds) | API requests/s | "
        "Listing changes: seconds to selected | Max | Listing unchanged: seconds to selected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        pages = -(-result.syncs // 100)
        allowance = round_allowance(int(BUDGET_PER_SECOND * PLANNED_SHARE * timing.ttl_seconds), 1, pages)
        changed = result.seconds(held=False)
        worst = max((value for value in changed if value is not None), default=None)
        lines.append(
            f"| {result.syncs:,} | {pages} | {allowance} | {rounds_between_reads(result.syncs, allowance)} | "
            f"{result.requests_per_second:.1f} | {describe(changed)} | "
            f"{'missed' if None in changed or worst is None else f'{worst:.0f}'} | "
            f"{describe(result.seconds(held=True))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, nargs="+", default=[3000, 5000])
    parser.add_argument("--trials", type=int, default=6, help="listing-change trials per size")
    parser.add_argument("--held-trials", type=int, default=3, help="listing-unchanged trials per size")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a trial may take")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument("--ttl", type=float, default=Timing().ttl_seconds, help="the exporter's TTL")
    parser.add_argument("--scrape-interval", type=float, default=Timing().scrape_seconds)
    args = parser.parse_args(argv)
    timing = Timing(args.ttl, args.scrape_interval)
    commit = current_commit()
    results: dict[int, SizeResult] = {}
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="census-detection-") as scratch:

        def one(syncs: int) -> None:
            workdir = Path(scratch) / str(syncs)
            workdir.mkdir()
            try:
                results[syncs] = run_size(syncs, args.trials, args.held_trials, workdir, args.timeout, timing)
            except Exception as error:  # noqa: BLE001 - reported with the size, the other sizes go on
                errors.append(f"{syncs} syncs: {error}")

        threads = [threading.Thread(target=one, args=(syncs,)) for syncs in args.syncs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    text = report([results[syncs] for syncs in args.syncs], args.timeout, timing, commit)
    print(text)
    if args.output:
        args.output.write_text(text)
    missed = [
        result.syncs
        for result in results.values()
        for value in result.seconds(held=False)
        if value is None or value > timing.target_seconds
    ]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
