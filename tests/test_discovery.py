"""Discovery (`auto: true`): every workspace (V1) or group (V2) one token can see, over real HTTP.

New workspaces appear and deleted ones vanish with their series within one re-list period; a workspace
whose API key the token may not read (403) is skipped with one log line; a failed listing removes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from census_exporter.cli.assembly import parse_config
from census_exporter.demo import Fault, SimulatedOrganization, SimulatedWorkspace
from census_exporter.demo.organization import base_url
from census_exporter.exporter import Exporter
from tests.conftest import Scrape, parse_scrape, wait_for

PAT = "secret-token:organisation-pat"


def workspace_with_sync(label: str) -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1, label=label)
    workspace.add_run(1, "completed")
    return workspace


@pytest.fixture
def organization() -> Iterator[SimulatedOrganization]:
    organization = SimulatedOrganization(pat=PAT)
    yield organization
    if organization.server is not None:
        organization.server.close()


class Watching:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.http = httpx.Client(timeout=30)

    def scrape(self) -> Scrape:
        response = self.http.get(f"http://127.0.0.1:{self.exporter.port}/metrics")
        assert response.status_code == 200
        return parse_scrape(response.text)

    def ready(self) -> bool:
        return self.http.get(f"http://127.0.0.1:{self.exporter.port}/readyz").status_code == 200

    def workspaces_up(self) -> dict[str, float]:
        return {dict(labels)["workspace"]: value for labels, value in self.scrape().all("census_up").items()}


StartWatching = Callable[[str, dict[str, str]], Watching]


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[StartWatching]:
    started: list[Watching] = []

    def start(text: str, env: dict[str, str]) -> Watching:
        path = tmp_path / "workspaces.yaml"
        path.write_text(text)
        config = parse_config(
            ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0", "--census.cache-ttl", "1"],
            env,
        )
        exporter = Exporter(config)
        exporter.start()
        watching = Watching(exporter)
        started.append(watching)
        return watching

    yield start
    for watching in started:
        watching.http.close()
        watching.exporter.close()


def auto_file(organization: SimulatedOrganization, api_version: Literal["v1", "v2"], extra: str = "") -> str:
    assert organization.server is not None
    return f"""\
