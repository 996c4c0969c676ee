"""A fleet that one workspace cannot sink, over real HTTP against simulated Census organizations.

* identity, not names: a group named in the file and found again by discovery is watched once;
* a workspace slower than the scrape budget is served from its previous snapshot without holding the scrape;
* bounds: syncs per workspace, workspaces per discovery entry and in all, each visible in a metric;
* fair shares: a named workspace keeps its lane of the request budget beside many discovered groups;
* a fixed set of refresh threads, whatever the number of workspaces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from census_exporter.cli.assembly import parse_config
from census_exporter.config import Workspace
from census_exporter.demo import SimulatedOrganization, SimulatedWorkspace, SimulatorServer
from census_exporter.demo.organization import base_url
from census_exporter.exporter import Exporter
from census_exporter.refresh.fleet import WatchedWorkspace
from census_exporter.refresh.refresher import Refresher
from tests.conftest import TEST_TOKEN, Scrape, parse_scrape, wait_for
from tests.threads import exporter_threads

PAT = "secret-token:fleet-pat"


def workspace_with_syncs(count: int, runs: int = 1) -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    for sync_id in range(1, count + 1):
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
        for _ in range(runs):
            workspace.add_run(sync_id, "completed", records=5)
    return workspace


class Running:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.http = httpx.Client(timeout=60)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.http.get(f"http://127.0.0.1:{self.exporter.port}{path}", headers=headers)

    def ready(self) -> bool:
        return self.get("/readyz").status_code == 200

    def scrape(self, **headers: str) -> Scrape:
        response = self.get("/metrics", **headers)
        assert response.status_code == 200, response.text
        return parse_scrape(response.text)

    def refresher(self, workspace: str) -> Refresher:
        return next(m.refresher for m in self.exporter.fleet.members() if m.workspace.name == workspace)


Start = Callable[..., Running]


@pytest.fixture
def organization() -> Iterator[SimulatedOrganization]:
    organization = SimulatedOrganization(pat=PAT)
    yield organization
    if organization.server is not None:
        organization.server.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[Running] = []

    def run(text: str, env: dict[str, str], *flags: str) -> Running:
        path = tmp_path / "workspaces.yaml"
        path.write_text(text)
        config = parse_config(
            ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0", *flags], env
        )
        exporter = Exporter(config)
        exporter.start()
        running = Running(exporter)
        started.append(running)
        return running

    yield run
    for running in started:
        running.http.close()
        running.exporter.close()


def auto_entry(server: SimulatorServer, api_version: Literal["v1", "v2"] = "v2") -> str:
    return f"""\
  - auto: true
    api_version: {api_version}
    api_url: {base_url(server, api_version)}
    token_env: CENSUS_PAT
    relist_interval_seconds: 1
"""


# ---------------------------------------------------------------------- identity


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_named_group_found_again_by_discovery_is_watched_once_and_each_run_counted_once(
    organization: SimulatedOrganization, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    sales = organization.add_workspace("Sales Team", group_id="g_sales", workspace=workspace_with_syncs(2))
    # Another group Census names "SALES": equal to the named entry's name up to case, so a clash too.
    organization.add_workspace("SALES", group_id="g_other", workspace=workspace_with_syncs(1))
    organization.add_workspace("support", group_id="g_support", workspace=workspace_with_syncs(1))
    server = organization.serve()
    text = f"""\
