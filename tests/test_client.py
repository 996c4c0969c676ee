"""CensusClient against pytest-httpx mocks: paging, retries, errors. Nothing here touches a network."""

from __future__ import annotations

import random
import re

import httpx
import pytest
from pytest_httpx import HTTPXMock

from census_exporter.census._requests import RetryPolicy, parse_retry_after
from census_exporter.census.client import CensusClient
from census_exporter.census.errors import (
    AuthError,
    CensusAPIError,
    MalformedResponseError,
    NotFoundError,
    TransientError,
)
from tests.conftest import Recorder

BASE = "https://census.test/api/v1"
TOKEN = "secret-token:abc123XYZsecret"
FAR = 1e12  # a deadline that never arrives


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> CensusClient:
    return CensusClient(
        BASE,
        lambda: TOKEN,
        observer=recorder,
        sleep=recorder.sleep,
        rng=random.Random(1),
        retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.5, max_delay_seconds=4),
    )


def syncs_url(page: int) -> str:
    return f"{BASE}/syncs?page={page}&per_page=100"


def test_sends_the_whole_token_as_bearer(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    httpx_mock.add_response(url=syncs_url(1), json={"status": "success", "data": []})
    assert client.list_syncs(FAR).items == []
    request = httpx_mock.get_requests()[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_pages_by_pagination_block(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    httpx_mock.add_response(
        url=syncs_url(1),
        json={"status": "success", "data": [{"id": 1}], "pagination": {"next_page": 2, "last_page": 2}},
    )
    httpx_mock.add_response(
        url=syncs_url(2),
        json={"status": "success", "data": [{"id": 2}], "pagination": {"next_page": None, "last_page": 2}},
    )
    assert client.list_syncs(FAR).items == [{"id": 1}, {"id": 2}]


def test_pages_by_last_page_when_next_page_is_missing(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    for page in (1, 2, 3):
        httpx_mock.add_response(
            url=syncs_url(page),
            json={"status": "success", "data": [{"id": page}], "pagination": {"last_page": 3}},
        )
    assert [item["id"] for item in client.list_syncs(FAR).items] == [1, 2, 3]


def test_pages_by_legacy_next_link_without_following_its_host(
    httpx_mock: HTTPXMock, client: CensusClient
) -> None:
    httpx_mock.add_response(
        url=syncs_url(1),
        json={
            "status": "success",
            "data": [{"id": 1}],
            "next": "https://app.getcensus.com/api/v1/syncs?page=2&per_page=100",
        },
    )
    httpx_mock.add_response(url=syncs_url(2), json={"status": "success", "data": [{"id": 2}], "next": None})
    assert client.list_syncs(FAR).items == [{"id": 1}, {"id": 2}]
    assert {request.url.host for request in httpx_mock.get_requests()} == {"census.test"}


def test_a_next_link_without_a_page_number_ends_paging(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    # The sync-runs documentation's own example: "next" points back at the same URL.
    httpx_mock.add_response(
        url=syncs_url(1),
        json={"status": "success", "data": [{"id": 1}], "next": "https://app.getcensus.com/api/v1/syncs"},
    )
    assert client.list_syncs(FAR).items == [{"id": 1}]


def test_repeated_records_across_shifting_pages_are_dropped(
    httpx_mock: HTTPXMock, client: CensusClient
) -> None:
    httpx_mock.add_response(
        url=syncs_url(1),
        json={"status": "success", "data": [{"id": 1}, {"id": 2}], "pagination": {"next_page": 2}},
    )
    httpx_mock.add_response(
        url=syncs_url(2),
        json={"status": "success", "data": [{"id": 2}, {"id": 3}], "pagination": {"next_page": None}},
    )
    assert [item["id"] for item in client.list_syncs(FAR).items] == [1, 2, 3]


def test_sync_runs_page_reports_whether_more_exist(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    url = f"{BASE}/syncs/52/sync_runs?order=desc&page=1&per_page=2"
    httpx_mock.add_response(url=url, json={"status": "success", "data": [{"id": 94}, {"id": 93}]})
    page = client.list_sync_runs(52, 1, 2, FAR)
    assert page.items == [{"id": 94}, {"id": 93}]
    assert page.has_more  # a full page with no paging hints: there may be more
    httpx_mock.add_response(
        url=url, json={"status": "success", "data": [{"id": 94}], "pagination": {"next_page": None}}
    )
    assert not client.list_sync_runs(52, 1, 2, FAR).has_more


def test_retries_5xx_with_backoff_then_succeeds(
    httpx_mock: HTTPXMock, client: CensusClient, recorder: Recorder
) -> None:
    httpx_mock.add_response(url=syncs_url(1), status_code=502)
    httpx_mock.add_response(url=syncs_url(1), status_code=503)
    httpx_mock.add_response(url=syncs_url(1), json={"status": "success", "data": [{"id": 1}]})
    assert client.list_syncs(FAR).items == [{"id": 1}]
    assert len(recorder.slept) == 2
    assert 0.25 <= recorder.slept[0] <= 0.5
    assert 0.5 <= recorder.slept[1] <= 1.0  # exponential
    assert [code for _, code in recorder.observed] == ["502", "503", "200"]


def test_honours_retry_after_up_to_a_cap(
    httpx_mock: HTTPXMock, client: CensusClient, recorder: Recorder
) -> None:
    httpx_mock.add_response(url=syncs_url(1), status_code=429, headers={"Retry-After": "7"})
    httpx_mock.add_response(url=syncs_url(1), status_code=429, headers={"Retry-After": "3600"})
    httpx_mock.add_response(url=syncs_url(1), json={"status": "success", "data": []})
    client.list_syncs(FAR)
    assert recorder.slept == [7.0, 30.0]


def test_gives_up_after_bounded_attempts(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    for _ in range(3):
        httpx_mock.add_response(url=syncs_url(1), status_code=500)
    with pytest.raises(TransientError, match=r"GET /syncs: HTTP 500 after 3 attempts"):
        client.list_syncs(FAR)


def test_never_retries_past_the_deadline(httpx_mock: HTTPXMock, recorder: Recorder) -> None:
    now = [100.0]
    client = CensusClient(BASE, lambda: TOKEN, sleep=recorder.sleep, clock=lambda: now[0])
    httpx_mock.add_response(url=syncs_url(1), status_code=429, headers={"Retry-After": "20"})
    with pytest.raises(TransientError, match="no time left to retry"):
        client.list_syncs(deadline=110.0)
    assert recorder.slept == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried_and_never_show_the_token(
    httpx_mock: HTTPXMock, client: CensusClient, status: int
) -> None:
    httpx_mock.add_response(
        url=syncs_url(1), status_code=status, json={"status": status, "message": "Invalid credentials"}
    )
    with pytest.raises(AuthError) as raised:
        client.list_syncs(FAR)
    assert str(raised.value) == f"GET /syncs: Census API rejected the token ({status})"
    assert TOKEN not in repr(raised.value)
    assert len(httpx_mock.get_requests()) == 1


def test_404_is_not_found(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/sync_runs/5", status_code=404, json={"status": 404, "message": "Not found"}
    )
    with pytest.raises(NotFoundError, match=r"GET /sync_runs/\{id\}"):
        client.get_sync_run(5, FAR)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'["a", "list"]', "not a JSON object"),
        (b'{"status": "success", "data": {"id": 1}}', "'data' is not a list"),
        (b'{"status": "success"}', "'data' is not a list"),
    ],
)
def test_malformed_bodies_raise_one_clear_error(
    httpx_mock: HTTPXMock, client: CensusClient, body: bytes, message: str
) -> None:
    httpx_mock.add_response(url=syncs_url(1), content=body)
    with pytest.raises(MalformedResponseError, match=message):
        client.list_syncs(FAR)


def test_timeouts_and_connection_errors_are_retried_then_reported(
    httpx_mock: HTTPXMock, client: CensusClient, recorder: Recorder
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"), url=syncs_url(1))
    httpx_mock.add_exception(httpx.ConnectError(f"failed https://x/{TOKEN}"), url=syncs_url(1))
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=syncs_url(1))
    with pytest.raises(TransientError) as raised:
        client.list_syncs(FAR)
    assert "connection to census.test:443 failed (ConnectError) after 3 attempts" in str(raised.value)
    assert TOKEN not in str(raised.value)
    chained: BaseException | None = raised.value
    while chained is not None:  # a traceback prints the whole chain: none of it may hold the token
        assert TOKEN not in str(chained)
        chained = chained.__cause__ or (None if chained.__suppress_context__ else chained.__context__)
    assert [code for _, code in recorder.observed] == ["timeout", "connection_error", "connection_error"]


def test_other_4xx_are_errors_without_retry(httpx_mock: HTTPXMock, client: CensusClient) -> None:
    httpx_mock.add_response(url=syncs_url(1), status_code=422)
    with pytest.raises(CensusAPIError, match="unexpected HTTP 422"):
        client.list_syncs(FAR)


def test_a_failing_token_source_is_an_auth_error(httpx_mock: HTTPXMock) -> None:
    def broken() -> str:
        raise OSError("token file vanished")

    with pytest.raises(AuthError, match="no usable API token"):
        CensusClient(BASE, broken).list_syncs(FAR)
    assert httpx_mock.get_requests() == []


def test_retry_after_formats() -> None:
    assert parse_retry_after("12", 0) == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_endpoint_templates_never_hold_ids(
    httpx_mock: HTTPXMock, client: CensusClient, recorder: Recorder
) -> None:
    httpx_mock.add_response(
        url=re.compile(r".*/syncs/77/sync_runs.*"), json={"status": "success", "data": []}
    )
    httpx_mock.add_response(url=f"{BASE}/sync_runs/9", json={"status": "success", "data": {"id": 9}})
    client.list_sync_runs(77, 1, 25, FAR)
    client.get_sync_run(9, FAR)
    assert [endpoint for endpoint, _ in recorder.observed] == ["/syncs/{id}/sync_runs", "/sync_runs/{id}"]


V2_BASE = "https://census.test/api/v2"


@pytest.fixture
def v2_client(recorder: Recorder) -> CensusClient:
    return CensusClient(
        V2_BASE,
        lambda: TOKEN,
        observer=recorder,
        sleep=recorder.sleep,
        api_version="v2",
        group_id="glad_otter",
    )


def test_v2_sends_the_group_on_every_list_call_and_only_there(
    httpx_mock: HTTPXMock, v2_client: CensusClient, recorder: Recorder
) -> None:
    empty = {"status": "success", "data": [], "pagination": {"next_page": None}}
    for path in ("syncs", "sources", "activations", "syncs/77/sync_runs"):
        httpx_mock.add_response(url=re.compile(rf"{re.escape(V2_BASE)}/{path}\?.*"), json=empty)
    httpx_mock.add_response(url=f"{V2_BASE}/sync_runs/9", json={"status": "success", "data": {"id": "9"}})
    v2_client.list_syncs(FAR)
    v2_client.list_sources(FAR)
    v2_client.list_destinations(FAR)
    v2_client.list_sync_runs(77, 1, 25, FAR)
    assert v2_client.get_sync_run(9, FAR) == {"id": "9"}
    groups = {request.url.path: request.url.params.get("group_id") for request in httpx_mock.get_requests()}
    assert groups == {
        "/api/v2/syncs": "glad_otter",
        "/api/v2/sources": "glad_otter",
        "/api/v2/activations": "glad_otter",
        "/api/v2/syncs/77/sync_runs": "glad_otter",
        "/api/v2/sync_runs/9": None,  # one object by id: ids are unique across groups
    }
    assert [endpoint for endpoint, _ in recorder.observed] == [
        "/v2/syncs",
        "/v2/sources",
        "/v2/activations",
        "/v2/syncs/{id}/sync_runs",
        "/v2/sync_runs/{id}",
    ]


def test_v2_errors_name_the_v2_template(httpx_mock: HTTPXMock, v2_client: CensusClient) -> None:
    httpx_mock.add_response(url=re.compile(r".*/activations\?.*"), status_code=401)
    with pytest.raises(AuthError) as raised:
        v2_client.list_destinations(FAR)
    assert str(raised.value) == "GET /v2/activations: Census API rejected the token (401)"


def test_v1_never_sends_a_group(httpx_mock: HTTPXMock, client: CensusClient, recorder: Recorder) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/destinations?page=1&per_page=100", json={"status": "success", "data": []}
    )
    client.list_destinations(FAR)
    assert "group_id" not in httpx_mock.get_requests()[0].url.params
    assert recorder.observed == [("/destinations", "200")]
