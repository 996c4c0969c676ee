"""A sync inventing a new error code per run, over real HTTP against the simulator (issue 17).

Each distinct ``error_code`` label value is a series of its own (``census_sync_last_run_info``,
``census_sync_last_finished_run_failed``). At most ``MAX_ERROR_CODES_PER_HOUR`` distinct codes per sync reach
the exposition within an hour; a further new one shows as ``other`` and is logged with its real value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from census_exporter.census._requests import RetryPolicy
from census_exporter.census.client import CensusClient
from census_exporter.collector import CensusCollector
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.refresh.one_sync import ERROR_CODE_WINDOW_SECONDS, MAX_ERROR_CODES_PER_HOUR
from census_exporter.snapshot import FleetView
from tests.conftest import TEST_TOKEN, Harness, parse_scrape

SYNC = 7


def shown_codes(text: str, family: str) -> set[str]:
    found = parse_scrape(text).all(family, sync_id=str(SYNC))
    return {dict(labels)["error_code"] for labels in found}


def test_a_new_error_code_per_run_is_bounded_per_sync_and_the_real_code_is_logged(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_sync(8, label="Calm")
    workspace.add_run(SYNC, "completed")
    harness = harness_factory(workspace)
    harness.refresh()
    seen_info: set[str] = set()
    seen_streak: set[str] = set()
    with caplog.at_level(logging.WARNING, logger="census_exporter"):
        for k in range(3 * MAX_ERROR_CODES_PER_HOUR):
            # A streak that ends every time, so each failure would start a streak with a new code.
            workspace.add_run(SYNC, "failed", error_code=f"E_{k:04d}")
            harness.refresh()
            text = harness.get("/metrics").text
            seen_info |= shown_codes(text, "census_sync_last_run_info")
            seen_streak |= shown_codes(text, "census_sync_last_finished_run_failed")
            workspace.add_run(SYNC, "completed")
            harness.refresh()
            text = harness.get("/metrics").text
            seen_info |= shown_codes(text, "census_sync_last_run_info")
            seen_streak |= shown_codes(text, "census_sync_last_finished_run_failed")
    first = {f"E_{k:04d}" for k in range(MAX_ERROR_CODES_PER_HOUR)}
    assert seen_info == first | {"", "other"}
    assert seen_streak == first | {"", "other"}
    # Every failed run's real code is logged; the bound itself is said once for the sync.
    messages = [record.getMessage() for record in caplog.records]
    for k in range(3 * MAX_ERROR_CODES_PER_HOUR):
        assert sum(f"error_code=E_{k:04d}" in m for m in messages) == 1, k
    capped = [m for m in messages if "distinct error codes within an hour" in m]
    assert len(capped) == 1 and f"E_{MAX_ERROR_CODES_PER_HOUR:04d}" in capped[0]
    # An admitted code keeps being shown as itself.
    workspace.add_run(SYNC, "failed", error_code="E_0001")
    harness.refresh()
    assert shown_codes(harness.get("/metrics").text, "census_sync_last_run_info") == {"E_0001"}
    # Counting is untouched by the bound: every failure after the baseline is counted.
    scrape = harness.scrape()
    assert scrape.value("census_sync_runs_total", sync_id=str(SYNC), status="failed") == 3 * 5 + 1


def test_codes_not_shown_for_an_hour_free_their_place() -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(SYNC, label="Contacts")
    workspace.add_run(SYNC, "completed")
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN, retry=RetryPolicy(max_attempts=1))
    now = [workspace.clock()]
    refresher = Refresher(
        client, RefreshSettings(cache_ttl_seconds=0, refresh_timeout_seconds=20), wall_clock=lambda: now[0]
    )
    collector = CensusCollector(0)
    try:

        def shown_after_failure(code: str) -> set[str]:
            workspace.add_run(SYNC, "failed", error_code=code)
            snapshot = refresher.trigger().result(timeout=30)
            text = collector.render(FleetView((snapshot,))).text().decode()
            return shown_codes(text, "census_sync_last_run_info")

        refresher.trigger().result(timeout=30)
        for k in range(MAX_ERROR_CODES_PER_HOUR):
            assert shown_after_failure(f"A{k}") == {f"A{k}"}
        assert shown_after_failure("B0") == {"other"}
        now[0] += ERROR_CODE_WINDOW_SECONDS / 2
        assert shown_after_failure("A0") == {"A0"}  # shown again: its place is renewed
        now[0] += ERROR_CODE_WINDOW_SECONDS / 2 + 1
        # A1..A4 were last shown over an hour ago; A0 half an hour ago: four places are free.
        assert [shown_after_failure(f"C{k}") for k in range(5)] == [{"C0"}, {"C1"}, {"C2"}, {"C3"}, {"other"}]
    finally:
        refresher.close()
        client.close()
        simulator.close()
