"""The exporter against every way V2 may turn out to treat the Fivetran group, over real HTTP.

Census has not published whether V2 list calls honour ``?group_id=``, nor a groups route. The simulator
serves each plausible behaviour (``V2_VARIANTS``); in every one, two configured groups never share a sync,
every run is counted once, a PAT without a group watches each group apart where the API lets it tell them
apart, discovery finds the groups, and the start-up probe's line says which behaviour it saw.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from census_exporter import defaults
from census_exporter.cli.assembly import parse_config
from census_exporter.config import Config, Discovery, Exposition, TokenSource, Workspace
from census_exporter.demo import Fault, SimulatedOrganization
from census_exporter.demo.organization import V2_VARIANTS, base_url
from census_exporter.demo.workspace import SimulatedWorkspace
from census_exporter.exporter import Exporter
from tests.conftest import Scrape, parse_scrape, wait_for
from tests.threads import exporter_threads

PAT = "secret-token:activations-pat-variants"
GROUPS = {"marketing": ("glad_otter", (52, 53)), "sales": ("warm_heron", (70, 71, 72))}
#: Completed runs added to each sync, so a doubled count shows.
RUNS_PER_SYNC = 3

#: What the probe of a configured group's client says in each variant (untagged: see its own test).
PROBE = {
    "param-required": "objects_carry_group_id=yes group_parameter=honoured",
    "param-ignored": "objects_carry_group_id=yes group_parameter=ignored",
    "param-ignored-connections-tagged": "objects_carry_group_id=connections group_parameter=ignored",
    "param-refused": "objects_carry_group_id=yes group_parameter=refused",
    "no-groups-route": "objects_carry_group_id=yes group_parameter=honoured",
}

#: With the PAT alone (discovery and the groups it finds), the probe lines of each variant, as
#: "objects_carry_group_id group_parameter groups_route": no two variants show the same set.
DISCOVERY_PROBES = {
    "param-required": {"unknown not_sent listed", "yes honoured not_asked"},
    "param-ignored": {"unknown not_sent listed", "yes ignored not_asked"},
    "param-ignored-untagged": {
        "unknown not_sent listed",
        "no unverifiable not_asked",
        "no ignored not_asked",
    },
    "param-ignored-connections-tagged": {"unknown not_sent listed", "connections ignored not_asked"},
    "param-refused": {"unknown not_sent listed", "yes refused not_asked"},
    "no-groups-route": {"yes not_sent absent", "yes honoured not_asked"},
}


class Served:
    """An organization of two groups with distinct sync and run ids, served in one variant."""

    def __init__(self, variant: str, **organization: Any) -> None:
        self.variant = variant
        self.org = SimulatedOrganization(pat=PAT, id_form="int", variant=variant, **organization)  # type: ignore[arg-type]
        self.syncs: dict[str, tuple[int, ...]] = {}
        self.workspaces: dict[str, SimulatedWorkspace] = {}
        for name, (group_id, sync_ids) in GROUPS.items():
            workspace = SimulatedWorkspace()
            member = self.org.add_workspace(name, group_id=group_id, workspace=workspace)
            offset = len(self.syncs)  # connection ids, like sync ids, are unique across groups
            workspace.add_source(12 + offset, f"{name} warehouse")
            workspace.add_destination(40 + offset, f"{name} CRM")
            for sync_id in sync_ids:
                workspace.add_sync(
                    sync_id, label=f"{name} sync {sync_id}", source_id=12 + offset, destination_id=40 + offset
                )
                workspace.add_run(sync_id, "completed", records=10)  # history: the baseline, never counted
            self.syncs[name] = sync_ids
            self.workspaces[name] = member.workspace
        self.server = self.org.serve()
        self.url = base_url(self.server, "v2")
        self.exporters: list[Exporter] = []
        self.http = httpx.Client(timeout=30)

    def exporter(self, **config: Any) -> Exporter:
        settings: dict[str, Any] = {
            "api_url": self.url,
            "token": TokenSource(value=PAT),
            "api_version": "v2",
            "cache_ttl_seconds": 0.0,
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "refresh_timeout_seconds": 20.0,
            "exposition": Exposition.everything(),
            "max_requests_per_second": 0.0,
        } | config
        exporter = Exporter(Config(**settings))
        exporter.start()
        self.exporters.append(exporter)
        return exporter

    def discovery(self) -> Discovery:
        """The PAT as a discovery entry; "everything" labels what cannot be split by group."""
        return Discovery(
            name=self.url,
            api_url=self.url,
            token=TokenSource(value=PAT),
            api_version="v2",
            unscoped_name="everything",
        )

    def add_runs(self) -> None:
        """RUNS_PER_SYNC new finished runs on every sync (after the exporter has seen the history)."""
        for name, sync_ids in self.syncs.items():
            for sync_id in sync_ids:
                for _ in range(RUNS_PER_SYNC):
                    self.workspaces[name].add_run(sync_id, "completed", records=10)

    def scrape(self, exporter: Exporter) -> Scrape:
        response = self.http.get(f"http://127.0.0.1:{exporter.port}/metrics")
        assert response.status_code == 200
        return parse_scrape(response.text)

    def scrape_after_new_runs(self, exporter: Exporter) -> Scrape:
        """:meth:`add_runs`, then two scrapes (two refreshes at a TTL of 0: the second must count nothing
        again); the second one."""
        self.add_runs()
        self.scrape(exporter)
        return self.scrape(exporter)

    def close(self) -> None:
        for exporter in self.exporters:
            exporter.close()
        self.http.close()
        self.server.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Serve an organization in one variant (``Served``'s arguments); everything is closed at teardown."""
    started: list[Served] = []

    def start(variant: str, **organization: Any) -> Served:
        started.append(Served(variant, **organization))
        return started[-1]

    yield start
    for organization in started:
        organization.close()


