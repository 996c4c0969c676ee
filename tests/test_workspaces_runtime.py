"""Several workspaces in one exporter, from a workspaces file, over real HTTP against a simulated org.

Each workspace has its own client, refresher and ``workspace`` label: one workspace's 401 or outage leaves
the other's data, census_up and counters untouched; a scrape waits for the stale ones in parallel, within
one budget.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from census_exporter.cli.assembly import parse_config
from census_exporter.demo import Fault, SimulatedOrganization, SimulatedWorkspace, SimulatorServer
from census_exporter.demo.organization import HostedWorkspace, base_url
from census_exporter.exporter import Exporter
from census_exporter.logs import WorkspaceField
from tests.conftest import Scrape, log_lines_until_listening, parse_scrape, wait_for


def workspace_with(labels: dict[int, str], runs: int = 1) -> SimulatedWorkspace:
    """A workspace whose syncs (same ids in every workspace, on purpose) each have ``runs`` finished runs."""
    workspace = SimulatedWorkspace()
    for sync_id, label in labels.items():
        workspace.add_sync(sync_id, label=label)
        for _ in range(runs):
            workspace.add_run(sync_id, "completed", records=10)
    return workspace


class Running:
    """An exporter started from a workspaces file, and a client scraping it."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.http = httpx.Client(timeout=30)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.http.get(f"http://127.0.0.1:{self.exporter.port}{path}", headers=headers)

    def wait_ready(self) -> None:
        """Until every workspace has finished its first refresh (bounded)."""
        wait_for(lambda: self.get("/readyz").status_code == 200, what="the first refreshes")

    def scrape(self, **headers: str) -> Scrape:
        response = self.get("/metrics", **headers)
        assert response.status_code == 200, response.text
        return parse_scrape(response.text)


StartExporter = Callable[..., Running]


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[StartExporter]:
    """Write a workspaces file, parse it like the CLI does, and start an exporter on loopback."""
    started: list[Running] = []

    def start(text: str, env: dict[str, str], *flags: str) -> Running:
        path = tmp_path / "workspaces.yaml"
        path.write_text(text)
        argv = ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0", *flags]
        config = parse_config(argv, env)
        exporter = Exporter(config)
        exporter.start()
        running = Running(exporter)
        started.append(running)
        return running

    yield start
    for running in started:
        running.http.close()
        running.exporter.close()


@pytest.fixture
def organization() -> Iterator[SimulatedOrganization]:
    organization = SimulatedOrganization(pat="secret-token:organisation-pat")
    yield organization
    if organization.server is not None:
        organization.server.close()


def host_marketing_and_sales(
    organization: SimulatedOrganization,
) -> tuple[HostedWorkspace, HostedWorkspace, SimulatorServer]:
    """Marketing (sync 1 "leads", over V1) and sales (sync 1 "deals", group sales_group, V2), served."""
    marketing = organization.add_workspace("marketing", workspace=workspace_with({1: "leads"}))
    sales = organization.add_workspace(
        "sales", group_id="sales_group", workspace=workspace_with({1: "deals"})
    )
    return marketing, sales, organization.serve()


def two_workspaces_file(
    org: SimulatedOrganization, marketing: HostedWorkspace, sales: HostedWorkspace
) -> str:
    assert org.server is not None
    return f"""\
workspaces:
  - name: marketing
    api_version: v1
    api_url: {base_url(org.server, "v1")}
    token_env: CENSUS_TOKEN_MARKETING
  - name: sales
    api_version: v2
    api_url: {base_url(org.server, "v2")}
    token_env: CENSUS_PAT
    group_id: {sales.group_id}
"""


def env_for(org: SimulatedOrganization, marketing: HostedWorkspace) -> dict[str, str]:
    return {"CENSUS_TOKEN_MARKETING": marketing.api_key, "CENSUS_PAT": org.pat}


