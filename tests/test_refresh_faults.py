"""A refresh that passes its deadline is abandoned: census_up turns 0 at once, the next refresh may start,
and the abandoned refresh's late result never replaces a newer snapshot.

The deadline is the refresher's own, independent of the client's timeouts, so the stall here is a call
that does not return (as a request dripping bytes forever would) in front of the real client and simulator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from census_exporter.census.client import CensusClient
from census_exporter.census.listing import Listing, RunsPage
from census_exporter.config import TokenSource
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.refresh import MAX_ABANDONED_REFRESHES, Refresher, RefreshSettings
from tests.conftest import TEST_TOKEN, HarnessFactory, wait_for

DEADLINE_SECONDS = 2.0


class StallingAPI:
    """The real client, except that sync 1's runs hang while ``stalled`` is set."""

    def __init__(self, client: CensusClient) -> None:
        self.client = client
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.stalls = 0

    def list_syncs(self, deadline: float) -> Listing:
        return self.client.list_syncs(deadline)

    def list_sources(self, deadline: float) -> Listing:
        return self.client.list_sources(deadline)

    def list_destinations(self, deadline: float) -> Listing:
        return self.client.list_destinations(deadline)

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        if sync_id == 1 and self.stalled.is_set():
            self.stalled.clear()  # only the first refresh meets the stall
            self.stalls += 1
            self.release.wait(timeout=30)
        return self.client.list_sync_runs(sync_id, page, per_page, deadline)

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        return self.client.get_sync_run(run_id, deadline)


@pytest.fixture
def stalling() -> Iterator[tuple[SimulatedWorkspace, StallingAPI, Refresher]]:
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    api = StallingAPI(client)
    refresher = Refresher(
        api, RefreshSettings(cache_ttl_seconds=0, refresh_timeout_seconds=DEADLINE_SECONDS, concurrency=2)
    )
    try:
        yield workspace, api, refresher
    finally:
        api.release.set()
        refresher.close()
        client.close()
        simulator.close()


def test_a_stalled_refresh_is_abandoned_at_its_deadline_and_its_late_result_is_discarded(
    stalling: tuple[SimulatedWorkspace, StallingAPI, Refresher], caplog: pytest.LogCaptureFixture
) -> None:
    workspace, api, refresher = stalling
    good = refresher.trigger().result(timeout=10)
    assert good.up and good.last_success_timestamp is not None

    api.stalled.set()
    with caplog.at_level(logging.DEBUG, logger="census_exporter.refresh"):
        abandoned = refresher.trigger().result(timeout=DEADLINE_SECONDS + 10)
        assert api.stalls == 1
        assert not abandoned.up
        assert abandoned.last_error == "refresh did not finish within 2s"
        # Data age stays visible: census_last_refresh_timestamp_seconds is the last error-free refresh.
        assert abandoned.last_success_timestamp == good.last_success_timestamp
        assert abandoned.syncs == good.syncs  # the previous data is still served
        warnings = [r for r in caplog.records if "did not finish within" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

        # The abandoned refresh still waits, yet the next one starts and counts a new run.
        workspace.add_run(2)
        recovered = refresher.trigger().result(timeout=10)
        assert recovered.up and recovered.last_error is None
        ledger = recovered.syncs[2].ledger
        assert ledger is not None and ledger.counters.runs_by_status["completed"] == 1

        api.release.set()
        wait_for(
            lambda: "discarded the late result of abandoned refresh" in caplog.text,
            what="the abandoned refresh to end",
        )
    assert refresher.snapshot is recovered
    assert len([r for r in caplog.records if "did not finish within" in r.getMessage()]) == 1
    # Its ledgers were discarded too: the next refresh counts nothing twice.
    again = refresher.trigger().result(timeout=10)
    ledger = again.syncs[2].ledger
    assert again.up and ledger is not None and ledger.counters.runs_by_status["completed"] == 1


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_dead_api_cannot_pile_up_abandoned_refreshes(
    stalling: tuple[SimulatedWorkspace, StallingAPI, Refresher], caplog: pytest.LogCaptureFixture
) -> None:
    _, api, refresher = stalling
    refresher.trigger().result(timeout=10)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(7):
            api.stalled.set()
            refresher.trigger().result(timeout=DEADLINE_SECONDS + 10)
    # Beyond the bound, a refresh does not start: the current (down) snapshot comes back at once.
    assert api.stalls == MAX_ABANDONED_REFRESHES
    assert not refresher.snapshot.up
    # ... and that is said once, not on every scrape that finds no refresh can start.
    blocked = [r for r in caplog.records if "no new refresh starts" in r.getMessage()]
    assert len(blocked) == 1 and str(MAX_ABANDONED_REFRESHES) in blocked[0].getMessage()


@pytest.mark.parametrize("emptied", ["", "  \n\t\n"])
def test_an_emptied_token_file_is_named_and_nothing_is_sent(
    harness_factory: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, emptied: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TEST_TOKEN + "\n")
    harness = harness_factory(token_source=TokenSource(path=str(token_file)))
    harness.refresh()
    assert harness.scrape().value("census_up", workspace="default") == 1
    sent = sum(harness.simulator.requests.values())
    with token_file.open("r+") as handle:  # emptied in place, as a rotation caught half-way leaves it
        handle.truncate(0)
        handle.write(emptied)
    with caplog.at_level(logging.INFO, logger="census_exporter"):
        harness.refresh()
    assert harness.scrape().value("census_up", workspace="default") == 0
    assert sum(harness.simulator.requests.values()) == sent  # no request went out, with or without a token
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert f"token file {token_file} is empty" in lines[0]
    assert "LocalProtocolError" not in caplog.text and "attempts" not in lines[0]
    token_file.write_text(TEST_TOKEN)
    harness.refresh()
    assert harness.scrape().value("census_up", workspace="default") == 1