workspaces:
  - name: sales
    api_version: v2
    group_id: g_sales
    api_url: {base_url(server, "v2")}
    token_env: CENSUS_PAT
{auto_entry(server)}"""
    with caplog.at_level(logging.INFO):
        running = start(text, {"CENSUS_PAT": PAT}, "--census.cache-ttl", "1")
        wait_for(running.ready, what="the first listing and refreshes")
        # the discovery listing repeats every second: the skips are still logged once each
        listings = server.count(r"^/api/v2/groups$")
        wait_for(lambda: server.count(r"^/api/v2/groups$") >= listings + 3, what="three more listings")
    up = {dict(labels)["workspace"]: value for labels, value in running.scrape().all("census_up").items()}
    assert up == {"sales": 1, "support": 1}
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert any("g_sales" in line and "same Census id" in line for line in skipped)
    assert any("g_other" in line and "of that name" in line for line in skipped)
    assert running.scrape().value("census_discovery_workspaces", discovery=base_url(server, "v2")) == 1

    # new runs after the baseline: each counted once, under one workspace, against the simulator's truth
    for sync_id in (1, 2):
        sales.workspace.add_run(sync_id, "completed", records=3)
    sales.workspace.add_run(1, "failed", records=1, records_failed=1)
    truth = {("1", "completed"): 1, ("1", "failed"): 1, ("2", "completed"): 1}

    def counted() -> dict[tuple[str, str], float]:
        samples = running.scrape().all("census_sync_runs_total")
        totals: dict[tuple[str, str], float] = {}
        for labels, value in samples.items():
            named = dict(labels)
            if named["workspace"] == "support":
                continue
            key = (named["sync_id"], named["status"])
            totals[key] = totals.get(key, 0) + value
        return {key: value for key, value in totals.items() if value}

    wait_for(lambda: counted() == truth, what="the new runs to be counted once")
    workspaces = {dict(labels)["workspace"] for labels in running.scrape().all("census_sync_runs_total")}
    assert workspaces == {"sales", "support"}


def test_two_discovery_entries_over_one_organization_watch_each_workspace_once(
    organization: SimulatedOrganization, start: Start
) -> None:
    for name in ("marketing", "finance"):
        organization.add_workspace(name, workspace=workspace_with_syncs(1))
    server = organization.serve()
    # the same V1 organization listed twice (two PATs of one admin would do the same)
    text = "workspaces:\n" + auto_entry(server, "v1") + auto_entry(server, "v1")
    running = start(text, {"CENSUS_PAT": PAT}, "--census.cache-ttl", "1")
    wait_for(running.ready, what="the first listings and refreshes")
    up = {dict(labels)["workspace"]: value for labels, value in running.scrape().all("census_up").items()}
    assert up == {"marketing": 1, "finance": 1}
    counts = running.scrape().all("census_discovery_workspaces")
    assert sorted(counts.values()) == [0, 2]


# ---------------------------------------------------------------------- scrapes never wait on a slow one


@pytest.mark.slow  # 5-6 s: test-fast keeps to tests under ~5 s
def test_a_workspace_slower_than_the_scrape_budget_is_served_from_its_previous_snapshot(
    organization: SimulatedOrganization, start: Start
) -> None:
    fast = organization.add_workspace("fast", workspace=workspace_with_syncs(2))
    server = organization.serve()
    slow_workspace = workspace_with_syncs(1)
    slow = SimulatorServer(slow_workspace, token=TEST_TOKEN).start()
    try:
        text = f"""\
workspaces:
  - name: fast
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: FAST_KEY
  - name: slow
    api_version: v1
    api_url: {slow.url}
    token_env: SLOW_KEY
"""
        running = start(
            text,
            {"FAST_KEY": fast.api_key, "SLOW_KEY": TEST_TOKEN},
            "--census.cache-ttl",
            "1",
        )
        wait_for(running.ready, what="the first refreshes")
        slow_refresher = running.refresher("slow")
        before = running.scrape()
        slow_duration = before.value("census_refresh_duration_seconds", workspace="slow")
        # every answer of the slow API now takes 1.5 s: a refresh (4 requests one after the other) far
        # outlasts the 2.5 s budget of a 3 s scrape
        slow.latency_seconds = 1.5
        # one slow refresh, to learn from
        wait_for(slow_refresher.is_stale, what="slow's data to go stale")
        learnt = slow_refresher.refresh_count + 1
        slow_refresher.trigger()
        wait_for(
            lambda: slow_refresher.refresh_count >= learnt,
            timeout=30,
            what="one slow refresh",
        )
        previous = slow_refresher.snapshot
        assert previous.refresh_duration_seconds > 2.5 > slow_duration
        fast.workspace.add_run(1, "completed", records=1)
        wait_for(slow_refresher.is_stale, what="slow's data to go stale again")
        count = slow_refresher.refresh_count
        scrape = running.scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "3"})
        # the answer came while slow's refresh was still running, with its previous snapshot ...
        assert slow_refresher.refresh_count == count
        assert slow_refresher.expected_finish() is not None
        assert scrape.value("census_refresh_duration_seconds", workspace="slow") == pytest.approx(
            previous.refresh_duration_seconds
        )
        assert scrape.value("census_sync_info", workspace="slow", sync_id="1") == 1
        # ... and the fast workspace's new run, read by the refresh the scrape waited for
        assert scrape.value("census_sync_runs_total", workspace="fast", sync_id="1", status="completed") == 1
    finally:
        slow.close()


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_first_refresh_that_outlasted_one_scrape_budget_does_not_hold_the_next_scrapes(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    # every answer takes 2 s: the first refresh (at least 4 requests one after the other) lasts 8 s or more,
    # and nothing has been learnt about it yet
    simulator = SimulatorServer(workspace_with_syncs(1), token=TEST_TOKEN, latency_seconds=2.0).start()
    try:
        text = f"""\
