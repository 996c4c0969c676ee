"""Scrape cost with and without the per-snapshot rendering cache, as ratios taken in one run.

    .venv/bin/python benchmarks/bench_scrape.py [--syncs 1000] [--rounds 5]

Starts the Census API simulator with N demo syncs and an exporter on loopback, then, per round: forces a
refresh (a new snapshot), times the first scrape after it ("cold": renders and compresses every Census
family) and the median of the following scrapes ("warm": cached Census part, fresh self-metrics). Scrapes go
over real HTTP with Accept-Encoding: gzip, as Prometheus sends them. Absolute times depend on the machine;
the ratio is what to compare between versions.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import httpx

from census_exporter.config import Config, TokenSource
from census_exporter.demo import DEMO_TOKEN, DemoActivity, SimulatedWorkspace, SimulatorServer
from census_exporter.exporter import Exporter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm-scrapes", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the demo's failed runs would flood the output

    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=1, syncs=args.syncs)
    simulator = SimulatorServer(workspace, token=DEMO_TOKEN).start()
    exporter = Exporter(
        Config(
            api_url=simulator.url,
            token=TokenSource(value=DEMO_TOKEN),
            listen_host="127.0.0.1",
            listen_port=0,
            cache_ttl_seconds=3600,
            concurrency=8,
        )
    )
    exporter.http.start()
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    client = httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=60)

    def scrape() -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed, len(response.content)

    refreshes, colds, warms = [], [], []
    size = 0
    try:
        for _ in range(args.rounds):
            started = time.perf_counter()
            exporter.refresher.trigger().result()
            refreshes.append(time.perf_counter() - started)
            cold, size = scrape()
            colds.append(cold)
            warms.append(statistics.median(scrape()[0] for _ in range(args.warm_scrapes)))
    finally:
        client.close()
        exporter.close()
        simulator.close()

    cold, warm, refresh = statistics.median(colds), statistics.median(warms), statistics.median(refreshes)
    print(f"syncs={args.syncs} rounds={args.rounds} exposition={size / 1e6:.1f} MB uncompressed")
    per_sync = refresh / args.syncs * 1e3
    print(f"  refresh (whole workspace)   median {refresh * 1000:8.1f} ms  ({per_sync:.2f} ms/sync", end="")
    print(", simulator included)")
    print(f"  cold scrape (new snapshot)  median {cold * 1000:8.1f} ms")
    print(f"  warm scrape (cached)        median {warm * 1000:8.1f} ms")
    print(f"  warm / cold = {warm / cold:.3f}   (cold / warm = {cold / warm:.1f}x)")


if __name__ == "__main__":
    main()
