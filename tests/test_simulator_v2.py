"""The simulator's organization: several workspaces behind one server, as V1 (with the organization API)
and as the V2 dialect (PAT, group_id, /activations, string ids), over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from census_exporter.demo import Fault, SimulatedOrganization, SimulatorServer
from census_exporter.demo.organization import (
    GROUP_PARAMETER,
    GROUPS_ROUTE,
    MISSING_GROUP_STATUS,
    HostedWorkspace,
    activation_id,
    base_url,
)

PAT = "secret-token:test-pat"


class Organization:
    """A served organization: marketing and sales administered by the PAT's user, finance not."""

    def __init__(self, id_form: Any = "string") -> None:
        self.org = SimulatedOrganization(PAT, id_form=id_form)
        self.marketing = self._member("marketing", "glad_otter", "Marketing to Salesforce", 7)
        self.sales = self._member("sales", "warm_heron", "Sales to HubSpot", 9)
        self.finance = self._member("finance", "cold_ibis", "Finance to NetSuite", 11, administered=False)
        self.server: SimulatorServer = self.org.serve()
        self.v1 = httpx.Client(base_url=base_url(self.server, "v1"), timeout=5)
        self.v2 = httpx.Client(
            base_url=base_url(self.server, "v2"), headers={"Authorization": f"Bearer {PAT}"}, timeout=5
        )

    def _member(
        self, name: str, group_id: str, label: str, destination_id: int, administered: bool = True
    ) -> HostedWorkspace:
        member = self.org.add_workspace(name, group_id=group_id, administered=administered)
        member.workspace.add_destination(destination_id, f"{name} destination")
        # The same sync id in every workspace: groups must not leak into each other.
        member.workspace.add_sync(1, label=label, destination_id=destination_id)
        member.workspace.add_run(1, "completed")
        member.workspace.add_run(1, "failed", error_code="bad_credentials")
        return member

    def close(self) -> None:
        self.v1.close()
        self.v2.close()
        self.server.close()


@pytest.fixture
def organization() -> Iterator[Organization]:
    served = Organization()
    yield served
    served.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------- V1 organization API


def test_v1_discovery_lists_every_workspace_and_hands_out_keys_only_where_the_pat_is_admin(
    organization: Organization,
) -> None:
    listing = organization.v1.get("/workspaces", headers=bearer(PAT))
    assert listing.status_code == 200
    workspaces = listing.json()["data"]
    assert [w["name"] for w in workspaces] == ["marketing", "sales", "finance"]
    assert listing.json()["pagination"]["total_records"] == 3

    keys = {}
    for workspace in workspaces:
        answer = organization.v1.get(f"/workspaces/{workspace['id']}/api_key", headers=bearer(PAT))
        keys[workspace["name"]] = (answer.status_code, answer.json())
    assert keys["marketing"] == (200, {"api_key": organization.marketing.api_key})
    assert keys["sales"] == (200, {"api_key": organization.sales.api_key})
    assert keys["finance"][0] == 403
    assert organization.finance.api_key not in str(keys["finance"][1])


def test_each_v1_workspace_key_sees_only_its_own_workspace(organization: Organization) -> None:
    for member in (organization.marketing, organization.sales, organization.finance):
        syncs = organization.v1.get("/syncs", headers=bearer(member.api_key)).json()["data"]
        assert [(s["id"], s["label"]) for s in syncs] == [(1, member.workspace.syncs[1]["label"])]
        identity = organization.v1.get("/workspace", headers=bearer(member.api_key)).json()["data"]
        assert (identity["id"], identity["name"]) == (member.workspace_id, member.name)


@pytest.mark.parametrize(
    ("path", "token_of"),
    [
        ("/workspaces", "workspace key"),
        ("/workspaces/1001/api_key", "workspace key"),
        ("/syncs", "pat"),
        ("/syncs", "nobody"),
    ],
)
def test_v1_refuses_the_wrong_kind_of_token(organization: Organization, path: str, token_of: str) -> None:
    tokens = {"workspace key": organization.marketing.api_key, "pat": PAT, "nobody": "secret-token:x"}
    token = tokens[token_of]
    assert organization.v1.get(path, headers=bearer(token)).status_code == 401


def test_an_unknown_workspace_has_no_api_key(organization: Organization) -> None:
    assert organization.v1.get("/workspaces/999/api_key", headers=bearer(PAT)).status_code == 404


# ---------------------------------------------------------------------- V2 dialect


def test_v2_accepts_only_the_pat(organization: Organization) -> None:
    query = {GROUP_PARAMETER: "glad_otter"}
    workspace_key = bearer(organization.marketing.api_key)
    assert organization.v2.get("/syncs", params=query, headers=workspace_key).status_code == 401
    assert organization.v2.get("/syncs", params=query, headers={"Authorization": ""}).status_code == 401
    assert organization.v2.get("/syncs", params=query).status_code == 200


