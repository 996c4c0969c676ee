"""Discovery's side of the client and models: V1 workspaces and their API keys, V2 groups.

pytest-httpx mocks for the HTTP client's own rules, the parsers on hostile records, and the whole path over
real HTTP against the simulated organization (V1 and V2).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpx import HTTPXMock

from census_exporter.census import client as client_module
from census_exporter.census._requests import RetryPolicy
from census_exporter.census.client import CensusClient
from census_exporter.census.errors import (
    AuthError,
    ForbiddenError,
    MalformedResponseError,
    ResponseTooLargeError,
    TransientError,
    UnsupportedCallError,
)
from census_exporter.census.models.fields import NAME_LIMIT, TRUNCATION_MARKER, Skipped
from census_exporter.census.models.organization import (
    Group,
    OrganizationWorkspace,
    parse_group,
    parse_organization_workspace,
)
from census_exporter.demo import SimulatedOrganization, SimulatorServer
from census_exporter.demo.organization import GROUPS_ROUTE, HostedWorkspace, base_url
from census_exporter.logs import REDACTED, RedactingFilter
from tests.conftest import Recorder

V1 = "https://census.test/api/v1"
V2 = "https://census.test/api/v2"
PAT = "secret-token:org-pat-7d2e9c41"
KEY = "secret-token:workspace-key-5b8f3a90"
FAR = 1e12  # a deadline that never arrives


ClientFactory = Callable[..., CensusClient]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(recorder: Recorder) -> Iterator[ClientFactory]:
    built: list[CensusClient] = []

    def build(base: str = V1, **options: Any) -> CensusClient:
        census = CensusClient(
            base,
            lambda: PAT,
            observer=recorder,
            sleep=recorder.sleep,
            rng=random.Random(1),
            retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.5, max_delay_seconds=4),
            **options,
        )
        built.append(census)
        return census

    yield build
    for census in built:
        census.close()


def page(items: list[Any], number: int, last: int, total: int | None = None) -> dict[str, Any]:
    pagination: dict[str, Any] = {"page": number, "last_page": last, "next_page": number + 1}
    if number >= last:
        pagination["next_page"] = None
    if total is not None:
        pagination["total_records"] = total
    return {"status": "success", "data": items, "pagination": pagination}


# ---------------------------------------------------------------------- V1: GET /workspaces


def test_list_workspaces_pages_through_the_organization_api(
    httpx_mock: HTTPXMock, make_client: ClientFactory, recorder: Recorder
) -> None:
    httpx_mock.add_response(
        url=f"{V1}/workspaces?page=1&per_page=100",
        json=page([{"id": 1, "name": "marketing"}, {"id": 2, "name": "sales"}], 1, 2, total=3),
    )
    httpx_mock.add_response(
        url=f"{V1}/workspaces?page=2&per_page=100", json=page([{"id": 3, "name": "finance"}], 2, 2, total=3)
    )
    listing = make_client().list_workspaces(FAR)
    assert [item["name"] for item in listing.items] == ["marketing", "sales", "finance"]
    assert listing.complete
    assert recorder.observed == [("/workspaces", "200"), ("/workspaces", "200")]
    assert httpx_mock.get_requests()[0].headers["Authorization"] == f"Bearer {PAT}"


def test_list_workspaces_returns_a_workspace_repeated_across_pages_once(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(
        url=f"{V1}/workspaces?page=1&per_page=100",
        json=page([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 2, "name": "b"}], 1, 2, total=3),
    )
    httpx_mock.add_response(
        url=f"{V1}/workspaces?page=2&per_page=100",
        json=page([{"id": 2, "name": "b"}, {"id": 3, "name": "c"}], 2, 2, total=3),
    )
    listing = make_client().list_workspaces(FAR)
    assert [item["id"] for item in listing.items] == [1, 2, 3]
    assert listing.complete


def test_list_workspaces_obeys_the_page_size_bound_of_every_list(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    records = [{"id": number, "name": f"w{number}"} for number in range(1, 202)]
    httpx_mock.add_response(url=f"{V1}/workspaces?page=1&per_page=100", json=page(records, 1, 1))
    with pytest.raises(MalformedResponseError, match=r"GET /workspaces: page holds 201 records"):
        make_client().list_workspaces(FAR)


def test_list_workspaces_retries_a_server_error_like_every_call(
    httpx_mock: HTTPXMock, make_client: ClientFactory, recorder: Recorder
) -> None:
    url = f"{V1}/workspaces?page=1&per_page=100"
    httpx_mock.add_response(url=url, status_code=503)
    httpx_mock.add_response(url=url, json=page([{"id": 1, "name": "a"}], 1, 1))
    assert make_client().list_workspaces(FAR).items == [{"id": 1, "name": "a"}]
    assert recorder.observed == [("/workspaces", "503"), ("/workspaces", "200")]
    assert len(recorder.slept) == 1


def test_list_workspaces_sends_nothing_once_the_deadline_has_passed(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    with pytest.raises(TransientError, match="deadline reached before the request"):
        make_client().list_workspaces(time.monotonic() - 1)
    assert httpx_mock.get_requests() == []


def test_a_rejected_pat_fails_the_listing_as_an_auth_error_without_retrying(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(
        url=f"{V1}/workspaces?page=1&per_page=100",
        status_code=401,
        json={"status": 401, "message": "Invalid credentials for the requested resource."},
    )
    with pytest.raises(AuthError) as raised:
        make_client().list_workspaces(FAR)
    assert not isinstance(raised.value, ForbiddenError)
    assert str(raised.value) == "GET /workspaces: Census API rejected the token (401)"
    assert len(httpx_mock.get_requests()) == 1


# ---------------------------------------------------------------------- V1: GET /workspaces/{id}/api_key


@pytest.mark.parametrize(
    "answer",
    [{"api_key": KEY}, {"status": "success", "data": {"api_key": KEY}}, {"api_key": f"  {KEY}\n"}],
    ids=["bare", "enveloped", "padded"],
)
def test_workspace_api_key_reads_the_key_bare_or_enveloped(
    httpx_mock: HTTPXMock, make_client: ClientFactory, recorder: Recorder, answer: dict[str, Any]
) -> None:
    httpx_mock.add_response(url=f"{V1}/workspaces/42/api_key", json=answer)
    assert make_client().workspace_api_key(42, FAR) == KEY
    assert recorder.observed == [("/workspaces/{id}/api_key", "200")]


def test_a_403_on_an_api_key_is_a_distinct_error_the_caller_can_skip(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(
        url=f"{V1}/workspaces/42/api_key",
        status_code=403,
        json={"status": 403, "message": "You must be an organization admin or workspace owner to do this."},
    )
    with pytest.raises(ForbiddenError) as raised:
        make_client().workspace_api_key(42, FAR)
    error = raised.value
    assert isinstance(error, AuthError)  # callers that stop on a rejected token still stop
    assert error.status == 403
    assert error.endpoint == "/workspaces/{id}/api_key"
    assert "organization admin" in str(error)
    assert PAT not in str(error) and PAT not in repr(error)
    assert len(httpx_mock.get_requests()) == 1


def test_a_401_on_an_api_key_is_a_rejected_token_not_a_skip(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(url=f"{V1}/workspaces/42/api_key", status_code=401, json={"status": 401})
    with pytest.raises(AuthError) as raised:
        make_client().workspace_api_key(42, FAR)
    assert not isinstance(raised.value, ForbiddenError)


def test_a_403_elsewhere_is_still_reported_as_a_rejected_token(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    # The refresher reports any AuthError as a rejected token; a 403 on a workspace call must stay one.
    httpx_mock.add_response(url=f"{V1}/syncs?page=1&per_page=100", status_code=403, json={"status": 403})
    with pytest.raises(AuthError) as raised:
        make_client().list_syncs(FAR)
    assert str(raised.value) == "GET /syncs: Census API rejected the token (403)"


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"api_key": None},
        {"api_key": ""},
        {"api_key": "   "},
        {"api_key": 12345678901},
        {"api_key": {"value": KEY}},
        {"api_key": [KEY]},
        {"status": "success", "data": {"key": KEY}},
        {"status": "success", "data": [{"api_key": KEY}]},
        {"api_key": "secret-token:" + "x" * 5000},
        {"api_key": "secret-token:ключ-secret"},
        {"api_key": "secret-token:line\nbreak-secret"},
    ],
    ids=[
        "absent",
        "null",
        "empty",
        "blank",
        "number",
        "nested",
        "list",
        "other-field",
        "data-list",
        "huge",
        "not-ascii",
        "control",
    ],
)
def test_an_unusable_api_key_is_malformed_and_never_quoted(
    httpx_mock: HTTPXMock, make_client: ClientFactory, answer: dict[str, Any]
) -> None:
    httpx_mock.add_response(url=f"{V1}/workspaces/42/api_key", json=answer)
    with pytest.raises(MalformedResponseError) as raised:
        make_client().workspace_api_key(42, FAR)
    message = str(raised.value)
    assert message.startswith("GET /workspaces/{id}/api_key: ")
    assert "secret-token" not in message and KEY not in repr(raised.value)


def test_an_api_key_answer_is_bounded_like_every_response(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(url=f"{V1}/workspaces/42/api_key", json={"api_key": "k" * 5000})
    with pytest.raises(ResponseTooLargeError):
        make_client(max_response_bytes=1024).workspace_api_key(42, FAR)


def test_a_key_read_is_redacted_from_logs_from_then_on(
    httpx_mock: HTTPXMock, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_key = "secret-token:freshly-read-3c9d0e"
    httpx_mock.add_response(url=f"{V1}/workspaces/7/api_key", json={"api_key": fresh_key})
    with caplog.at_level(logging.DEBUG):
        key = make_client().workspace_api_key(7, FAR)
    assert key == fresh_key
    assert fresh_key not in caplog.text  # the client never logs it

    redacted = logging.LogRecord("test", logging.ERROR, __file__, 1, "leaked %s", (key,), None)
    RedactingFilter().filter(redacted)
    assert redacted.getMessage() == f"leaked {REDACTED}"


# ---------------------------------------------------------------------- V2: GET /groups


def test_list_groups_pages_without_naming_a_group(
    httpx_mock: HTTPXMock, make_client: ClientFactory, recorder: Recorder
) -> None:
    httpx_mock.add_response(
        url=f"{V2}/groups?page=1&per_page=100", json=page([{"id": "glad_otter", "name": "Marketing"}], 1, 2)
    )
    httpx_mock.add_response(url=f"{V2}/groups?page=2&per_page=100", json=page([{"id": "warm_heron"}], 2, 2))
    listing = make_client(V2, api_version="v2", organization=True).list_groups(FAR)
    assert listing.items == [{"id": "glad_otter", "name": "Marketing"}, {"id": "warm_heron"}]
    assert recorder.observed == [("/v2/groups", "200"), ("/v2/groups", "200")]
    assert all("group_id" not in request.url.params for request in httpx_mock.get_requests())


def test_list_groups_on_a_client_of_one_group_still_names_none(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    httpx_mock.add_response(url=f"{V2}/groups?page=1&per_page=100", json=page([{"id": "glad_otter"}], 1, 1))
    assert make_client(V2, api_version="v2", group_id="glad_otter").list_groups(FAR).items == [
        {"id": "glad_otter"}
    ]


def test_the_groups_route_is_the_one_the_simulator_assumes() -> None:
    # Both sides hold the same unpublished assumption; correcting it must change both.
    assert "/" + client_module.GROUPS_PATH == GROUPS_ROUTE


# ---------------------------------------------------------------------- dialects


def test_calls_of_the_other_dialect_are_refused_before_any_request(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    v1 = make_client()
    v2 = make_client(V2, api_version="v2", organization=True)
    with pytest.raises(UnsupportedCallError, match=r"GET /groups: not part of API v1; V1 lists workspaces"):
        v1.list_groups(FAR)
    with pytest.raises(UnsupportedCallError, match=r"GET /v2/workspaces: not part of API v2"):
        v2.list_workspaces(FAR)
    with pytest.raises(UnsupportedCallError, match=r"GET /v2/workspaces/\{id\}/api_key: not part of API v2"):
        v2.workspace_api_key(42, FAR)
    assert httpx_mock.get_requests() == []


def test_a_v2_client_without_a_group_lists_every_group_unfiltered_and_names_none(
    httpx_mock: HTTPXMock, make_client: ClientFactory
) -> None:
    # A PAT-only configuration reads what the PAT sees; discovery then splits it by each record's group_id.
    records = [{"id": 1, "group_id": "glad_otter"}, {"id": 2, "group_id": "warm_heron"}, {"id": 3}]
    httpx_mock.add_response(url=f"{V2}/syncs?page=1&per_page=100", json=page(records, 1, 1))
    listing = make_client(V2, api_version="v2", organization=True).list_syncs(FAR)
    assert listing.items == records
    assert all("group_id" not in request.url.params for request in httpx_mock.get_requests())


def test_an_organization_client_names_no_group_and_v1_takes_none() -> None:
    with pytest.raises(ValueError, match="refused on an organization client"):
        CensusClient(V2, lambda: PAT, api_version="v2", group_id="glad_otter", organization=True)
    with pytest.raises(ValueError, match="refused with api_version v1"):
        CensusClient(V1, lambda: PAT, group_id="glad_otter")
    CensusClient(V2, lambda: PAT, api_version="v2").close()  # V2 without a group: every group's records
    CensusClient(V1, lambda: PAT, organization=True).close()  # V1 needs no group either way


# ---------------------------------------------------------------------- models


def test_a_workspace_record_becomes_an_organization_workspace() -> None:
    record = {
        "id": 1001,
        "name": "Marketing",
        "organization_id": 1,
        "created_at": "2023-09-05T19:42:42.672Z",
        "notification_emails": ["ops@example.com"],
    }
    assert parse_organization_workspace(record) == OrganizationWorkspace(id=1001, name="Marketing")
    assert parse_organization_workspace({"id": "1002", "name": "x"}) == OrganizationWorkspace(1002, "x")


@pytest.mark.parametrize("name", [None, "", "   ", 5, {"name": "nested"}, ["a"], "\x00\x01"], ids=repr)
def test_a_workspace_without_a_usable_name_is_named_by_its_id(name: object) -> None:
    assert parse_organization_workspace({"id": 7, "name": name}) == OrganizationWorkspace(7, "7")
    assert parse_organization_workspace({"id": 7}) == OrganizationWorkspace(7, "7")


def test_workspace_and_group_names_are_cleaned_and_bounded_like_sync_labels() -> None:
    huge = "Ä" * 100_000
    for parsed in (
        parse_organization_workspace({"id": 1, "name": huge}),
        parse_group({"id": 1, "name": huge}),
    ):
        assert not isinstance(parsed, Skipped)
        assert len(parsed.name) == NAME_LIMIT and parsed.name.endswith(TRUNCATION_MARKER)
    dirty = " Sales\tEU\x00\n\ud800 "
    assert parse_organization_workspace({"id": 1, "name": dirty}) == OrganizationWorkspace(
        1, "Sales EU \ufffd"
    )
    assert parse_group({"id": "g", "name": dirty}) == Group("g", "Sales EU \ufffd")


@pytest.mark.parametrize(
    "workspace_id", [None, "", "abc", True, 0, -3, 2**63, 1.5, "1e3", [1], {"id": 1}], ids=repr
)
def test_a_workspace_without_a_usable_id_is_skipped_with_a_reason(workspace_id: object) -> None:
    assert parse_organization_workspace({"id": workspace_id, "name": "x"}) == Skipped(
        "workspace without a usable id"
    )


@pytest.mark.parametrize("record", [None, [], "workspace", 42])
def test_a_record_that_is_not_an_object_is_skipped(record: object) -> None:
    assert isinstance(parse_organization_workspace(record), Skipped)
    assert isinstance(parse_group(record), Skipped)


def test_a_group_keeps_its_id_as_the_text_sent_and_falls_back_to_it_for_a_name() -> None:
    assert parse_group({"id": "glad_otter", "name": "Marketing"}) == Group("glad_otter", "Marketing")
    assert parse_group({"id": "glad_otter"}) == Group("glad_otter", "glad_otter")
    assert parse_group({"id": "007", "name": None}) == Group("007", "007")  # sent back exactly as listed
    assert parse_group({"id": 42, "name": {"x": 1}}) == Group("42", "42")


@pytest.mark.parametrize(
    "group_id",
    [
        None,
        "",
        " glad_otter",
        "glad otter",
        "a/../b",
        "_x",
        "x" * 129,
        True,
        0,
        2**63,
        1.5,
        ["g"],
        {"id": "g"},
    ],
    ids=repr,
)
def test_a_group_without_a_usable_id_is_skipped_with_a_reason(group_id: object) -> None:
    assert parse_group({"id": group_id, "name": "x"}) == Skipped("group without a usable id")


# ---------------------------------------------------------------------- over real HTTP


class Organization:
    """A served organization: marketing and sales administered by the PAT's user, finance not."""

    def __init__(self) -> None:
        self.org = SimulatedOrganization(PAT)
        self.marketing = self._member("marketing", "glad_otter", administered=True)
        self.sales = self._member("sales", "warm_heron", administered=True)
        self.finance = self._member("finance", "cold_ibis", administered=False)
        self.server: SimulatorServer = self.org.serve()

    def _member(self, name: str, group_id: str, administered: bool) -> HostedWorkspace:
        member = self.org.add_workspace(name, group_id=group_id, administered=administered)
        member.workspace.add_sync(1, label=f"{name} sync")
        return member

    def client(self, api_version: Any, token: str = PAT, **options: Any) -> CensusClient:
        return CensusClient(
            base_url(self.server, api_version), lambda: token, api_version=api_version, **options
        )


