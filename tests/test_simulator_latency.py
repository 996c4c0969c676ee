"""The simulator adds the latency it is configured with and no more, as a real API front end would.

A benchmark against the simulator measures the exporter only if a request costs the configured delay. On a
keep-alive connection, Nagle's algorithm held the body (a second small write) until the client's delayed
ACK of the headers, adding ~40 ms on Linux to every request after the first.
"""

from __future__ import annotations

import http.client
import statistics
import time

from census_exporter.demo import DEMO_TOKEN, start_demo

CONFIGURED_LATENCY_SECONDS = 0.05
REQUESTS = 20


def test_requests_on_one_keep_alive_connection_take_the_configured_latency() -> None:
    simulator = start_demo(syncs=5, latency_seconds=CONFIGURED_LATENCY_SECONDS)
    connection = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=10)
    try:
        latencies = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            connection.request(
                "GET", "/api/v1/syncs?per_page=1", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}
            )
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200
            assert not response.will_close, "the simulator keeps the connection open (HTTP/1.1)"
        median = statistics.median(latencies)
        assert abs(median - CONFIGURED_LATENCY_SECONDS) <= 0.1 * CONFIGURED_LATENCY_SECONDS, (
            f"median latency {median * 1000:.1f} ms on one keep-alive connection, "
            f"configured {CONFIGURED_LATENCY_SECONDS * 1000:.0f} ms"
        )
    finally:
        connection.close()
        simulator.close()