def test_two_workspaces_one_per_dialect_keep_the_same_sync_ids_apart(
    organization: SimulatedOrganization, start_exporter: StartExporter
) -> None:
    marketing = organization.add_workspace(
        "marketing", workspace=workspace_with({1: "leads", 2: "accounts"}, 2)
    )
    sales = organization.add_workspace(
        "sales", group_id="sales_group", workspace=workspace_with({1: "deals"}, 3)
    )
    organization.serve()
    running = start_exporter(
        two_workspaces_file(organization, marketing, sales), env_for(organization, marketing)
    )
    wait_for(lambda: running.get("/readyz").status_code == 200, what="both workspaces' first refresh")
    scrape = running.scrape()
    assert scrape.value("census_up", workspace="marketing") == 1
    assert scrape.value("census_up", workspace="sales") == 1
    assert scrape.value("census_syncs", workspace="marketing") == 2
    assert scrape.value("census_syncs", workspace="sales") == 1
    # sync 1 exists in both: two series, told apart by the workspace label
    info = scrape.all("census_sync_info", sync_id="1")
    assert {dict(labels)["workspace"]: dict(labels)["label"] for labels in info} == {
        "marketing": "leads",
        "sales": "deals",
    }
    # the request metrics are per workspace, and V2's templates show the dialect
    assert (
        scrape.value("census_api_requests_total", workspace="marketing", endpoint="/syncs", code="200") == 1
    )
    assert scrape.value("census_api_requests_total", workspace="sales", endpoint="/v2/syncs", code="200") == 1


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_one_workspaces_401_or_outage_leaves_the_others_data_and_counters_untouched(
    organization: SimulatedOrganization, start_exporter: StartExporter
) -> None:
    marketing, sales, server = host_marketing_and_sales(organization)
    running = start_exporter(
        two_workspaces_file(organization, marketing, sales),
        env_for(organization, marketing),
        "--census.cache-ttl",
        "1",
        "--census.record-totals=sync",
        "--census.run-details",
    )
    running.wait_ready()
    before = running.scrape()
    assert before.value("census_up", workspace="marketing") == 1
    # marketing's key is revoked (401 on every V1 call) and its runs endpoint breaks; sales goes on running.
    marketing.api_key = "secret-token:revoked"
    server.inject(Fault(r"^/api/v1/", status=503, times=-1))
    sales.workspace.add_run(1, "completed", records=7)
    sales.workspace.add_run(1, "failed", records=3, records_failed=3)

    def sales_counted() -> bool:
        scrape = running.scrape()
        return scrape.value("census_sync_runs_total", workspace="sales", sync_id="1", status="failed") == 1

    wait_for(sales_counted, what="sales to count its new runs")
    after = running.scrape()
    assert after.value("census_up", workspace="marketing") == 0
    assert after.value("census_up", workspace="sales") == 1
    # marketing keeps its last good data; nothing of it is lost or doubled
    assert after.value(
        "census_sync_records_processed_total", workspace="marketing", sync_id="1"
    ) == before.value("census_sync_records_processed_total", workspace="marketing", sync_id="1")
    assert after.value("census_sync_last_run_id", workspace="marketing", sync_id="1") is not None
    # runs that finished before the exporter watched are a baseline, not counted: one new completed run
    assert after.value("census_sync_runs_total", workspace="sales", sync_id="1", status="completed") == 1
    assert after.value("census_last_refresh_timestamp_seconds", workspace="sales") > before.value(
        "census_last_refresh_timestamp_seconds", workspace="sales"
    )
    assert after.value("census_last_refresh_timestamp_seconds", workspace="marketing") == before.value(
        "census_last_refresh_timestamp_seconds", workspace="marketing"
    )


def test_a_scrape_waits_for_stale_workspaces_in_parallel_within_one_budget(
    organization: SimulatedOrganization, start_exporter: StartExporter
) -> None:
    marketing, sales, server = host_marketing_and_sales(organization)
    running = start_exporter(
        two_workspaces_file(organization, marketing, sales),
        env_for(organization, marketing),
        "--census.cache-ttl",
        "1",
    )
    running.wait_ready()
    # Every request now takes 1 s: a refresh (the sync list, then the sync's runs) takes 2 s, so two
    # refreshes fit in the 3.5 s budget of a 4 s scrape timeout only if they run side by side (1.5 s to
    # spare for a loaded machine; one after the other they would need 4 s).
    organization.members[0].workspace.add_run(1, "completed", records=5)
    organization.members[1].workspace.add_run(1, "completed", records=5)
    server.latency_seconds = 1.0
    wait_for(running.exporter.fleet.is_stale, what="the data to go stale")
    started = time.monotonic()
    scrape = running.scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "4"})
    assert time.monotonic() - started < 4
    # both new runs (the first ones are a baseline) were counted by refreshes this one scrape waited for
    assert scrape.value("census_sync_runs_total", workspace="marketing", sync_id="1", status="completed") == 1
    assert scrape.value("census_sync_runs_total", workspace="sales", sync_id="1", status="completed") == 1