workspaces:
  - name: slow
    api_version: v1
    api_url: {simulator.url}
    token_env: KEY
"""
        running = start(text, {"KEY": TEST_TOKEN})
        refresher = running.refresher("slow")
        header = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
        with caplog.at_level(logging.DEBUG, logger="census_exporter.refresh.fleet"):
            # the first scrape waits half its budget (1.25 s) for the first refresh, still running after it
            first = running.get("/metrics", **header)
            assert refresher.refresh_count == 0
            waited = [r for r in caplog.records if "still running after the scrape budget" in r.getMessage()]
            assert len(waited) == 1
            # the next one does not wait for it again: it has been running longer than a budget already
            second = running.get("/metrics", **header)
            assert refresher.refresh_count == 0
        assert first.status_code == second.status_code == 200
        skipped = [r for r in caplog.records if "expected to outlast the scrape budget" in r.getMessage()]
        assert len(skipped) == 1
        assert len([r for r in caplog.records if "still running after" in r.getMessage()]) == 1
        wait_for(running.ready, timeout=60, what="the slow first refresh")
    finally:
        simulator.close()


@pytest.mark.slow  # refreshes queued behind stalled ones, 10 s
def test_refreshes_queued_behind_the_refresh_threads_are_not_waited_for(
    organization: SimulatedOrganization, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    members = [organization.add_workspace(f"w{n}", workspace=workspace_with_syncs(1)) for n in range(6)]
    server = organization.serve()
    text = "workspaces:\n" + "".join(
        f"""\
  - name: {member.name}
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: KEY_{n}
"""
        for n, member in enumerate(members)
    )
    env = {f"KEY_{n}": member.api_key for n, member in enumerate(members)}
    running = start(
        text,
        env,
        "--census.refresh-workers",
        "1",
        "--census.cache-ttl",
        "1",
        "--census.max-requests-per-second",
        "0",
    )
    wait_for(running.ready, timeout=60, what="the first refreshes")
    # every answer now takes 0.6 s: a refresh (the list, then the runs) about 1.2 s, and six of them one
    # after the other on the one refresh thread far more than the 2.5 s budget of a 3 s scrape
    server.latency_seconds = 0.6
    refreshers = [running.refresher(member.name) for member in members]
    for refresher in refreshers:
        wait_for(refresher.is_stale, what="the data to go stale")
        refresher.trigger()
    wait_for(
        lambda: all(r.snapshot.refresh_duration_seconds > 1.0 for r in refreshers),
        timeout=60,
        what="one slow refresh of each, to learn from",
    )
    for refresher in refreshers:
        wait_for(refresher.is_stale, what="the data to go stale again")
    with caplog.at_level(logging.DEBUG, logger="census_exporter.refresh.fleet"):
        scrape = running.scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "3"})
    # the ones queued behind the others were served from their previous snapshot without being waited for
    skipped = [r.getMessage() for r in caplog.records if "expected to outlast" in r.getMessage()]
    assert len(skipped) == 1
    assert int(skipped[0].split()[0]) >= 3, skipped
    assert len(scrape.all("census_up")) == 6


def test_scrapes_and_readyz_are_answered_while_discovery_builds_its_clients(
    organization: SimulatedOrganization, tmp_path: Path
) -> None:
    for number in range(5):
        organization.add_workspace(f"group {number}", workspace=workspace_with_syncs(1))
    server = organization.serve()
    path = tmp_path / "workspaces.yaml"
    path.write_text("workspaces:\n" + auto_entry(server))
    config = parse_config(
        ["--config.file", str(path), "--web.listen-address", "127.0.0.1:0"], {"CENSUS_PAT": PAT}
    )
    exporter = Exporter(config)
    build = exporter.fleet._watch
    answers: list[tuple[int, int]] = []

    def watch(workspace: Workspace) -> WatchedWorkspace:
        # Discovery builds a new workspace's client here: an exporter whose fleet lock is held now would
        # leave these requests hanging until their timeout.
        with httpx.Client(timeout=5) as http:
            ready = http.get(f"http://127.0.0.1:{exporter.port}/readyz")
            metrics = http.get(f"http://127.0.0.1:{exporter.port}/metrics")
        answers.append((ready.status_code, metrics.status_code))
        return build(workspace)

    exporter.fleet._watch = watch
    exporter.start()
    try:
        wait_for(lambda: len(exporter.fleet.members()) == 5, timeout=60, what="five discovered groups")
        assert answers == [(503, 200)] * 5
    finally:
        exporter.close()


# ---------------------------------------------------------------------- bounds


@pytest.mark.slow  # rounds of refreshes of many workspaces, 15-80 s
def test_a_sync_list_beyond_the_bound_is_read_only_up_to_it_and_says_how_many_were_left_out(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = workspace_with_syncs(250)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    try:
        text = f"""\