@pytest.fixture(params=list(V2_VARIANTS))
def served(request: pytest.FixtureRequest, serve: Callable[..., Served]) -> Served:
    return serve(str(request.param))


def configured_groups(served: Served) -> Exporter:
    """Both groups named, as a workspaces file does."""
    workspaces = tuple(
        Workspace(name, served.url, TokenSource(value=PAT), "v2", group_id)
        for name, (group_id, _) in GROUPS.items()
    )
    return served.exporter(config_file="workspaces.yaml", workspaces=workspaces)


def owners(m: Scrape) -> dict[str, list[str]]:
    """For every sync id in the scrape, the workspaces showing it."""
    found: dict[str, list[str]] = {}
    for labels in m.all("census_sync_info"):
        found.setdefault(dict(labels)["sync_id"], []).append(dict(labels)["workspace"])
    return found


def all_syncs_seen(served: Served, exporter: Exporter) -> Callable[[], Scrape | None]:
    every = {str(sync_id) for ids in served.syncs.values() for sync_id in ids}

    def check() -> Scrape | None:
        m = served.scrape(exporter)
        return m if set(owners(m)) == every else None

    return check


def assert_each_sync_once_with_every_run_once(served: Served, m: Scrape) -> None:
    for sync_id, workspaces in owners(m).items():
        assert len(workspaces) == 1, (served.variant, sync_id, workspaces)
        runs = m.all("census_sync_runs_total", sync_id=sync_id, status="completed")
        assert sum(runs.values()) == RUNS_PER_SYNC, (served.variant, sync_id, runs)