def test_v2_groups_listing_shows_only_the_groups_the_pat_can_see(organization: Organization) -> None:
    answer = organization.v2.get(GROUPS_ROUTE)
    assert answer.status_code == 200
    assert [(g["id"], g["name"]) for g in answer.json()["data"]] == [
        ("glad_otter", "marketing"),
        ("warm_heron", "sales"),
    ]


@pytest.mark.parametrize("path", ["/syncs", "/sources", "/activations", "/syncs/1/sync_runs"])
def test_v2_list_calls_without_a_group_are_refused(organization: Organization, path: str) -> None:
    answer = organization.v2.get(path)
    assert answer.status_code == MISSING_GROUP_STATUS == 400
    assert GROUP_PARAMETER in answer.json()["message"]


@pytest.mark.parametrize("group_id", ["no_such_group", "cold_ibis"])
def test_v2_groups_that_are_unknown_or_not_visible_are_not_found(
    organization: Organization, group_id: str
) -> None:
    assert organization.v2.get("/syncs", params={GROUP_PARAMETER: group_id}).status_code == 404


def test_v2_each_group_sees_its_own_workspace(organization: Organization) -> None:
    for member in (organization.marketing, organization.sales):
        syncs = organization.v2.get("/syncs", params={GROUP_PARAMETER: member.group_id}).json()["data"]
        assert [(s["label"], s["group_id"]) for s in syncs] == [
            (member.workspace.syncs[1]["label"], member.group_id)
        ]


def test_v2_serves_activations_with_string_ids_and_no_destinations(organization: Organization) -> None:
    body = organization.v2.get("/activations", params={GROUP_PARAMETER: "glad_otter"}).json()
    (activation,) = body["data"]
    assert activation["id"] == activation_id(7)
    assert re.fullmatch(r"[a-z]+_[a-z]+", activation["id"])
    assert activation["group_id"] == "glad_otter"
    sync = organization.v2.get("/syncs", params={GROUP_PARAMETER: "glad_otter"}).json()["data"][0]
    assert sync["destination_attributes"]["connection_id"] == activation["id"]
    assert organization.v2.get("/destinations", params={GROUP_PARAMETER: "glad_otter"}).status_code == 404


@pytest.mark.parametrize(("id_form", "id_type"), [("string", str), ("int", int)])
def test_v2_sync_and_run_ids_come_in_the_configured_form(id_form: str, id_type: type) -> None:
    served = Organization(id_form=id_form)
    try:
        group = {GROUP_PARAMETER: "glad_otter"}
        (sync,) = served.v2.get("/syncs", params=group).json()["data"]
        assert type(sync["id"]) is id_type
        runs = served.v2.get(f"/syncs/{sync['id']}/sync_runs", params=group).json()["data"]
        assert [run["status"] for run in runs] == ["failed", "completed"]
        assert all(type(run["id"]) is id_type and type(run["sync_id"]) is id_type for run in runs)
        assert all(run["sync_id"] == sync["id"] and run["group_id"] == "glad_otter" for run in runs)
        one = served.v2.get(f"/sync_runs/{runs[0]['id']}").json()["data"]
        assert (one["id"], one["error_code"]) == (runs[0]["id"], "bad_credentials")
        assert served.v2.get(f"/syncs/{sync['id']}", params=group).json()["data"]["id"] == sync["id"]
    finally:
        served.close()


def test_v2_pages_with_the_pagination_block_only(organization: Organization) -> None:
    for number in range(2, 6):
        organization.marketing.workspace.add_sync(number, label=f"extra {number}")
    seen: list[Any] = []
    page: int | None = 1
    while page is not None:
        body = organization.v2.get(
            "/syncs", params={GROUP_PARAMETER: "glad_otter", "page": page, "per_page": 2}
        ).json()
        assert "next" not in body
        seen.extend(sync["id"] for sync in body["data"])
        page = body["pagination"]["next_page"]
    assert seen == ["1", "2", "3", "4", "5"]


def test_v2_a_sync_of_another_group_is_not_found_in_this_one(organization: Organization) -> None:
    organization.sales.workspace.add_sync(42, label="only in sales")
    assert organization.v2.get("/syncs/42", params={GROUP_PARAMETER: "warm_heron"}).status_code == 200
    assert organization.v2.get("/syncs/42", params={GROUP_PARAMETER: "glad_otter"}).status_code == 404


def test_v2_rate_limits_through_the_ordinary_fault_injection(organization: Organization) -> None:
    organization.server.inject(Fault(r"^/api/v2/syncs$", status=429, headers=(("Retry-After", "7"),)))
    limited = organization.v2.get("/syncs", params={GROUP_PARAMETER: "glad_otter"})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert organization.v2.get("/syncs", params={GROUP_PARAMETER: "glad_otter"}).status_code == 200
    assert organization.server.count(r"^/api/v2/syncs$") == 2