workspaces:
  - name: big
    api_version: v1
    api_url: {simulator.url}
    token_env: KEY
"""
        with caplog.at_level(logging.INFO):
            running = start(
                text,
                {"KEY": TEST_TOKEN},
                "--census.max-syncs-per-workspace",
                "120",
                "--census.cache-ttl",
                "1",
            )
            wait_for(running.ready, what="the first refresh")
            scrape = running.scrape()
            wait_for(
                lambda: running.refresher("big").refresh_count >= 2,
                what="a second refresh",
            )
            running.scrape()
        assert scrape.value("census_syncs", workspace="big") == 120
        assert scrape.value("census_syncs_left_out", workspace="big") == 130
        assert scrape.value("census_up", workspace="big") == 1
        assert scrape.value("census_sync_info", workspace="big", sync_id="121") is None
        # two pages of 100 were read, never the third
        assert simulator.count(r"/syncs$") == 2 * running.refresher("big").refresh_count
        said = [r for r in caplog.records if "max-syncs-per-workspace" in r.getMessage()]
        assert len(said) == 1
    finally:
        simulator.close()


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_the_fleet_wide_sync_bound_splits_first_come_first_served_and_counts_the_rest(
    organization: SimulatedOrganization, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    first = organization.add_workspace("first", workspace=workspace_with_syncs(30))
    second = organization.add_workspace("second", workspace=workspace_with_syncs(30))
    server = organization.serve()
    text = "workspaces:\n" + "".join(
        f"""\
  - name: {member.name}
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: KEY_{member.name.upper()}
"""
        for member in (first, second)
    )
    env = {"KEY_FIRST": first.api_key, "KEY_SECOND": second.api_key}
    with caplog.at_level(logging.INFO):
        running = start(text, env, "--census.max-syncs", "40", "--census.cache-ttl", "1")
        wait_for(running.ready, what="the first refreshes")
        before = running.scrape()
        counts = {name: running.refresher(name).refresh_count for name in ("first", "second")}

        def refreshed_twice() -> bool:
            running.scrape()  # a scrape starts the refreshes of stale workspaces
            return all(running.refresher(name).refresh_count > counts[name] + 1 for name in counts)

        wait_for(refreshed_twice, interval=0.3, what="two more refreshes of each workspace")
        after = running.scrape()
    for scrape in (before, after):
        watched = {name: scrape.value("census_syncs", workspace=name) for name in ("first", "second")}
        left_out = {
            name: scrape.value("census_syncs_left_out", workspace=name) for name in ("first", "second")
        }
        assert sum(watched.values()) == 40
        assert sorted(watched.values()) == [10, 30]
        assert {name: watched[name] + left_out[name] for name in watched} == {"first": 30, "second": 30}
        assert all(scrape.value("census_up", workspace=name) == 1 for name in watched)
    # a workspace keeps what it was granted: the split does not flip between refreshes
    assert {n: before.value("census_syncs", workspace=n) for n in ("first", "second")} == {
        n: after.value("census_syncs", workspace=n) for n in ("first", "second")
    }
    said = [r for r in caplog.records if "--census.max-syncs leave room" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.slow  # 5-6 s: test-fast keeps to tests under ~5 s
def test_discovery_beyond_its_bounds_watches_what_fits_and_counts_the_rest(
    organization: SimulatedOrganization, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    named = organization.add_workspace("named", workspace=workspace_with_syncs(1))
    for number in range(6):
        organization.add_workspace(f"group {number}", workspace=workspace_with_syncs(1))
    server = organization.serve()
    text = f"""\