def test_two_configured_groups_never_share_a_sync_and_count_every_run_once(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        exporter = configured_groups(served)
        wait_for(all_syncs_seen(served, exporter), what=f"every sync in {served.variant}")
        m = served.scrape_after_new_runs(exporter)
    assert_each_sync_once_with_every_run_once(served, m)
    if served.variant == "param-ignored-untagged":
        # Nothing tells the groups apart: each sync is watched once, and the overlap is said.
        overlap = m.all("census_v2_group_overlap_syncs")
        assert sorted(overlap.values()) == [0, 5], overlap
        assert len([r for r in caplog.records if "census_v2_group_overlap_syncs" in r.getMessage()]) == 1
        return
    for name, sync_ids in served.syncs.items():
        assert {sync_id: owners(m)[str(sync_id)] for sync_id in sync_ids} == {s: [name] for s in sync_ids}
        assert m.value("census_v2_group_overlap_syncs", workspace=name) in (None, 0)
    if served.variant in ("param-ignored", "param-ignored-connections-tagged", "param-refused"):
        foreign = [r.getMessage() for r in caplog.records if "other groups" in r.getMessage()]
        assert len([line for line in foreign if "/v2/syncs for group glad_otter" in line]) == 1, foreign
    if served.variant == "param-refused":
        refused = [
            r.getMessage() for r in caplog.records if "refused the group_id parameter" in r.getMessage()
        ]
        assert len(refused) == 2, refused  # once per client, never per page or refresh
        assert m.all("census_api_requests_total", code="400")  # the first list refused, once per client


def test_the_probe_line_names_what_the_api_did(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        exporter = configured_groups(served)
        wait_for(all_syncs_seen(served, exporter), what="every sync")
        m = served.scrape(exporter)
    probes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Census API probe")]
    marketing = [line for line in probes if "workspace marketing:" in line]
    assert marketing, probes
    assert all("api_version=v2" in line and "pagination=pagination_block" in line for line in probes)
    assert all("docs/census-api-versions.md" in line for line in probes)
    info = m.all("census_api_info", workspace="marketing")
    assert len(info) == 1
    labels = dict(next(iter(info)))
    if served.variant == "param-ignored-untagged":
        assert all("objects_carry_group_id=no" in line for line in probes), probes
        shown = {dict(k)["group_parameter"] for k in m.all("census_api_info")}
        assert shown == {"unverifiable", "ignored"}, shown  # the group that lost the overlap saw it
        return
    assert PROBE[served.variant] in marketing[0], (served.variant, marketing)
    expected = dict(pair.split("=") for pair in PROBE[served.variant].split())
    assert {key: labels[key] for key in expected} == expected


def test_a_pat_without_a_group_watches_each_group_apart(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    discovery = served.discovery()
    with caplog.at_level(logging.INFO):
        exporter = served.exporter(discoveries=(discovery,), workspace="everything")
        wait_for(all_syncs_seen(served, exporter), what=f"every sync in {served.variant}")
        m = served.scrape_after_new_runs(exporter)
    assert_each_sync_once_with_every_run_once(served, m)
    found = [r.getMessage() for r in caplog.records if " found workspace " in r.getMessage()]
    # Discovery finds both groups in every variant: from the groups listing, else from the records.
    assert len(found) == 2, found
    for name, (group_id, sync_ids) in GROUPS.items():
        label = group_id if served.variant == "no-groups-route" else name  # derived groups have no name
        assert any(f"(group_id {group_id})" in line for line in found), found
        if served.variant != "param-ignored-untagged":
            assert {owners(m)[str(s)][0] for s in sync_ids} == {label}, (served.variant, owners(m))
    probes = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Census API probe, discovery")
    ]
    route = "groups_route=absent" if served.variant == "no-groups-route" else "groups_route=listed"
    assert len(probes) == 1 and route in probes[0], probes
    # The probe lines name the variant: each variant's set is its own.
    shown = {
        " ".join(
            re.search(rf"{key}=(\S+)", r.getMessage()).group(1)  # type: ignore[union-attr]
            for key in ("objects_carry_group_id", "group_parameter", "groups_route")
        )
        for r in caplog.records
        if r.getMessage().startswith("Census API probe")
    }
    assert shown == DISCOVERY_PROBES[served.variant], (served.variant, shown)
    others = [variant for variant, lines in DISCOVERY_PROBES.items() if lines == shown]
    assert others == [served.variant]


def test_a_pat_whose_records_name_no_group_and_no_groups_route_is_watched_as_one(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., Served],
) -> None:
    served = serve("param-ignored-untagged")
    discovery = served.discovery()
    served.server.inject(Fault(r"^/api/v2/groups$", status=404))
    exporter = served.exporter(discoveries=(discovery,))
    m = wait_for(all_syncs_seen(served, exporter), what="every sync")
    assert {workspace for shown in owners(m).values() for workspace in shown} == {"everything"}
    assert_each_sync_once_with_every_run_once(served, served.scrape_after_new_runs(exporter))


PROBE_FAMILIES = ("census_api_info", "census_v2_group_overlap_syncs")


def probe_lines(text: str) -> list[str]:
    """Every exposition line (HELP and TYPE included) of the probe's two families."""
    return [line for line in text.splitlines() if any(name in line for name in PROBE_FAMILIES)]


def test_a_v1_workspace_has_no_probe_and_renders_neither_probe_family(
    harness_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        h = harness_factory()
        h.refresh()
        text = h.get("/metrics").text
        openmetrics = h.get("/metrics", Accept="application/openmetrics-text; version=1.0.0").text
    assert "census_up" in text
    # V1's shape is published: no probe runs, and a family with no samples is not rendered at all.
    assert probe_lines(text) == [] and probe_lines(openmetrics) == []
    assert not [r for r in caplog.records if r.getMessage().startswith("Census API probe")]


def test_a_v2_client_renders_the_probe_only_once_it_has_listed(serve: Callable[..., Served]) -> None:
    served = serve("param-ignored")  # the same code path in every variant
    served.server.inject(Fault(r"^/api/v2/syncs$", status=404, times=-1))  # 404: not retried
    exporter = configured_groups(served)
    wait_for(
        lambda: served.scrape(exporter).value("census_up", workspace="marketing") == 0,
        what="the first refresh to fail",
    )
    # Nothing was listed yet: what the API does with the group is unknown, so both families are absent.
    assert probe_lines(served.http.get(f"http://127.0.0.1:{exporter.port}/metrics").text) == []
    served.server.clear_faults()
    m = wait_for(all_syncs_seen(served, exporter), what="every sync once the list answers")
    assert len(m.all("census_api_info")) == 2


def test_a_pat_only_command_line_works_on_day_one(served: Served) -> None:
    # Exactly what a user types with nothing but the PAT: no group, no workspaces file.
    config = parse_config(
        [
            "--census.api-version=v2",
            f"--census.api-url={served.url}",
            "--census.cache-ttl=1",
            "--census.max-requests-per-second=0",
            "--web.listen-address=127.0.0.1:0",
        ],
        {"CENSUS_API_TOKEN": PAT},
    )
    exporter = Exporter(config)
    exporter.start()
    served.exporters.append(exporter)
    m = wait_for(all_syncs_seen(served, exporter), what=f"every sync in {served.variant}")
    if served.variant != "param-ignored-untagged":  # nothing there tells the groups apart
        for name, (group_id, sync_ids) in GROUPS.items():
            label = group_id if served.variant == "no-groups-route" else name
            assert {sync_id: owners(m)[str(sync_id)] for sync_id in sync_ids} == {
                s: [label] for s in sync_ids
            }
    served.add_runs()

    def counted() -> Scrape | None:
        scrape = served.scrape(exporter)
        total = sum(scrape.all("census_sync_runs_total", status="completed").values())
        return scrape if total >= RUNS_PER_SYNC * 5 else None

    wait_for(counted, what="every new run counted")
    for member in exporter.fleet.members():  # one more refresh each: nothing may be counted again
        member.refresher.trigger().result(timeout=30)
    assert_each_sync_once_with_every_run_once(served, served.scrape(exporter))


def test_a_group_parameter_refused_with_422_is_dropped_once_per_client(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., Served],
) -> None:
    served = serve("param-refused", refused_status=422)
    with caplog.at_level(logging.INFO):
        exporter = configured_groups(served)
        wait_for(all_syncs_seen(served, exporter), what="every sync")
        m = served.scrape_after_new_runs(exporter)
    assert_each_sync_once_with_every_run_once(served, m)
    for name, sync_ids in served.syncs.items():
        assert {owners(m)[str(s)][0] for s in sync_ids} == {name}
    refused = [r.getMessage() for r in caplog.records if "refused the group_id parameter" in r.getMessage()]
    assert len(refused) == 2 and all("HTTP 422" in line for line in refused), refused
    # One refused request per client, whatever the number of lists, pages and refreshes since.
    assert sum(m.all("census_api_requests_total", code="422").values()) == 2
    assert {dict(k)["group_parameter"] for k in m.all("census_api_info")} == {"refused"}


def test_a_named_group_beside_a_pat_watched_as_one_never_shares_a_sync(serve: Callable[..., Served]) -> None:
    # No groups route and no record naming a group: the discovery entry watches everything as one
    # workspace, beside a group named in the file. Each sync must still be watched, and counted, once.
    served = serve("param-ignored-untagged")
    served.server.inject(Fault(r"^/api/v2/groups$", status=404, times=-1))
    discovery = served.discovery()
    named = Workspace("marketing", served.url, TokenSource(value=PAT), "v2", GROUPS["marketing"][0])
    exporter = served.exporter(config_file="workspaces.yaml", workspaces=(named,), discoveries=(discovery,))
    wait_for(all_syncs_seen(served, exporter), what="every sync")
    both = ("marketing", "everything")
    wait_for(
        lambda: all(served.scrape(exporter).value("census_up", workspace=w) == 1 for w in both),
        what="both workspaces listed",
    )
    m = served.scrape_after_new_runs(exporter)
    assert_each_sync_once_with_every_run_once(served, m)
    assert {w for shown in owners(m).values() for w in shown} <= {"marketing", "everything"}
    assert sorted(m.all("census_v2_group_overlap_syncs").values()) == [0, 5]


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused the group_id parameter" in r.getMessage()]


def refresh_every_member(exporter: Exporter) -> None:
    for member in exporter.fleet.members():
        member.refresher.trigger().result(timeout=30)


def listed_again_with_new_runs(served: Served, exporter: Exporter) -> Callable[[], Scrape | None]:
    """Both groups up, and every run added by ``add_runs`` counted."""

    def check() -> Scrape | None:
        m = served.scrape(exporter)
        up = all(m.value("census_up", workspace=name) == 1 for name in GROUPS)
        counted = sum(m.all("census_sync_runs_total", status="completed").values()) == RUNS_PER_SYNC * 5
        return m if up and counted else None

    return check


def test_a_one_off_400_on_the_sync_list_does_not_switch_the_group_parameter_off(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., Served],
) -> None:
    # The API requires ?group_id=. One transient 400 must not make the client stop sending it: the
    # retry without it is refused too, so switching it off would fail every later list until a restart.
    served = serve("param-required")
    with caplog.at_level(logging.INFO):
        exporter = configured_groups(served)
        wait_for(all_syncs_seen(served, exporter), what="every sync")
        fault = Fault(r"^/api/v2/syncs$", status=400, body=b'{"status":"error","message":"Bad Request"}')
        served.server.inject(fault)
        refresh_every_member(exporter)
        assert fault.times == 0  # the one-off 400 was answered
        failed = served.scrape(exporter)
        refresh_every_member(exporter)
        served.add_runs()
        m = wait_for(listed_again_with_new_runs(served, exporter), what="both groups up, new runs counted")
    assert refused_lines(caplog) == []
    assert {dict(k)["group_parameter"] for k in m.all("census_api_info")} == {"honoured"}
    assert_each_sync_once_with_every_run_once(served, m)
    # The one-off 400 and the retry without the parameter (refused: "group_id is required"), once.
    assert sum(m.all("census_api_requests_total", code="400").values()) == 2
    assert sum(failed.all("census_api_requests_total", code="400").values()) == 2


