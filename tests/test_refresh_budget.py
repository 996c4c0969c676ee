"""The request budget over real HTTP: never more than B requests in any second at the simulator (retries and
429s included), scrapes that never fail while it is exhausted, syncs read by priority with a bound on how
late any sync is read, when each sync was last read, and a first refresh that publishes syncs as they are
read."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from census_exporter.census.client import CensusClient
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.demo.server import Fault
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.refresh.schedule import round_allowance, rounds_between_reads
from tests.conftest import TEST_TOKEN, HarnessFactory, wait_for

SCRAPE_TIMEOUT = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
RUNS = r"^/api/v1/syncs/(\d+)/sync_runs$"


def most_in_one_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any window [t, t + 1 s)."""
    arrivals = sorted(arrivals)
    most, first = 0, 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.slow  # 40 requests at 5 per second, 429s and Retry-After included: 11-17 s
@pytest.mark.serial  # counts requests per wall-clock second at the simulator
def test_the_simulator_never_sees_more_than_the_budget_in_any_second_429s_and_retries_included(
    harness_factory: HarnessFactory,
) -> None:
    budget = 5
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 13):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    harness = harness_factory(workspace, max_requests_per_second=budget, cache_ttl=1.0, start=True)
    simulator = harness.simulator
    simulator.inject(Fault(r"/syncs/3/sync_runs", status=429, headers=(("Retry-After", "1"),), times=1))
    simulator.inject(Fault(r"/syncs/\d+/sync_runs", status=429, headers=(("Retry-After", "0"),), times=4))
    simulator.inject(Fault(r"/syncs/\d+/sync_runs", status=503, times=4))

    def busy_long_enough() -> bool:
        response = harness.get("/metrics", **SCRAPE_TIMEOUT)
        assert response.status_code == 200, "a scrape failed while the budget was exhausted"
        return len(simulator.request_log) >= 40

    wait_for(busy_long_enough, timeout=60, interval=0.05, what="40 requests at the simulator")
    log = list(simulator.request_log)
    assert most_in_one_second([at for at, _ in log]) <= budget
    assert simulator.faults and all(fault.times == 0 for fault in simulator.faults), "every fault was met"
    # The 429's Retry-After applies on top of the budget: its retry came at least 1 s later.
    sync_3 = [at for at, path in log if path == "/api/v1/syncs/3/sync_runs"]
    assert len(sync_3) >= 2 and sync_3[1] - sync_3[0] >= 0.9
    scrape = harness.scrape(**SCRAPE_TIMEOUT)
    assert scrape.value("census_api_budget_requests_per_second") == budget
    granted = scrape.value("census_api_budget_granted_total")
    assert granted is not None and granted >= 40
    waited = scrape.value("census_api_budget_waited_total")
    assert waited is not None and waited > 0


@pytest.fixture
def simulated() -> Iterator[tuple[SimulatedWorkspace, SimulatorServer, CensusClient]]:
    workspace = SimulatedWorkspace()
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    try:
        yield workspace, simulator, client
    finally:
        client.close()
        simulator.close()


def runs_read(simulator: SimulatorServer, since: int) -> list[int]:
    """The syncs whose runs were read, in the order their requests arrived, from log entry ``since`` on."""
    return [
        int(path.split("/")[4])
        for _, path in list(simulator.request_log)[since:]
        if path.endswith("/sync_runs")
    ]


def test_syncs_with_a_running_or_failed_run_are_read_first_and_every_sync_within_the_bound(
    simulated: tuple[SimulatedWorkspace, SimulatorServer, CensusClient],
) -> None:
    workspace, simulator, client = simulated
    syncs = 20
    for sync_id in range(1, syncs + 1):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id, "completed")
    workspace.add_run(17, "working")
    workspace.add_run(19, "failed")
    # A token every 0.5 s: the first refresh plans on 80 % of its 30 s deadline (48 requests, enough for
    # 20 syncs and 3 listings), later ones on 80 % of the 10 s TTL (16 requests), split three ways.
    share = [1]
    refresher = Refresher(
        client,
        RefreshSettings(
            cache_ttl_seconds=10, refresh_timeout_seconds=30, concurrency=1, request_interval_seconds=0.5
        ),
        workspaces=lambda: share[0],
    )
    try:
        first = refresher.trigger().result(timeout=30)
        assert first.up and all(state.ledger is not None for state in first.syncs.values())
        share[0] = 3  # two more workspaces joined
        allowance = round_allowance(16, 3, listing_requests=1)  # the sync list; connections are cached
        assert allowance == 4
        start = len(simulator.request_log)
        second = refresher.trigger().result(timeout=30)
        order = runs_read(simulator, start)
        assert order[:2] == [17, 19], order  # the working run, then the failed one
        assert len(set(order)) == allowance
        unread = [sync_id for sync_id in range(1, syncs + 1) if sync_id not in order]
        for sync_id in unread:  # the others kept their previous state, ledger included
            assert second.syncs[sync_id].ledger is first.syncs[sync_id].ledger
        bound = rounds_between_reads(syncs, allowance)
        seen: set[int] = set(order)
        for _ in range(bound - 1):
            start = len(simulator.request_log)
            assert refresher.trigger().result(timeout=30).up
            seen.update(runs_read(simulator, start))
        assert seen == set(range(1, syncs + 1)), (
            f"not read within {bound} rounds: {set(range(1, syncs + 1)) - seen}"
        )
    finally:
        refresher.close()