workspaces:
  - auto: true
    api_version: {api_version}
    api_url: {base_url(organization.server, api_version)}
    token_env: CENSUS_PAT
    relist_interval_seconds: 1
{extra}"""


def test_v1_discovery_follows_workspaces_as_they_come_and_go_and_skips_a_403_once(
    organization: SimulatedOrganization,
    watch: StartWatching,
    caplog: pytest.LogCaptureFixture,
) -> None:
    organization.add_workspace("marketing", workspace=workspace_with_sync("leads"))
    organization.add_workspace("sales", workspace=workspace_with_sync("deals"))
    organization.add_workspace("finance", administered=False, workspace=workspace_with_sync("ledger"))
    server = organization.serve()
    with caplog.at_level(logging.INFO):
        watching = watch(auto_file(organization, "v1"), {"CENSUS_PAT": PAT})
        wait_for(watching.ready, what="the first listing and refreshes")
        assert watching.workspaces_up() == {"marketing": 1, "sales": 1}
        scrape = watching.scrape()
        discovery = base_url(server, "v1")
        assert scrape.value("census_discovery_up", discovery=discovery) == 1
        assert scrape.value("census_discovery_workspaces", discovery=discovery) == 2
        assert scrape.value("census_sync_info", workspace="marketing", sync_id="1", label="leads") is not None

        # a workspace is created and another deleted: within one re-list period (1 s) the series follow
        organization.add_workspace("support", workspace=workspace_with_sync("tickets"))
        organization.members[:] = [m for m in organization.members if m.name != "sales"]
        wait_for(
            lambda: watching.workspaces_up() == {"marketing": 1, "support": 1},
            timeout=20,
            what="support to appear and sales to vanish",
        )
        scrape = watching.scrape()
        assert not scrape.all("census_sync_info", workspace="sales")
        assert not scrape.all("census_api_requests_total", workspace="sales")
        assert scrape.value("census_sync_info", workspace="support", sync_id="1", label="tickets") is not None
        # listed several times by now: the 403 was said once
        wait_for(lambda: server.count(r"/workspaces/\d+/api_key") >= 8, what="a few more listings")
    forbidden = [r for r in caplog.records if "403" in r.getMessage() and "finance" in r.getMessage()]
    assert len(forbidden) == 1, [r.getMessage() for r in forbidden]
    # the keys read from Census are secrets: never logged
    text = caplog.text
    assert all(member.api_key not in text for member in organization.members)


def test_v2_discovery_watches_every_visible_group_with_the_pat(
    organization: SimulatedOrganization,
    watch: StartWatching,
) -> None:
    organization.add_workspace(
        "marketing", group_id="marketing_group", workspace=workspace_with_sync("leads")
    )
    organization.add_workspace("sales", group_id="sales_group", workspace=workspace_with_sync("deals"))
    organization.serve()
    watching = watch(auto_file(organization, "v2"), {"CENSUS_PAT": PAT})
    wait_for(watching.ready, what="the first listing and refreshes")
    assert watching.workspaces_up() == {"marketing": 1, "sales": 1}
    scrape = watching.scrape()
    assert scrape.value("census_api_requests_total", workspace="sales", endpoint="/v2/syncs", code="200") >= 1
    # the listing of groups belongs to no workspace
    assert scrape.value("census_api_requests_total", workspace="", endpoint="/v2/groups", code="200") >= 1


def test_a_failed_listing_keeps_the_workspaces_and_says_so(
    organization: SimulatedOrganization,
    watch: StartWatching,
) -> None:
    organization.add_workspace(
        "marketing", group_id="marketing_group", workspace=workspace_with_sync("leads")
    )
    server = organization.serve()
    watching = watch(auto_file(organization, "v2"), {"CENSUS_PAT": PAT})
    wait_for(watching.ready, what="the first listing")
    server.inject(Fault(r"/api/v2/groups", status=500, times=-1))
    discovery = base_url(server, "v2")
    wait_for(
        lambda: watching.scrape().value("census_discovery_up", discovery=discovery) == 0,
        timeout=30,
        what="the failing listing to show",
    )
    scrape = watching.scrape()
    assert scrape.value("census_up", workspace="marketing") == 1
    assert scrape.value("census_discovery_workspaces", discovery=discovery) == 1


def test_a_discovered_workspace_named_like_a_named_one_is_skipped(
    organization: SimulatedOrganization,
    watch: StartWatching,
    caplog: pytest.LogCaptureFixture,
) -> None:
    marketing = organization.add_workspace(
        "marketing", group_id="marketing_group", workspace=workspace_with_sync("leads")
    )
    organization.add_workspace("sales", group_id="sales_group", workspace=workspace_with_sync("deals"))
    server = organization.serve()
    named = f"""\
  - name: marketing
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: MARKETING_KEY
"""
    with caplog.at_level(logging.INFO):
        watching = watch(
            auto_file(organization, "v2", named),
            {"CENSUS_PAT": PAT, "MARKETING_KEY": marketing.api_key},
        )
        wait_for(watching.ready, what="the first listing and refreshes")
    assert watching.workspaces_up() == {"marketing": 1, "sales": 1}
    assert watching.scrape().value(
        "census_api_requests_total", workspace="marketing", endpoint="/syncs", code="200"
    )
    assert sum("already watched" in r.getMessage() for r in caplog.records) == 1
    # it counts what it watches: sales, not marketing (watched by the named entry)
    assert watching.scrape().value("census_discovery_workspaces", discovery=base_url(server, "v2")) == 1


@pytest.mark.slow  # waits out a stalled read, 12-15 s
def test_one_stalled_key_read_does_not_keep_the_other_workspaces_out(
    organization: SimulatedOrganization, watch: StartWatching
) -> None:
    for number in range(12):
        organization.add_workspace(f"team-{number:02d}", workspace=workspace_with_sync(f"sync of {number}"))
    server = organization.serve()
    stalled = organization.members[0].workspace_id
    # The first workspace's key read stalls for longer than the exporter waits for a request.
    server.inject(Fault(rf"/workspaces/{stalled}/api_key$", status=200, delay_seconds=60, times=-1))
    watching = watch(auto_file(organization, "v1"), {"CENSUS_PAT": PAT})
    expected = {member.name for member in organization.members[1:]}
    wait_for(lambda: set(watching.workspaces_up()) == expected, timeout=20, what="every other workspace")
    assert watching.scrape().value("census_discovery_up", discovery=base_url(server, "v1")) == 0


def test_generated_names_never_collide() -> None:
    from census_exporter.config import TokenSource, Workspace
    from census_exporter.refresh.discovery import _unique_names

    def named(name: str) -> Workspace:
        return Workspace(name, "https://app.getcensus.com/api/v1", TokenSource(value="secret-token:x"))

    unique = _unique_names({"1": named("a (3)"), "2": named("a"), "3": named("a")})
    names = [workspace.name for workspace in unique.values()]
    assert len(set(names)) == 3, names


def test_a_new_workspace_under_a_gone_ones_name_starts_over_instead_of_inheriting_its_ledger() -> None:
    from unittest.mock import MagicMock

    from census_exporter.config import TokenSource, Workspace
    from census_exporter.refresh.fleet import Fleet, WatchedWorkspace
    from census_exporter.snapshot import DiscoveryStatus

    watched: list[WatchedWorkspace] = []
    released: list[Workspace] = []

    def watch(workspace: Workspace) -> WatchedWorkspace:
        member = WatchedWorkspace(workspace, MagicMock(), lambda: released.append(workspace))
        watched.append(member)
        return member

    fleet = Fleet(watch, [])
    url = "https://app.getcensus.com/api/v1"
    old = Workspace("marketing", url, TokenSource(value="secret-token:old-workspace"))
    status = DiscoveryStatus("auto", up=True, attempted=True)
    fleet.discovered("auto", [old], status)
    fleet.discovered("auto", [old], status)  # the same workspace again: kept
    assert len(watched) == 1 and not released
    # deleted, and another workspace created with its name: its own key source, so a member of its own
    new = Workspace("marketing", url, TokenSource(value="secret-token:new-workspace"))
    fleet.discovered("auto", [new], status)
    assert [member.workspace for member in watched] == [old, new]
    assert released == [old]