workspaces:
  - name: named
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: NAMED_KEY
{auto_entry(server)}"""
    with caplog.at_level(logging.INFO):
        running = start(
            text,
            {"CENSUS_PAT": PAT, "NAMED_KEY": named.api_key},
            "--census.max-workspaces-per-discovery",
            "5",
            "--census.max-workspaces",
            "4",
            "--census.cache-ttl",
            "1",
        )
        wait_for(running.ready, what="the first listing and refreshes")
        listings = server.count(r"^/api/v2/groups$")
        wait_for(lambda: server.count(r"^/api/v2/groups$") >= listings + 2, what="two more listings")
        scrape = running.scrape()
    discovery = base_url(server, "v2")
    up = scrape.all("census_up")
    assert len(up) == 4  # the named one and three discovered groups
    # 7 groups listed (the named workspace's group among them): 5 kept by the entry's bound, of which the
    # named one is already watched, and 3 fit the total of 4
    assert scrape.value("census_discovery_workspaces", discovery=discovery) == 3
    assert scrape.value("census_discovery_workspaces_left_out", discovery=discovery) == 3
    said = [r for r in caplog.records if "left out by" in r.getMessage()]
    assert len(said) == 1


# ---------------------------------------------------------------------- fair shares and threads


@pytest.mark.slow  # rounds of refreshes of many workspaces, 15-80 s
def test_a_named_workspace_keeps_its_share_of_reads_beside_sixty_discovered_groups(
    organization: SimulatedOrganization, start: Start
) -> None:
    named = organization.add_workspace("named", workspace=workspace_with_syncs(30))
    for number in range(60):
        organization.add_workspace(f"group {number}", workspace=workspace_with_syncs(1))
    server = organization.serve()
    text = f"""\
workspaces:
  - name: named
    api_version: v1
    api_url: {base_url(server, "v1")}
    token_env: NAMED_KEY
{auto_entry(server)}"""
    running = start(
        text,
        {"CENSUS_PAT": PAT, "NAMED_KEY": named.api_key},
        "--census.max-requests-per-second",
        "40",
        "--census.cache-ttl",
        "3",
        "--census.refresh-timeout",
        "10",
    )
    refresher = running.refresher("named")
    wait_for(lambda: refresher.refresh_count >= 1, timeout=30, what="named's first refresh")
    first = refresher.refresh_count
    reads_before = server.count(r"^/api/v1/syncs/\d+/sync_runs$")
    rounds: list[float | None] = []

    def more_rounds() -> bool:
        scrape = running.scrape()
        if refresher.refresh_count > first + len(rounds):
            rounds.append(scrape.value("census_refresh_syncs_unread", workspace="named"))
        return len(rounds) >= 4

    wait_for(more_rounds, timeout=90, interval=0.5, what="four more refreshes of the named workspace")
    reads = server.count(r"^/api/v1/syncs/\d+/sync_runs$") - reads_before
    # Its lane (half of 40/s: about 29 sync reads per 3 s round) covers all 30 syncs every round; an even
    # split over 61 workspaces would have left it 1 read a round.
    assert all(unread == 0 for unread in rounds), rounds
    assert reads >= 30 * 4
    scrape = running.scrape()
    assert scrape.value("census_data_within_bound", workspace="named") == 1
    # threads: a fixed set of refresh workers, not a set per workspace
    assert exporter_threads() <= 8 + 8 * (1 + 8) + 1


@pytest.mark.slow  # rounds of refreshes of many workspaces, 15-80 s
# Counts this process's threads: in a parallel worker, an earlier test's exporter may still be ending its own.
@pytest.mark.serial
def test_refresh_threads_are_bounded_by_configuration_not_by_the_number_of_workspaces(
    organization: SimulatedOrganization, start: Start
) -> None:
    for number in range(50):
        organization.add_workspace(f"group {number}", workspace=workspace_with_syncs(1))
    server = organization.serve(latency_seconds=0.3)
    running = start(
        "workspaces:\n" + auto_entry(server),
        {"CENSUS_PAT": PAT},
        "--census.refresh-workers",
        "2",
        "--census.concurrency",
        "2",
        "--census.max-requests-per-second",
        "0",
    )
    peak = 0

    def watch_threads() -> bool:
        nonlocal peak
        peak = max(peak, exporter_threads())
        return running.ready()

    wait_for(watch_threads, timeout=120, interval=0.05, what="every group's first refresh")
    # 2 refresh workers, each refresh with its deadline timer and 2 readers (those of a refresh just ended
    # may still be leaving while the next one's start), discovery's own thread and the garbage collector's
    # (census_exporter/garbage.py); one set of threads per workspace would have been 50 x 4
    assert peak <= 2 + 2 * (1 + 2 + 2) + 1 + 1, peak
    assert len(running.scrape().all("census_up")) == 50
