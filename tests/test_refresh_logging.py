"""What the refresher logs: one startup summary instead of a line per old failure, and each model problem
once per sync."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from census_exporter.census.client import CensusClient
from census_exporter.census.models.fields import Skipped
from census_exporter.census.models.runs import SyncRun, parse_sync_run
from census_exporter.demo import Fault, SimulatedWorkspace, SimulatorServer
from census_exporter.refresh import Refresher, RefreshSettings, one_sync
from tests.conftest import TEST_TOKEN, Harness

HarnessFactory = Callable[..., Harness]


def messages(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_the_first_refresh_sums_up_old_failures_in_one_line_and_new_ones_keep_their_own(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, 11):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id, "failed" if sync_id <= 7 else "completed", error_code="E")
    h = harness_factory(workspace)
    with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
        h.refresh()
        assert messages(caplog, "first refresh") == [
            "first refresh: 10 syncs, 7 whose newest run failed: s1, s2, s3, s4, s5…"
        ]
        assert messages(caplog, "sync run failed") == []

        workspace.add_run(9, "failed", run_id=500, error_code="E")
        h.refresh()
        h.refresh()
    failed = messages(caplog, "sync run failed")
    assert len(failed) == 1 and "run_id=500" in failed[0]
    assert len(messages(caplog, "first refresh")) == 1


def test_a_sync_first_seen_after_startup_does_not_repeat_the_summary(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="s1")
    workspace.add_run(1)
    h = harness_factory(workspace)
    with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
        h.refresh()
        assert messages(caplog, "first refresh") == ["first refresh: 1 syncs, 0 whose newest run failed"]
        workspace.add_sync(2, label="s2")
        workspace.add_run(2, "failed", run_id=700)
        h.refresh()
    assert len(messages(caplog, "first refresh")) == 1
    assert len(messages(caplog, "sync run failed")) == 1  # a new sync's failed newest run, as before


def test_model_problems_are_logged_once_per_sync_and_problem(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_problem(raw: object) -> SyncRun | Skipped:
        parsed = parse_sync_run(raw)
        problem = "records_processed " + "9" * 300 + " is out of range"
        return parsed if isinstance(parsed, Skipped) else replace(parsed, problems=(problem,))

    monkeypatch.setattr(one_sync, "parse_sync_run", with_problem)
    workspace = SimulatedWorkspace()
    for sync_id in (1, 2):
        workspace.add_sync(sync_id, label=f"s{sync_id}")
        workspace.add_run(sync_id)
        workspace.add_run(sync_id)
    h = harness_factory(workspace)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(3):
            workspace.add_run(1)
            h.refresh()
    lines = [r for r in caplog.records if "unusable field" in r.getMessage()]
    assert sorted(r.getMessage().split(":")[0] for r in lines) == ["sync 1", "sync 2"]
    assert all(r.levelno == logging.WARNING and len(r.getMessage()) < 300 for r in lines)
    assert h.exporter.refresher.snapshot.up


def test_a_token_that_cannot_be_read_is_reported_as_such_not_as_a_rejection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="s1")
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()

    def token_file_is_a_directory() -> str:
        raise IsADirectoryError(21, "Is a directory", "/run/secrets/census-token")

    client = CensusClient(simulator.url, token_file_is_a_directory)
    refresher = Refresher(client, RefreshSettings(cache_ttl_seconds=0))
    try:
        with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
            for _ in range(2):
                refresher.trigger().result(timeout=10)
    finally:
        refresher.close()
        client.close()
        simulator.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # Once; and the API was never asked, so it cannot have rejected anything.
    assert errors == ["no usable API token: [Errno 21] Is a directory: '/run/secrets/census-token'"]
    assert sum(simulator.requests.values()) == 0


def test_an_unexpected_refresh_failure_is_logged_once_per_type_until_a_refresh_succeeds(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="s1")
    workspace.add_run(1)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    client = CensusClient(simulator.url, lambda: TEST_TOKEN)
    refresher = Refresher(client, RefreshSettings(cache_ttl_seconds=0))
    built = refresher._build
    failure: list[Exception] = []

    def buggy(*args: object) -> object:
        if failure:
            raise failure[0]
        return built(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(refresher, "_build", buggy)
    try:
        with caplog.at_level(logging.INFO, logger="census_exporter.refresh"):
            failure[:] = [TypeError("'NoneType' object is not subscriptable")]
            for _ in range(3):
                assert not refresher.trigger().result(timeout=10).up
            failure[:] = [KeyError("data")]
            refresher.trigger().result(timeout=10)
            failure.clear()
            assert refresher.trigger().result(timeout=10).up
            failure[:] = [TypeError("again")]
            refresher.trigger().result(timeout=10)
    finally:
        refresher.close()
        client.close()
        simulator.close()
    lines = [r.getMessage() for r in caplog.records if "refresh failed unexpectedly" in r.getMessage()]
    assert lines == [
        "refresh failed unexpectedly: TypeError: 'NoneType' object is not subscriptable",
        "refresh failed unexpectedly: KeyError: 'data'",
        "refresh failed unexpectedly: TypeError: again",  # news again after a successful refresh
    ]


def test_a_failure_before_any_data_does_not_claim_to_serve_previous_data(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label="Orders")
    h = harness_factory(workspace)
    h.simulator.inject(Fault(pattern="/syncs$", status=503, times=-1))
    with caplog.at_level(logging.WARNING):
        h.refresh()
    assert messages(caplog, "Census API refresh incomplete, no data to serve yet: ")
    assert not messages(caplog, "Census API refresh incomplete, serving previous data")
    h.simulator.clear_faults()
    h.refresh()
    h.simulator.inject(Fault(pattern="/syncs$", status=503, times=-1))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        h.refresh()
    assert messages(caplog, "Census API refresh incomplete, serving previous data where needed: ")