def test_include_and_exclude_choose_the_watched_syncs_per_workspace(
    organization: SimulatedOrganization, start_exporter: StartExporter
) -> None:
    marketing = organization.add_workspace(
        "marketing", workspace=workspace_with({1: "prod leads", 2: "prod leads test", 3: "staging leads"})
    )
    organization.serve()
    assert organization.server is not None
    text = f"""\
workspaces:
  - name: marketing
    api_version: v1
    api_url: {base_url(organization.server, "v1")}
    token_env: T
    include: ["^prod "]
    exclude: ["test$"]
"""
    running = start_exporter(text, {"T": marketing.api_key})
    wait_for(lambda: running.get("/readyz").status_code == 200, what="the first refresh")
    scrape = running.scrape()
    assert scrape.value("census_syncs", workspace="marketing") == 1
    assert {dict(labels)["sync_id"] for labels in scrape.all("census_sync_info")} == {"1"}
    # only the watched sync's runs were asked for
    assert organization.server.count(r"/syncs/2/sync_runs") == 0
    assert organization.server.count(r"/syncs/3/sync_runs") == 0


def test_every_log_line_of_a_refresh_names_its_workspace(
    organization: SimulatedOrganization, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    marketing, sales, _ = host_marketing_and_sales(organization)
    marketing.api_key = "secret-token:revoked-key"
    caplog.handler.addFilter(WorkspaceField())
    with caplog.at_level(logging.INFO):
        running = start_exporter(
            two_workspaces_file(organization, marketing, sales),
            {
                "CENSUS_TOKEN_MARKETING": "secret-token:wrong-key",
                "CENSUS_PAT": organization.pat,
            },
        )
        running.wait_ready()
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert rejected and all(getattr(r, "workspace", None) == "marketing" for r in rejected), [
        (r.getMessage(), getattr(r, "workspace", None)) for r in rejected
    ]


GOOD = """\
workspaces:
  - name: marketing
    api_version: v1
    token_env: MARKETING_KEY
  - name: sales
    api_version: v2
    group_id: sales_group
    token_file: {token_file}
"""


@pytest.mark.parametrize(
    ("edit", "env", "argv", "expected"),
    [
        (None, {}, [], ":4: workspace 'marketing': field `token_env` names MARKETING_KEY, which is not set"),
        (("sales_group", "sales_group\n    region: mars"), {"MARKETING_KEY": "k" * 12}, [], "field `region`"),
        (("name: sales", "name: '" + "s" * 129 + "'"), {"MARKETING_KEY": "k" * 12}, [], "field `name`"),
        (None, {"MARKETING_KEY": "k" * 12}, ["--census.workspace", "x"], "--census.workspace (env"),
        (None, {"MARKETING_KEY": "k" * 12, "CENSUS_API_VERSION": "v2"}, [], "--census.api-version (env"),
        (None, {"MARKETING_KEY": "k" * 12}, ["--demo"], "--demo: not allowed together with --config.file"),
    ],
)
def test_a_bad_workspaces_file_or_flag_mix_stops_the_start_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str] | None,
    env: dict[str, str],
    argv: list[str],
    expected: str,
) -> None:
    token_file = tmp_path / "pat"
    token_file.write_text("secret-token:pat-value\n")
    text = GOOD.format(token_file=token_file)
    if edit is not None:
        text = text.replace(*edit)
    path = tmp_path / "workspaces.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        parse_config(["--config.file", str(path), *argv], env)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error, error
    assert "secret-token:pat-value" not in error


def test_an_empty_token_file_stops_the_start_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "pat"
    token_file.write_text("\n")
    path = tmp_path / "workspaces.yaml"
    path.write_text(GOOD.format(token_file=token_file))
    with pytest.raises(SystemExit):
        parse_config(["--config.file", str(path)], {"MARKETING_KEY": "k" * 12})
    error = capsys.readouterr().err
    assert f"{path}:8: workspace 'sales': field `token_file` names an empty file" in error, error