def test_the_data_timestamp_is_absent_before_the_first_read_and_stays_put_while_a_sync_is_not_read(
    harness_factory: HarnessFactory,
) -> None:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 6):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    # The first refresh plans on its deadline and reads all five; later ones, at a TTL of 0, have budget
    # for one sync read each (and each scrape refreshes once).
    harness = harness_factory(workspace, max_requests_per_second=50)
    harness.refresh()
    before = harness.scrape().all("census_sync_data_timestamp_seconds")
    assert len(before) == 5
    workspace.add_sync(6, label="new one")
    workspace.add_sync(7, label="new two")
    scrape = harness.scrape()
    after = scrape.all("census_sync_data_timestamp_seconds")
    assert len(scrape.all("census_sync_info")) == 7, "every listed sync appears, read or not"
    assert scrape.all("census_sync_data_timestamp_seconds", sync_id="6"), "never read: read first"
    assert not scrape.all("census_sync_data_timestamp_seconds", sync_id="7"), "absent before the first read"
    assert {labels: after[labels] for labels in before} == before, "the others kept their read time"
    assert all(time.time() > stamp for stamp in after.values())


def test_the_first_refresh_publishes_syncs_as_they_are_read(
    simulated: tuple[SimulatedWorkspace, SimulatorServer, CensusClient],
) -> None:
    workspace, simulator, client = simulated
    for sync_id in range(1, 21):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    simulator.latency_seconds = 0.15  # 20 syncs one at a time: the first refresh takes about 3 s
    refresher = Refresher(client, RefreshSettings(cache_ttl_seconds=0, concurrency=1))
    try:
        running = refresher.trigger()

        def partly_read() -> object:
            snapshot = refresher.snapshot
            read = [state for state in snapshot.syncs.values() if state.ledger is not None]
            return not snapshot.refreshed and 0 < len(read) < 20 and snapshot

        partial = wait_for(partly_read, what="a partial snapshot while the first refresh runs")
        assert len(partial.syncs) == 20, "every listed sync appears, read or not"
        assert not refresher.ready and refresher.is_stale(), "scrapes keep waiting on the one running refresh"
        assert refresher.trigger() is running, "single flight holds"
        final = running.result(timeout=30)
        assert final.up and final.refreshed
        for sync_id, state in partial.syncs.items():
            if state.ledger is not None:  # the same baseline, so nothing is counted twice
                assert final.syncs[sync_id].ledger is state.ledger
    finally:
        refresher.close()


def test_a_first_refresh_the_budget_cannot_cover_says_how_many_syncs_it_read(
    simulated: tuple[SimulatedWorkspace, SimulatorServer, CensusClient], caplog: pytest.LogCaptureFixture
) -> None:
    """Not "first refresh: 4 syncs" for a workspace of 20: the others are read in later refreshes."""
    workspace, _, client = simulated
    for sync_id in range(1, 21):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id, "completed")
    refresher = Refresher(
        client,
        RefreshSettings(
            cache_ttl_seconds=10, refresh_timeout_seconds=4, concurrency=1, request_interval_seconds=0.5
        ),
    )
    try:
        with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
            first = refresher.trigger().result(timeout=30)
    finally:
        refresher.close()
    read = sum(state.ledger is not None for state in first.syncs.values())
    assert 0 < read < 20
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("first refresh")]
    assert lines == [
        f"first refresh: {read} of 20 syncs read (the others in later refreshes), 0 whose newest run failed"
    ]