def test_a_422_to_every_list_keeps_the_group_parameter_and_recovers_when_the_api_does(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., Served],
) -> None:
    # Every list refused, with or without the parameter: the parameter was not the cause, so the
    # client keeps sending it and asks again on each list; once the API answers, nothing has changed.
    served = serve("param-required")
    with caplog.at_level(logging.INFO):
        exporter = configured_groups(served)
        wait_for(all_syncs_seen(served, exporter), what="every sync")
        served.server.inject(Fault(r"^/api/v2/syncs$", status=422, times=-1))
        refresh_every_member(exporter)
        refresh_every_member(exporter)
        down = served.scrape(exporter)
        assert down.value("census_up", workspace="marketing") == 0
        assert down.value("census_up", workspace="sales") == 0
        served.server.clear_faults()
        served.add_runs()
        m = wait_for(listed_again_with_new_runs(served, exporter), what="both groups up, new runs counted")
    assert refused_lines(caplog) == []
    assert {dict(k)["group_parameter"] for k in m.all("census_api_info")} == {"honoured"}
    assert_each_sync_once_with_every_run_once(served, m)


@pytest.mark.slow  # a thousand groups listed, 10-15 s
@pytest.mark.serial  # counts this process's threads (see tests/threads.py)
def test_a_pat_whose_syncs_name_a_thousand_groups_watches_a_bounded_number_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
    serve: Callable[..., Served],
) -> None:
    # No groups route and every sync naming its own group: discovery derives the groups from the records.
    # Watching one workspace per group_id without a bound took 1,000 workspaces and 4,700 threads.
    org = SimulatedOrganization(pat=PAT, id_form="int", variant="no-groups-route")
    for number in range(1000):
        workspace = SimulatedWorkspace()
        workspace.add_sync(10_000 + number, label=f"sync {number}")
        org.add_workspace(f"group {number}", group_id=f"g{number:04d}", workspace=workspace)
    server = org.serve()
    config = parse_config(  # the PAT alone, every bound at its default
        [
            "--census.api-version=v2",
            f"--census.api-url={base_url(server, 'v2')}",
            "--census.max-requests-per-second=0",
            "--web.listen-address=127.0.0.1:0",
        ],
        {"CENSUS_API_TOKEN": PAT},
    )
    exporter = Exporter(config)
    http = httpx.Client(timeout=60)
    try:
        with caplog.at_level(logging.INFO):
            exporter.start()
            metrics = f"http://127.0.0.1:{exporter.port}/metrics"
            wait_for(
                lambda: http.get(f"http://127.0.0.1:{exporter.port}/readyz").status_code == 200, timeout=60
            )
            for discoverer in exporter.discoverers:  # a second listing: still one line
                discoverer.relist()
            m = parse_scrape(http.get(metrics).text)
        discovery = base_url(server, "v2")
        assert len(m.all("census_up")) == 200  # --census.max-workspaces-per-discovery's default
        assert len(exporter.fleet.members()) == 200
        assert m.value("census_discovery_workspaces", discovery=discovery) == 200
        assert m.value("census_discovery_workspaces_left_out", discovery=discovery) == 800
        said = [r.getMessage() for r in caplog.records if "left out by" in r.getMessage()]
        assert len(said) == 1 and "800 workspaces left out" in said[0], said
        threads = exporter_threads()
        # The exporter's own threads (tests/threads.py: not the simulator's), set by configuration: each
        # refresh worker with its deadline timer and the readers of two refreshes, discovery's thread and
        # the garbage collector's; not by the number of groups listed.
        bound = defaults.REFRESH_WORKERS * (2 + 2 * defaults.CONCURRENCY) + 1 + 1
        assert threads <= bound < 1000, threads
    finally:
        http.close()
        exporter.close()
        server.close()