def test_the_real_cli_runs_a_workspaces_file_and_names_the_v1_workspaces_to_move(
    organization: SimulatedOrganization, tmp_path: Path
) -> None:
    marketing, sales, _ = host_marketing_and_sales(organization)
    path = tmp_path / "workspaces.yaml"
    path.write_text(two_workspaces_file(organization, marketing, sales))
    lines = log_lines_until_listening(
        ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0"], env_for(organization, marketing)
    )
    text = "".join(lines)
    assert "move workspace marketing to V2 (api_version: v2 in the workspaces file)" in text, text
    assert "workspace sales: Census API v2 at" in text
    assert f"workspaces from {path}" in text
    assert organization.pat not in text and marketing.api_key not in text


def test_a_token_variable_the_file_does_not_use_is_named_as_unused(tmp_path: Path) -> None:
    token_file = tmp_path / "pat"
    token_file.write_text("secret-token:pat-value\n")
    path = tmp_path / "workspaces.yaml"
    path.write_text(GOOD.format(token_file=token_file))
    env = {"MARKETING_KEY": "k" * 12, "CENSUS_API_TOKEN": "secret-token:ignored"}
    config = parse_config(["--config.file", str(path)], env)
    assert config.notices and "CENSUS_API_TOKEN is set but not used" in config.notices[0]
    assert "secret-token:ignored" not in config.notices[0]
    uses_it = GOOD.replace("MARKETING_KEY", "CENSUS_API_TOKEN").format(token_file=token_file)
    path.write_text(uses_it)
    assert parse_config(["--config.file", str(path)], env).notices == ()


def test_a_catastrophic_include_regex_cannot_freeze_the_exporter_on_a_hostile_label(
    organization: SimulatedOrganization, start_exporter: StartExporter
) -> None:
    # With a backtracking engine, "(a+)+$" against 40 a's and a "!" takes hours and holds the GIL.
    hostile = organization.add_workspace("bad", workspace=workspace_with({1: "a" * 120 + "!", 2: "aaa"}))
    good = organization.add_workspace("good", workspace=workspace_with({1: "fine"}))
    server = organization.serve()
    text = f"""\
workspaces:
  - name: bad
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: BAD
    include: ["(a+)+$"]
  - name: good
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: GOOD
"""
    running = start_exporter(text, {"BAD": hostile.api_key, "GOOD": good.api_key})
    wait_for(lambda: running.get("/readyz").status_code == 200, timeout=10, what="both first refreshes")
    scrape = running.scrape()
    assert {dict(labels)["sync_id"] for labels in scrape.all("census_sync_info", workspace="bad")} == {"2"}
    assert scrape.value("census_up", workspace="good") == 1


def test_a_regex_re2_cannot_run_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workspaces.yaml"
    path.write_text(GOOD.format(token_file="/x") + '    include: ["(a)\\\\1"]\n')
    with pytest.raises(SystemExit):
        parse_config(["--config.file", str(path)], {"MARKETING_KEY": "k" * 12})
    error = capsys.readouterr().err
    assert "field `include` has an invalid regex" in error and "RE2 syntax" in error, error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (os.mkfifo, "not a regular file"),
        (lambda path: path.write_bytes(b"x" * (64 * 1024 + 1)), "larger than 64 KiB"),
        (lambda path: path.symlink_to("/dev/zero"), "not a regular file"),
    ],
)
def test_a_hostile_token_file_is_refused_at_once_without_reading_it_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], object], expected: str
) -> None:
    token_file = tmp_path / "pat"
    make(token_file)
    path = tmp_path / "workspaces.yaml"
    path.write_text(GOOD.format(token_file=token_file))
    started = time.monotonic()
    with pytest.raises(SystemExit):
        parse_config(["--config.file", str(path)], {"MARKETING_KEY": "k" * 12})
    assert time.monotonic() - started < 5  # a FIFO with no writer must not block the start
    error = capsys.readouterr().err
    assert "field `token_file`" in error and expected in error, error


def test_a_name_too_long_for_a_label_is_named_shortly_in_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workspaces.yaml"
    path.write_text(GOOD.format(token_file="/x").replace("name: marketing", "name: " + "m" * 100_000))
    with pytest.raises(SystemExit):
        parse_config(["--config.file", str(path)], {"MARKETING_KEY": "k" * 12})
    error = capsys.readouterr().err
    assert "field `name`" in error and len(error) < 400, error[:400]