def test_an_organization_needs_a_workspace_before_it_serves() -> None:
    with pytest.raises(ValueError, match="at least one workspace"):
        SimulatedOrganization(PAT).serve()


# ---------------------------------------------------------------------- V2 variants


def _two_groups(variant: Any) -> tuple[SimulatedOrganization, SimulatorServer, httpx.Client]:
    org = SimulatedOrganization(PAT, id_form="int", variant=variant)
    for name, group_id, sync_id in (("marketing", "glad_otter", 52), ("sales", "warm_heron", 70)):
        member = org.add_workspace(name, group_id=group_id)
        member.workspace.add_sync(sync_id, label=f"{name} sync")
        member.workspace.add_run(sync_id, "completed")
    server = org.serve()
    v2 = httpx.Client(base_url=base_url(server, "v2"), headers={"Authorization": f"Bearer {PAT}"}, timeout=5)
    return org, server, v2


@pytest.mark.parametrize(
    ("variant", "with_group", "without_group", "groups_status", "tagged"),
    [
        ("param-required", [52], 400, 200, True),
        ("param-ignored", [52, 70], [52, 70], 200, True),
        ("param-ignored-untagged", [52, 70], [52, 70], 200, False),
        ("param-ignored-connections-tagged", [52, 70], [52, 70], 200, False),
        ("param-refused", 400, [52, 70], 200, True),
        ("no-groups-route", [52], [52, 70], 404, True),
    ],
)
def test_each_v2_variant_lists_as_it_says(
    variant: str, with_group: Any, without_group: Any, groups_status: int, tagged: bool
) -> None:
    _, server, v2 = _two_groups(variant)
    try:
        for params, expected in (({GROUP_PARAMETER: "glad_otter"}, with_group), ({}, without_group)):
            answer = v2.get("/syncs", params=params)
            if isinstance(expected, int):
                assert answer.status_code == expected, (variant, params)
                continue
            assert answer.status_code == 200, (variant, params, answer.text)
            data = answer.json()["data"]
            assert [record["id"] for record in data] == expected, (variant, params)
            assert all(isinstance(record["id"], int) for record in data)  # integer ids, as V2 documents
            assert all(("group_id" in record) is tagged for record in data)
            assert answer.json()["pagination"]["total_records"] == len(expected)
        assert v2.get(GROUPS_ROUTE).status_code == groups_status
        run = v2.get("/syncs/70/sync_runs").json()["data"][0] if variant != "param-required" else None
        if run is not None:
            assert isinstance(run["id"], int) and run["sync_id"] == 70
    finally:
        v2.close()
        server.close()


def test_connections_tagged_names_the_group_on_sources_and_activations_only() -> None:
    org = SimulatedOrganization(PAT, id_form="int", variant="param-ignored-connections-tagged")
    for number, (name, group_id) in enumerate((("marketing", "glad_otter"), ("sales", "warm_heron"))):
        member = org.add_workspace(name, group_id=group_id)
        member.workspace.add_source(12 + number, f"{name} warehouse")
        member.workspace.add_destination(40 + number, f"{name} CRM")
        member.workspace.add_sync(52 + number, label=name, source_id=12 + number, destination_id=40 + number)
        member.workspace.add_run(52 + number, "completed")
    server = org.serve()
    try:
        with httpx.Client(
            base_url=base_url(server, "v2"), headers={"Authorization": f"Bearer {PAT}"}, timeout=5
        ) as v2:
            groups = {
                path: {str(r["id"]): r.get("group_id") for r in v2.get(path).json()["data"]}
                for path in ("/sources", "/activations", "/syncs", "/syncs/53/sync_runs")
            }
    finally:
        server.close()
    assert groups["/sources"] == {"12": "glad_otter", "13": "warm_heron"}
    assert sorted(groups["/activations"].values()) == ["glad_otter", "warm_heron"]
    assert groups["/syncs"] == {"52": None, "53": None}
    assert set(groups["/syncs/53/sync_runs"].values()) == {None}


def test_an_unknown_v2_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        SimulatedOrganization(PAT, variant="param-whatever")  # type: ignore[arg-type]


def test_the_stand_alone_simulator_offers_every_variant() -> None:
    from census_exporter.demo.__main__ import build_organization, build_parser
    from census_exporter.demo.organization import V2_VARIANTS

    for variant in V2_VARIANTS:
        assert build_parser().parse_args(["--v2-variant", variant]).v2_variant == variant
        organization, _ = build_organization(0, 3, variant)  # type: ignore[arg-type]
        marketing, sales = (set(m.workspace.syncs) for m in organization.members)
        assert organization.variant == variant
        assert (marketing & sales == set()) is (variant != "param-required")
