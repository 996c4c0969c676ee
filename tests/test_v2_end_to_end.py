"""The exporter speaking Census API V2 for one workspace, against SimulatedOrganization over real HTTP.

Every scenario runs with the simulator's V2 ids as strings ("52") and as integers: Census has not published
which it sends.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_exporter.census import _dialect, client
from census_exporter.cli.api_versions import log_api_version_notice
from census_exporter.cli.assembly import parse_config
from census_exporter.config import Config, Exposition, TokenSource
from census_exporter.demo import DEMO_TOKEN, Fault, SimulatedOrganization, reference_workspace, start_demo
from census_exporter.demo.organization import GROUP_PARAMETER, MISSING_GROUP_STATUS, base_url
from census_exporter.demo.workspace import SimulatedWorkspace
from census_exporter.exporter import Exporter
from tests.conftest import Harness, wait_for
from tests.stack import Process

PAT = "secret-token:activations-pat"
GROUP = "glad_otter"

V2Factory = Callable[..., Harness]


@pytest.fixture(params=["string", "int"])
def id_form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def v2_factory(id_form: str) -> Iterator[V2Factory]:
    """Build an exporter on V2 watching group GROUP of a one-workspace organization."""
    started: list[Harness] = []

    def build(workspace: SimulatedWorkspace | None = None, *, token: str = PAT, **config: Any) -> Harness:
        workspace = workspace or SimulatedWorkspace()
        organization = SimulatedOrganization(pat=PAT, id_form=id_form)  # type: ignore[arg-type]
        organization.add_workspace("marketing", group_id=GROUP, workspace=workspace)
        simulator = organization.serve()
        settings: dict[str, Any] = {
            "api_url": base_url(simulator, "v2"),
            "token": TokenSource(value=token),
            "api_version": "v2",
            "group_id": GROUP,
            "workspace": "marketing",
            "cache_ttl_seconds": 0.0,
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "refresh_timeout_seconds": 20.0,
            "exposition": Exposition.everything(),  # these tests check every per-sync series
            # No request budget: at a TTL of 0 these tests need every sync read on every refresh.
            "max_requests_per_second": 0.0,
        } | config
        exporter = Exporter(Config(**settings))
        exporter.http.start()
        harness = Harness(workspace, simulator, exporter, httpx.Client(timeout=30))
        started.append(harness)
        return harness

    yield build
    for harness in started:
        harness.http.close()
        harness.exporter.close()
        harness.simulator.close()


def test_the_newest_run_of_a_v2_sync_with_its_activation_name(v2_factory: V2Factory) -> None:
    h = v2_factory(reference_workspace())
    m = h.scrape()
    ids = {"workspace": "marketing", "sync_id": "52"}
    assert m.value("census_up", workspace="marketing") == 1
    assert m.value("census_syncs", workspace="marketing") == 1
    # The destination's name comes from /activations, keyed by the activation's word id.
    info = m.all("census_sync_info", **ids)
    assert [dict(labels)["destination"] for labels in info] == ["Salesforce"]
    assert [dict(labels)["source"] for labels in info] == ["Snowflake Production"]
    assert m.value("census_sync_last_run_id", **ids) == 94
    assert m.value("census_sync_last_run_status", **ids, status="completed") == 1
    assert m.value("census_sync_last_run_records_processed", **ids) == 1
    # Every template names the dialect; each list call carried the group (else the simulator answers 400).
    for endpoint in ("/v2/sources", "/v2/activations", "/v2/syncs", "/v2/syncs/{id}/sync_runs"):
        assert m.value("census_api_requests_total", endpoint=endpoint, code="200") == 1, endpoint
    assert not m.all("census_api_requests_total", endpoint="/syncs")
    assert not m.all("census_api_requests_total", code=str(MISSING_GROUP_STATUS))


def test_v2_runs_are_counted_exactly_once_across_refreshes(v2_factory: V2Factory) -> None:
    h = v2_factory(reference_workspace())
    h.scrape()
    h.workspace.add_run(52, "completed", run_id=95, records=50, records_failed=5, records_invalid=2)
    h.workspace.add_run(52, "failed", run_id=96, error_code="INVALID_CREDENTIALS")
    ids = {"sync_id": "52"}
    for _ in range(3):
        m = h.scrape()
        assert m.value("census_sync_runs_total", **ids, status="completed") == 1
        assert m.value("census_sync_runs_total", **ids, status="failed") == 1
        assert m.value("census_sync_records_processed_total", **ids) == 50
        assert m.value("census_sync_records_failed_total", **ids) == 5
    assert m.value("census_sync_last_run_status", **ids, status="failed") == 1


def test_a_pending_v2_run_that_scrolled_away_is_fetched_by_id_without_a_group(v2_factory: V2Factory) -> None:
    h = v2_factory(reference_workspace())
    h.workspace.add_run(52, "working", run_id=300)
    h.scrape()
    for _ in range(40):
        h.workspace.add_run(52, "completed")
    h.scrape()
    h.workspace.finish_run(300, "failed", records=0)
    m = h.scrape()
    assert h.simulator.count(r"^/api/v2/sync_runs/300$") == 1
    assert m.value("census_api_requests_total", endpoint="/v2/sync_runs/{id}", code="200") == 1
    assert m.value("census_sync_runs_total", sync_id="52", status="failed") == 1
    assert m.value("census_sync_runs_total", sync_id="52", status="completed") == 40


def test_deleted_v2_syncs_leave_the_output(v2_factory: V2Factory) -> None:
    workspace = reference_workspace()
    workspace.add_sync(60, label="Soon gone")
    workspace.add_sync(61, label="Runs endpoint 404s")
    workspace.add_run(60)
    workspace.add_run(61)
    h = v2_factory(workspace)
    assert h.scrape().value("census_syncs") == 3
    workspace.remove_sync(60)  # unlisted, and its runs answer 404: gone at once, no grace needed
    with workspace.lock:
        del workspace.runs[61]  # still listed, but its runs are gone
    m = h.scrape()
    assert m.value("census_syncs") == 2  # 61 is still listed: one 404 proves nothing, it keeps its data
    assert not [key for key in m.samples if ("sync_id", "60") in key[1]]
    assert m.all("census_sync_last_run_id", sync_id="61")
    assert m.value("census_up") == 0
    workspace.remove_sync(61)
    m = h.scrape()
    assert m.value("census_syncs") == 1  # unlisted and answering 404: gone
    assert not [key for key in m.samples if ("sync_id", "61") in key[1]]
    assert m.value("census_up") == 1


def test_a_wrong_pat_is_reported_once_and_never_leaks(
    v2_factory: V2Factory, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "secret-token:wrong-pat-still-secret"
    h = v2_factory(reference_workspace(), token=wrong)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            m = h.scrape()
    assert m.value("census_up") == 0
    assert m.value("census_api_requests_total", endpoint="/v2/sources", code="401") == 3
    lines = [r.getMessage() for r in caplog.records if "rejected the token" in r.getMessage()]
    assert lines == ["Census API rejected the token (401)"]
    assert wrong not in caplog.text and wrong not in m.text and PAT not in caplog.text


def test_v2_rate_limited_then_served(v2_factory: V2Factory) -> None:
    h = v2_factory(reference_workspace())
    h.simulator.inject(Fault(r"^/api/v2/syncs$", status=429, headers=(("Retry-After", "1"),), times=1))
    m = h.scrape()
    assert m.value("census_up") == 1
    assert m.value("census_api_requests_total", endpoint="/v2/syncs", code="429") == 1
    assert m.value("census_api_requests_total", endpoint="/v2/syncs", code="200") == 1


def test_an_unknown_field_a_missing_count_and_an_unexpected_status(v2_factory: V2Factory) -> None:
    h = v2_factory(reference_workspace())
    h.scrape()
    h.workspace.add_run(
        52,
        raw={
            "id": 97,
            "sync_id": 52,
            "status": "Exploded",
            "created_at": "2026-11-29T01:00:00Z",
            "completed_at": "2026-11-29T01:01:00Z",
            "source_record_count": 12,
            "group_id": GROUP,
            "a_field_v2_added": {"nested": [1, 2]},
        },
    )
    m = h.scrape()
    ids = {"sync_id": "52"}
    assert m.value("census_up") == 1
    statuses = {dict(k)["status"]: v for k, v in m.all("census_sync_last_run_status", **ids).items()}
    assert statuses == {"exploded": 1}
    assert m.value("census_sync_runs_total", **ids, status="exploded") == 1
    assert m.value("census_sync_last_run_source_records", **ids) == 12
    assert m.value("census_sync_last_run_records_processed", **ids) is None  # absent, not zero
    assert m.value("census_sync_records_processed_total", **ids) == 0
    assert "a_field_v2_added" not in m.text


def test_non_numeric_sync_and_run_ids_are_skipped_with_one_line_each(
    v2_factory: V2Factory, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = reference_workspace()
    workspace.add_sync(900, raw={"id": "wordy_sync", "label": "Word id", "paused": False})
    h = v2_factory(workspace)
    word_run = {"id": "wordy_run", "sync_id": 52, "status": "completed", "records_processed": 3}
    runs_body = {"status": "success", "data": [word_run], "pagination": {"next_page": None}}
    h.simulator.inject(
        Fault(r"^/api/v2/syncs/52/sync_runs$", status=200, body=json.dumps(runs_body).encode())
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            m = h.scrape()
    assert m.value("census_up") == 1
    assert m.value("census_syncs") == 1
    assert m.value("census_sync_last_run_id", sync_id="52") == 94  # the word-id run was never counted
    messages = [r.getMessage() for r in caplog.records]
    expected = [
        "sync id 'wordy_sync' is not numeric; V2 non-numeric ids are not supported yet",
        "sync run id 'wordy_run' is not numeric; V2 non-numeric ids are not supported yet",
    ]
    for reason in expected:
        assert len([line for line in messages if line.endswith(reason)]) == 1, (reason, messages)
    assert all(r.exc_info is None for r in caplog.records)


def test_the_v2_demo_serves_its_workspace_to_a_v2_exporter() -> None:
    simulator = start_demo(syncs=5, api_version="v2", group_id="demo_group")
    config = Config(
        api_url=base_url(simulator, "v2"),
        token=TokenSource(value=DEMO_TOKEN),
        api_version="v2",
        group_id="demo_group",
        listen_host="127.0.0.1",
        listen_port=0,
        cache_ttl_seconds=0.0,
    )
    exporter = Exporter(config)
    try:
        exporter.start()
        url = f"http://127.0.0.1:{exporter.port}"
        wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, what="readiness")
        text = httpx.get(url + "/metrics").text
        assert 'census_up{workspace="default"} 1.0' in text
        assert 'census_syncs{workspace="default"} 5.0' in text
        assert 'endpoint="/v2/syncs"' in text
    finally:
        exporter.close()
        simulator.close()


# ---------------------------------------------------------------------- configuration


def test_the_client_names_the_group_as_the_simulator_assumes() -> None:
    # Both sides hold the same unpublished assumption; correcting it must change both.
    assert _dialect.GROUP_PARAMETER == GROUP_PARAMETER


def test_a_v1_client_with_a_group_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="refused with api_version v1"):
        client.CensusClient("http://127.0.0.1:9/api/v1", lambda: PAT, group_id=GROUP)


TOKEN_ENV = {"CENSUS_API_TOKEN": PAT}


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--census.group-id", GROUP], {}, "--census.group-id (env CENSUS_GROUP_ID): only valid with"),
        (
            [],
            {"CENSUS_API_VERSION": "v1", "CENSUS_GROUP_ID": GROUP},
            "only valid with --census.api-version v2",
        ),
        (
            ["--census.api-version", "v2", "--census.group-id", GROUP, "--census.api-url", "http://x/api/v1"],
            {},
            "--census.api-url (env CENSUS_API_URL): ends in /api/v1 but --census.api-version is v2",
        ),
        (["--census.api-version", "v3"], {}, "'v3' is not one of v1, v2"),
        (
            ["--census.api-version", "v2", "--census.group-id", "no spaces"],
            {},
            "expected a Fivetran group id",
        ),
    ],
    ids=["v1-group", "v1-env-group", "url-version", "v3", "bad-group"],
)
def test_the_cli_refuses_a_dialect_that_does_not_fit_in_one_line(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_config(argv, TOKEN_ENV | environ)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert message in error, error
    assert PAT not in error


@pytest.mark.parametrize(
    ("argv", "expected_url"),
    [
        (["--census.api-version", "v2"], "https://app.getcensus.com/api/v2"),
        (["--census.api-version", "v2", "--census.region", "eu"], "https://app-eu.getcensus.com/api/v2"),
        ([], "https://app.getcensus.com/api/v1"),
        (["--census.region", "eu"], "https://app-eu.getcensus.com/api/v1"),
    ],
)
def test_the_default_api_url_follows_the_version_and_region(argv: list[str], expected_url: str) -> None:
    group = ["--census.group-id", GROUP] if "v2" in argv else []
    config = parse_config([*argv, *group], TOKEN_ENV)
    assert config.api_url == expected_url
    assert config.group_id == (GROUP if group else None)


def test_v2_without_a_group_watches_every_group_the_pat_sees() -> None:
    config = parse_config(["--census.workspace", "marketing"], TOKEN_ENV | {"CENSUS_API_VERSION": "v2"})
    assert config.watched() == ()
    [every_group] = config.discoveries
    assert every_group.api_version == "v2"
    assert every_group.api_url == "https://app.getcensus.com/api/v2"
    assert every_group.unscoped_name == "marketing"


def test_the_eu_v2_host_is_called_unconfirmed_once_at_start(caplog: pytest.LogCaptureFixture) -> None:
    eu = ["--census.api-version", "v2", "--census.group-id", GROUP, "--census.region", "eu"]
    with caplog.at_level(logging.INFO):
        log_api_version_notice(parse_config(eu, TOKEN_ENV))
        log_api_version_notice(parse_config(["--census.region", "eu"], TOKEN_ENV))  # V1 on EU: confirmed
    lines = [r.getMessage() for r in caplog.records if "EU host" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "https://app-eu.getcensus.com/api/v2" in lines[0] and "--census.api-url" in lines[0]


def test_v1_logs_its_retirement_once_at_start_and_v2_does_not(caplog: pytest.LogCaptureFixture) -> None:
    v1 = parse_config([], TOKEN_ENV)
    v2 = parse_config(["--census.api-version", "v2", "--census.group-id", GROUP], TOKEN_ENV)
    with caplog.at_level(logging.INFO):
        log_api_version_notice(v1)
        log_api_version_notice(v2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "2027-01-15" in lines[0] and "docs/census-api-versions.md" in lines[0]


def start_lines(tmp_path: Path, *args: str) -> str:
    """What the real process logged up to "listening on" (it is stopped then): its start lines.

    The notices come only once the configuration is known to work, so the process must really start."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUS_", "WEB_", "LOG_"))}
    process = Process(
        [sys.executable, "-m", "census_exporter", "--web.listen-address=127.0.0.1:0", *args],
        tmp_path / f"exporter-{len(list(tmp_path.iterdir()))}.log",
        env=clean | TOKEN_ENV,
    )
    try:
        wait_for(lambda: "listening on" in process.log.read_text(errors="replace"), what="the start lines")
    finally:
        process.stop()
    return process.log.read_text(errors="replace")


@pytest.mark.parametrize(
    ("extra", "notices"), [([], 1), (["--census.api-version", "v2", "--census.group-id", GROUP], 0)]
)
def test_the_real_process_warns_about_v1_once_at_start(
    tmp_path: Path, extra: list[str], notices: int
) -> None:
    lines = start_lines(tmp_path, *extra)
    assert lines.count("retired on 2027-01-15") == notices, lines
    assert PAT not in lines


def test_the_real_process_says_once_at_start_that_the_eu_v2_host_is_unconfirmed(tmp_path: Path) -> None:
    eu = ["--census.api-version", "v2", "--census.region", "eu"]
    for lines in (start_lines(tmp_path, *eu, "--census.group-id", GROUP), start_lines(tmp_path, *eu)):
        assert lines.count("has not confirmed that API V2 is served on the EU host") == 1, lines
        assert "https://app-eu.getcensus.com/api/v2" in lines and "--census.api-url" in lines
        assert PAT not in lines
