"""Issue 20's benchmark: API requests per hour with webhooks against polling, and event -> /metrics latency.

    .venv/bin/python benchmarks/webhooks.py [--syncs 1000] [--hour 120] [--events 50]

One process, one run, real HTTP on loopback throughout (the simulated Census API, the exporter's two
listeners, the simulator's signed webhooks). Time is compressed: ``--hour`` seconds stand for one hour, so
the freshness target of 60 s (the default cache TTL) is ``hour / 60`` and every sync runs once an "hour".

1. **Polling** (no webhooks): an exporter reads every sync each round, which is what a freshness target of
   one TTL costs. Its requests per round are measured over three full refreshes after the first; polling
   costs that times 60 rounds an hour.
2. **Webhooks**: an exporter with the receiver, ``--census.webhook-reconcile-interval`` one "hour", the same
   TTL, scraped twice a TTL; the simulator's runs start and finish (each sync once an "hour", 8 % failing)
   and it posts signed events. Once the exporter reports ``census_webhook_reconciling 1``, the simulator's
   requests are counted over one "hour" (plus two TTLs): listing every TTL, the reads events asked for, and
   one reconcile read of every sync.
3. **Latency**: ``--events`` times, a run of an idle sync fails in the simulator (which posts
   ``sync.completed`` and ``sync.failed``), and /metrics is read every 10 ms until the sync's failed-run
   counter moved: p50, p99 and p100 of that time, from the moment the run failed.

Writes a Markdown table to stdout; exit 1 if webhooks cost more than a tenth of polling or p100 > 2 s.
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "exporter"))

from census_exporter.config import Config, TokenSource  # noqa: E402
from census_exporter.demo import SimulatedWorkspace, SimulatorServer  # noqa: E402
from census_exporter.demo.webhooks import WebhookSender  # noqa: E402
from census_exporter.exporter import Exporter  # noqa: E402

TOKEN = "secret-token:bench"
SECRET = "bench-webhook-secret"


class Activity:
    """Each sync runs once an "hour" at its own offset; a run lasts 5 to 30 "seconds"; 8 % fail."""

    def __init__(self, workspace: SimulatedWorkspace, syncs: int, hour: float, seed: int = 20) -> None:
        self.workspace = workspace
        self.hour = hour
        rng = random.Random(seed)
        self.offsets = {sync_id: rng.uniform(0, hour) for sync_id in range(1, syncs + 1)}
        self.rng = rng
        self.started = time.monotonic()
        self.working: dict[int, tuple[int, float, str]] = {}
        self.next_run = dict(self.offsets)
        self.stop = threading.Event()
        self.held: set[int] = set()  # syncs the latency phase drives by hand
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.05):
            now = time.monotonic() - self.started
            with self.lock:
                for sync_id, (run_id, end, status) in list(self.working.items()):
                    if end <= now:
                        del self.working[sync_id]
                        self.workspace.finish_run(run_id, status)
                for sync_id, due in self.next_run.items():
                    if due <= now and sync_id not in self.working and sync_id not in self.held:
                        self.next_run[sync_id] = due + self.hour
                        run = self.workspace.add_run(sync_id, "working", records=None)
                        length = self.rng.uniform(5, 30) * self.hour / 3600
                        status = "failed" if self.rng.random() < 0.08 else "completed"
                        self.working[sync_id] = (int(run["id"]), now + length, status)

    def idle_sync(self) -> int:
        with self.lock:
            for sync_id in self.next_run:
                if sync_id not in self.working and sync_id not in self.held:
                    self.held.add(sync_id)
                    return sync_id
        raise RuntimeError("no idle sync")


def build_workspace(syncs: int) -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, syncs + 1):
        workspace.add_sync(sync_id, label=f"Sync {sync_id}", schedule="hourly")
        workspace.add_run(sync_id, "completed")
    return workspace


def exporter(simulator: SimulatorServer, ttl: float, **extra: Any) -> Exporter:
    config = Config(
        api_url=simulator.url,
        token=TokenSource(value=TOKEN),
        cache_ttl_seconds=ttl,
        listen_host="127.0.0.1",
        listen_port=0,
        max_requests_per_second=0.0,
        refresh_timeout_seconds=60.0,
        concurrency=16,
        **extra,
    )
    started = Exporter(config)
    started.http.start()
    if started.webhooks is not None:
        started.webhooks.start()
    return started


def polling_cost(workspace: SimulatedWorkspace, ttl: float) -> float:
    simulator = SimulatorServer(workspace, token=TOKEN).start()
    polling = exporter(simulator, ttl)
    try:
        polling.refresher.trigger().result(timeout=120)  # the baseline
        before = simulator.count(".")
        for _ in range(3):
            polling.refresher.trigger().result(timeout=120)
        return (simulator.count(".") - before) / 3
    finally:
        polling.close()
        simulator.close()


def gauge(text: str, name: str) -> float | None:
    found = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def taken_deliveries(text: str) -> float:
    """Deliveries the receiver answered 2xx (accepted, unknown sync, duplicate): what the sender counts."""
    return sum(
        float(value)
        for value in re.findall(
            r'^census_webhook_requests_total{result="(?:accepted|unknown_sync|duplicate)"[^}]*} (\S+)$',
            text,
            re.MULTILINE,
        )
    )


def failed_runs(text: str, sync_id: int) -> float:
    found = re.search(
        rf'^census_sync_runs_total{{status="failed",sync_id="{sync_id}",workspace="default"}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--hour", type=float, default=120.0, help="seconds standing for one hour")
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    ttl = args.hour / 60

    per_round = polling_cost(build_workspace(args.syncs), ttl)
    polling_per_hour = per_round * 60

    workspace = build_workspace(args.syncs)
    simulator = SimulatorServer(workspace, token=TOKEN).start()
    hooked = exporter(
        simulator,
        ttl,
        webhook_listen=("127.0.0.1", 0),
        webhook_secrets=(TokenSource(value=SECRET),),
        webhook_reconcile_interval_seconds=args.hour,
        webhook_max_requests_per_second=10_000.0,
    )
    assert hooked.webhooks is not None
    sender = WebhookSender(f"http://127.0.0.1:{hooked.webhooks.port}/webhooks/census/default", SECRET).start()
    workspace.run_listeners.append(sender)
    client = httpx.Client(timeout=30)
    metrics_url = f"http://127.0.0.1:{hooked.port}/metrics"
    stop_scraping = threading.Event()

    def scrape_loop() -> None:
        while not stop_scraping.wait(ttl / 2):
            client.get(metrics_url)

    activity = Activity(workspace, args.syncs, args.hour)
    try:
        hooked.refresher.trigger().result(timeout=120)
        activity.start()
        scraper = threading.Thread(target=scrape_loop, daemon=True)
        scraper.start()
        deadline = time.monotonic() + 60
        while gauge(client.get(metrics_url).text, "census_webhook_reconciling") != 1.0:
            if time.monotonic() > deadline:
                raise RuntimeError("webhooks never turned healthy")
            time.sleep(0.2)
        window = args.hour + 2 * ttl
        before, started = simulator.count("."), time.monotonic()
        time.sleep(window)
        webhook_requests = simulator.count(".") - before
        webhook_per_hour = webhook_requests * args.hour / (time.monotonic() - started)
        unannounced = gauge(client.get(metrics_url).text, "census_webhook_unannounced_runs_total")
        latencies = []
        for _ in range(args.events):
            sync_id = activity.idle_sync()
            counted = failed_runs(client.get(metrics_url).text, sync_id)
            moment = time.monotonic()
            workspace.add_run(sync_id, "failed", error_code="DESTINATION_RATE_LIMITED")
            while failed_runs(client.get(metrics_url).text, sync_id) <= counted:
                if time.monotonic() - moment > 30:
                    raise RuntimeError(f"sync {sync_id}: the failure never reached /metrics")
                time.sleep(0.01)
            latencies.append(time.monotonic() - moment)
        # The sender's and the receiver's counts, both once the last delivery is answered.
        activity.stop.set()
        sender.close()
        taken = taken_deliveries(client.get(metrics_url).text)
    finally:
        stop_scraping.set()
        activity.stop.set()
        sender.close()
        hooked.close()
        simulator.close()
        client.close()

    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    ratio = webhook_per_hour / polling_per_hour
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=REPO
    ).stdout.strip()
    print(
        f"Webhook benchmark at {commit}, {platform.python_version()}, {args.syncs} syncs, "
        f"1 h = {args.hour:g} s"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| polling: requests per round (every sync read once) | {per_round:.0f} |")
    print(f"| polling: requests per hour at a 60 s freshness target | {polling_per_hour:.0f} |")
    print(f"| webhooks: requests per hour (measured over one hour) | {webhook_per_hour:.0f} |")
    print(f"| webhooks / polling | {ratio:.3f} (1/{1 / ratio:.1f}) |")
    print(
        f"| webhook deliveries accepted / refused / dropped by the sender | "
        f"{sender.sent} / {sender.refused} / "
        f"{sender.dropped} |"
    )
    print(f"| deliveries answered 2xx (receiver's count) | {taken:.0f} |")
    print(f"| runs found by polling that no event announced | {unannounced} |")
    print(
        f"| event -> /metrics over {len(latencies)} failures: p50 / p99 / p100 | "
        f"{statistics.median(latencies) * 1000:.0f} ms / {p99 * 1000:.0f} ms / "
        f"{latencies[-1] * 1000:.0f} ms |"
    )
    return 0 if ratio <= 0.1 and latencies[-1] <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