@pytest.fixture
def organization() -> Iterator[Organization]:
    served = Organization()
    yield served
    served.server.close()


def soon() -> float:
    return time.monotonic() + 30


def test_v1_discovery_over_http_lists_workspaces_and_reads_keys_where_allowed(
    organization: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    discovery = organization.client("v1")
    with caplog.at_level(logging.DEBUG):
        listing = discovery.list_workspaces(soon())
        parsed = [parse_organization_workspace(item) for item in listing.items]
        assert parsed == [
            OrganizationWorkspace(1001, "marketing"),
            OrganizationWorkspace(1002, "sales"),
            OrganizationWorkspace(1003, "finance"),
        ]
        keys: dict[str, str] = {}
        forbidden: list[str] = []
        for workspace in parsed:
            assert isinstance(workspace, OrganizationWorkspace)
            try:
                keys[workspace.name] = discovery.workspace_api_key(workspace.id, soon())
            except ForbiddenError as error:
                forbidden.append(workspace.name)
                logging.getLogger("discovery").warning("skipping workspace: %s", error)
        discovery.close()
    assert keys == {"marketing": organization.marketing.api_key, "sales": organization.sales.api_key}
    assert forbidden == ["finance"]
    assert "skipping workspace: GET /workspaces/{id}/api_key: not allowed" in caplog.text
    for key in (*keys.values(), organization.finance.api_key):
        assert key not in caplog.text

    workspace_client = organization.client("v1", token=keys["sales"])
    try:
        assert [sync["label"] for sync in workspace_client.list_syncs(soon()).items] == ["sales sync"]
    finally:
        workspace_client.close()


def test_v1_discovery_over_http_with_a_wrong_pat_is_an_auth_error(organization: Organization) -> None:
    discovery = organization.client("v1", token="secret-token:not-the-pat")
    try:
        with pytest.raises(AuthError, match=r"GET /workspaces: Census API rejected the token \(401\)"):
            discovery.list_workspaces(soon())
    finally:
        discovery.close()


def test_v2_discovery_over_http_lists_the_groups_the_pat_sees(organization: Organization) -> None:
    discovery = organization.client("v2", organization=True)
    try:
        listing = discovery.list_groups(soon())
    finally:
        discovery.close()
    groups = [parse_group(item) for item in listing.items]
    assert groups == [Group("glad_otter", "marketing"), Group("warm_heron", "sales")]

    group_client = organization.client("v2", group_id="warm_heron")
    try:
        assert [sync["label"] for sync in group_client.list_syncs(soon()).items] == ["sales sync"]
    finally:
        group_client.close()
