"""CensusClient over real HTTP against a misbehaving server: stalls, shifting lists, huge bodies, bad URLs."""

from __future__ import annotations

import contextlib
import gc
import logging
import random
import socket
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from census_exporter.census._body import BODY_READ_INTERVAL_SECONDS
from census_exporter.census._requests import DEFAULT_MAX_RESPONSE_BYTES, RetryPolicy
from census_exporter.census.client import CensusClient, validate_base_url
from census_exporter.census.errors import (
    AuthError,
    CensusAPIError,
    MalformedResponseError,
    ResponseTooLargeError,
    TransientError,
)
from census_exporter.cli.assembly import parse_config
from census_exporter.config import TokenSource
from tests.hostile_server import HostileServer, Reply, Request, envelope, gzip_bomb

TOKEN = "secret-token:hostile-7d2c"
MiB = 1024 * 1024
FAR = 1e12


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as hostile:
        yield hostile


def make_client(url: str, **options: Any) -> CensusClient:
    settings: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=1),
        "sleep": lambda seconds: None,
        "rng": random.Random(3),
    } | options
    return CensusClient(url, lambda: TOKEN, **settings)


def in_seconds(seconds: float) -> float:
    return time.monotonic() + seconds


def dripping(one_byte_every: float) -> Reply:
    """Declares a megabyte, then sends it one byte at a time."""
    return Reply(
        content_length=1_000_000,
        body=lambda: (b" " for _ in range(1_000_000)),
        drip_seconds=one_byte_every,
    )


# ---------------------------------------------------------------- 1. stalled bodies


def test_a_dripping_body_ends_within_the_request_timeout(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = dripping(one_byte_every=1.0)
    client = make_client(server.url, request_timeout=3)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"GET /syncs: timed out after 3\.0s \(body still arriving\)"):
        client.list_syncs(FAR)
    assert time.monotonic() - started < 3 + 2


def test_a_dripping_body_ends_by_the_callers_deadline(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = dripping(one_byte_every=1.0)
    client = make_client(server.url, request_timeout=30)
    deadline = in_seconds(3)
    with pytest.raises(TransientError, match=r"body still arriving"):
        client.list_syncs(deadline)
    assert time.monotonic() < deadline + 2


@pytest.mark.slow  # 5-6 s: test-fast keeps to tests under ~5 s
def test_retries_of_a_dripping_body_stay_within_the_deadline(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = dripping(one_byte_every=0.5)
    client = make_client(
        server.url,
        request_timeout=1.5,
        retry=RetryPolicy(max_attempts=10, base_delay_seconds=0.1, max_delay_seconds=0.2),
        sleep=time.sleep,
    )
    deadline = in_seconds(5)
    with pytest.raises(TransientError):
        client.list_syncs(deadline)
    assert len(server.requests) >= 2
    assert time.monotonic() < deadline + 0.5 + 0.5  # at most one drip interval past it, plus slack


def test_a_body_that_stops_arriving_ends_after_one_read_interval(server: HostileServer) -> None:
    # The read timeout is shortened (through the request's timeout extension) once the headers are in.
    server.scripts["/api/v1/syncs"] = Reply(content_length=1000, body=lambda: iter([b"{"]), drip_seconds=60)
    client = make_client(server.url, request_timeout=30)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"GET /syncs: body stalled: no data for 2\.0s"):
        client.list_syncs(FAR)
    assert time.monotonic() - started < BODY_READ_INTERVAL_SECONDS + 2


# ---------------------------------------------------------------- 2. lists that shift while paged


class ShiftingSyncs:
    """``/syncs`` over a list that loses its newest record each time page 1 is served ``shifts`` times."""

    def __init__(self, records: int, shifts: int) -> None:
        self.ids = list(range(records, 0, -1))  # newest first, as the API orders them
        self.shifts_left = shifts
        self.deleted: list[int] = []

    def __call__(self, request: Request) -> Reply:
        page, per_page = int(request.query["page"]), int(request.query["per_page"])
        last_page = max(1, -(-len(self.ids) // per_page))
        body = envelope(
            [{"id": sync_id} for sync_id in self.ids[(page - 1) * per_page : page * per_page]],
            total_records=len(self.ids),
            page=page,
            next_page=page + 1 if page < last_page else None,
            last_page=last_page,
        )
        if page == 1 and self.shifts_left:
            self.shifts_left -= 1
            self.deleted.append(self.ids.pop(0))  # every later record moves up one place
        return Reply(body=body)


def test_a_list_that_shifted_once_is_read_again_and_nothing_is_lost(server: HostileServer) -> None:
    syncs = ShiftingSyncs(records=150, shifts=1)
    server.scripts["/api/v1/syncs"] = syncs
    listing = make_client(server.url).list_syncs(FAR)
    assert listing.complete
    assert sorted(item["id"] for item in listing.items) == sorted(syncs.ids)
    assert len(syncs.ids) == 149


def test_a_list_that_keeps_shifting_comes_back_incomplete_with_everything_seen(server: HostileServer) -> None:
    syncs = ShiftingSyncs(records=150, shifts=1000)
    server.scripts["/api/v1/syncs"] = syncs
    listing = make_client(server.url).list_syncs(FAR)
    assert not listing.complete
    page_one_reads = [request for request in server.requests if request.query["page"] == "1"]
    assert len(page_one_reads) == 3  # the first read and two re-reads
    ids = [item["id"] for item in listing.items]
    assert len(ids) == len(set(ids))
    assert set(syncs.ids) <= set(ids)
    assert set(syncs.deleted) <= set(ids)  # each was seen on the page 1 that was read before it went


def test_a_total_that_disagrees_with_the_records_read_marks_the_list_incomplete(
    server: HostileServer,
) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=envelope([{"id": 1}], total_records=2, next_page=None))
    listing = make_client(server.url).list_syncs(FAR)
    assert not listing.complete
    assert listing.items == [{"id": 1}]


def test_legacy_next_link_paging_is_taken_as_it_comes(server: HostileServer) -> None:
    def legacy(request: Request) -> Reply:
        page = int(request.query["page"])
        items = [{"id": sync_id} for sync_id in range(page * 100 - 99, min(page * 100, 150) + 1)]
        link = "https://app.getcensus.com/api/v1/syncs?page=2&per_page=100" if page == 1 else None
        return Reply(body=envelope(items, next_link=link))

    server.scripts["/api/v1/syncs"] = legacy
    listing = make_client(server.url).list_syncs(FAR)
    assert listing.complete
    assert [item["id"] for item in listing.items] == list(range(1, 151))
    assert len(server.requests) == 2


# ---------------------------------------------------------------- 3. response size and memory


def zeros(total: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        block = bytes(64 * 1024)
        for _ in range(total // len(block)):
            yield block

    return chunks


@pytest.fixture(scope="module")
def gigabyte_bomb() -> bytes:
    return gzip_bomb(1024 * MiB)


@pytest.mark.parametrize("inflated", [0, 1, MiB, 3 * MiB + 5])
def test_the_bomb_is_one_gzip_member_of_that_many_zeros_about_a_thousandth_its_size(inflated: int) -> None:
    bomb = gzip_bomb(inflated)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert inflater.decompress(bomb) == bytes(inflated)
    assert inflater.eof and not inflater.unused_data
    assert len(bomb) < 64 + inflated // 900


def test_a_declared_200_mb_body_is_refused_before_it_is_read_and_not_retried(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=zeros(200_000_000), content_length=200_000_000)
    client = make_client(server.url, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(ResponseTooLargeError) as raised:
        client.list_syncs(FAR)
    assert str(raised.value) == "GET /syncs: response larger than 16 MiB limit"
    assert len(server.requests) == 1


@contextlib.contextmanager
def measured_memory() -> Iterator[dict[str, int]]:
    """Traced allocations during the block: ``peak`` and ``retained`` (still alive at its end).

    The cyclic collector is off inside, so only memory freed by reference counting counts as released.
    """
    result: dict[str, int] = {}
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        yield result
        current, peak = tracemalloc.get_traced_memory()
        result["peak"], result["retained"] = peak - baseline, current - baseline
    finally:
        tracemalloc.stop()
        gc.enable()


def test_an_undeclared_200_mb_body_stops_at_the_limit_in_bounded_memory(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=zeros(200_000_000))
    client = make_client(server.url, max_response_bytes=1 * MiB)
    with (
        measured_memory() as memory,
        pytest.raises(ResponseTooLargeError, match=r"GET /syncs: response larger than 1 MiB limit"),
    ):
        client.list_syncs(FAR)
    assert memory["peak"] < 3 * MiB
    assert memory["retained"] < MiB // 4


def test_a_gzip_bomb_is_refused_without_inflating_it(server: HostileServer, gigabyte_bomb: bytes) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=gigabyte_bomb, headers={"Content-Encoding": "gzip"})
    client = make_client(server.url, max_response_bytes=1 * MiB)
    with measured_memory() as memory, pytest.raises(ResponseTooLargeError, match=r"larger than 1 MiB limit"):
        client.list_syncs(FAR)
    # The compressed bomb itself (1 MB) is the server's, allocated before the measurement began.
    assert memory["peak"] < 3 * MiB
    assert memory["retained"] < MiB // 4


def test_a_gzip_bomb_is_refused_at_the_default_limit(server: HostileServer, gigabyte_bomb: bytes) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=gigabyte_bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(ResponseTooLargeError, match=r"larger than 16 MiB limit"):
        make_client(server.url).list_syncs(FAR)
    assert 16 * MiB == DEFAULT_MAX_RESPONSE_BYTES


def test_a_compressed_body_within_the_limit_is_read(server: HostileServer) -> None:
    import gzip

    body = envelope([{"id": sync_id} for sync_id in range(1, 4)], next_page=None)
    server.scripts["/api/v1/syncs"] = Reply(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert make_client(server.url).list_syncs(FAR).items == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_a_malformed_body_is_not_kept_alive_by_the_error(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=b'{"data": [' + b'"x", ' * 150_000)
    client = make_client(server.url, max_response_bytes=1 * MiB)
    with measured_memory() as memory:
        with pytest.raises(MalformedResponseError, match="not JSON") as raised:
            client.list_syncs(FAR)
        kept = raised.value  # as a refresher keeping its last error would
    assert memory["retained"] < 200 * 1024, "the error still holds the body"
    del kept


# ---------------------------------------------------------------- 4. credentials in the URL


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1/api/v1",
        "https://bearer:secret-token:secret@app.getcensus.com/api/v1",
        "http://secret@127.0.0.1/api/v1",
        "http://user:secret@[::1/api/v1",
        "http://user:secret@127.0.0.1:secret/api/v1",
        "ftp://app.getcensus.com/api/v1?secret",
        "file:///etc/secret",
        "javascript:secret",
        "https:///api/v1/secret",
        "https://app.getcensus.com/api/v1?token=secret",
        "https://app.getcensus.com/api/v1#secret",
        "https://app.getcensus.com/api v1/secret",
        "https://app.getcensus.com/api/v1\nsecret",
    ],
)
def test_unsafe_base_urls_are_refused_without_quoting_them(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        CensusClient(url, lambda: TOKEN)
    assert "secret" not in str(raised.value)
    assert raised.value.__context__ is None or "secret" not in str(raised.value.__context__)
    with pytest.raises(ValueError):
        validate_base_url(url)


def test_requests_carry_only_the_bearer_token(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=envelope([], next_page=None))
    make_client(server.url).list_syncs(FAR)
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


# ---------------------------------------------------------------- 5. deeply nested JSON


def test_deeply_nested_json_is_a_malformed_response(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=b"[" * 100_000)
    with pytest.raises(MalformedResponseError, match=r"response is not JSON \(nested too deeply\)"):
        make_client(server.url).list_syncs(FAR)


# ---------------------------------------------------------------- 6. where and why a connection failed


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_refused_connection_names_the_host_and_port() -> None:
    port = closed_port()
    client = make_client(f"http://127.0.0.1:{port}/api/v1", retry=RetryPolicy(max_attempts=2))
    with pytest.raises(TransientError) as raised:
        client.list_sources(FAR)
    assert str(raised.value) == f"GET /sources: connection refused by 127.0.0.1:{port} after 2 attempts"


def test_a_dns_failure_names_the_host() -> None:
    client = make_client("https://no-such-host.invalid/api/v1")
    with pytest.raises(TransientError) as raised:
        client.list_sources(FAR)
    assert str(raised.value) == "GET /sources: DNS lookup failed for no-such-host.invalid after 1 attempts"


def test_a_failed_tls_handshake_names_the_host_and_reason(server: HostileServer) -> None:
    client = make_client(f"https://127.0.0.1:{server.port}/api/v1")
    with pytest.raises(TransientError) as raised:
        client.list_sources(FAR)
    message = str(raised.value)
    assert message.startswith(f"GET /sources: TLS handshake with 127.0.0.1:{server.port} failed: ")
    assert TOKEN not in message


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connection waits until it times out."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_connect_timeout_names_the_host(unanswered_port: int) -> None:
    client = make_client(f"http://127.0.0.1:{unanswered_port}/api/v1", request_timeout=1)
    with pytest.raises(TransientError) as raised:
        client.list_sources(FAR)
    assert str(raised.value) == (
        f"GET /sources: timed out connecting to 127.0.0.1:{unanswered_port} after 1 attempts"
    )


# ---------------------------------------------------------------- 7. debug request log


def test_each_attempt_logs_one_debug_line_without_token_or_url(
    server: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    replies = iter([Reply(status=500), Reply(body=envelope([{"id": 1}], next_page=None))])
    server.scripts["/api/v1/syncs/7/sync_runs"] = lambda request: next(replies)
    client = make_client(server.url, retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.01))
    client_log = "census_exporter.census.client"
    with caplog.at_level(logging.DEBUG, logger=client_log):
        client.list_sync_runs(7, 1, 25, FAR)
    lines = [
        record.getMessage() for record in caplog.records if record.name == "census_exporter.census.client"
    ]
    assert len(lines) == 2
    assert lines[0].startswith("GET /syncs/{id}/sync_runs: 500 in ")
    assert lines[1].startswith("GET /syncs/{id}/sync_runs: 200 in ")
    assert all(line.endswith(" ms") for line in lines)
    for line in lines:
        assert TOKEN not in line
        assert "page=" not in line
        assert "127.0.0.1" not in line


def test_every_failure_is_a_census_api_error(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(drop_after_headers=True, content_length=100)
    with pytest.raises(CensusAPIError, match=r"GET /syncs: connection to 127\.0\.0\.1:\d+ failed"):
        make_client(server.url).list_syncs(FAR)


# ---------------------------------------------------------------- 8. slow response headers


def test_slow_headers_end_within_the_request_timeout(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(head_drip_seconds=0.5)
    client = make_client(server.url, request_timeout=2)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"GET /syncs: timed out after 2\.0s"):
        client.list_syncs(FAR)
    assert time.monotonic() - started < 2 + 1


def test_slow_headers_end_by_the_callers_deadline(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(head_drip_seconds=0.5)
    client = make_client(server.url, request_timeout=30)
    deadline = in_seconds(2)
    with pytest.raises(TransientError, match=r"GET /syncs: timed out"):
        client.list_syncs(deadline)
    assert time.monotonic() < deadline + 1


def test_a_healthy_request_after_slow_headers_succeeds_on_the_same_pool(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs"] = Reply(head_drip_seconds=0.5)
    server.scripts["/api/v1/sources"] = Reply(body=envelope([{"id": 5}], next_page=None))
    client = make_client(server.url, request_timeout=1, max_connections=1)
    with pytest.raises(TransientError, match="timed out"):
        client.list_syncs(FAR)
    assert client.list_sources(in_seconds(5)).items == [{"id": 5}]


def test_a_connect_that_outlasts_the_deadline_ends_by_it(unanswered_port: int) -> None:
    client = make_client(f"http://127.0.0.1:{unanswered_port}/api/v1", request_timeout=30)
    deadline = in_seconds(1.5)
    with pytest.raises(TransientError, match="timed out connecting"):
        client.list_sources(deadline)
    assert time.monotonic() < deadline + 1


# ---------------------------------------------------------------- 9. work done parsing a response


def empty_objects(total_bytes: int) -> bytes:
    return b'{"data":[' + b"{}," * (total_bytes // 3) + b"{}]}"


def test_a_body_of_millions_of_empty_objects_is_refused_before_parsing(server: HostileServer) -> None:
    body = empty_objects(15 * MiB)
    server.scripts["/api/v1/syncs"] = Reply(body=body)
    client = make_client(server.url)
    with (
        measured_memory() as memory,
        pytest.raises(MalformedResponseError, match=r"GET /syncs: response has too many JSON objects"),
    ):
        client.list_syncs(FAR)
    # Parsed, the 5 million dicts would take about 400 MB; the raw body (plus its buffer's growth) is all.
    assert memory["peak"] < 40 * MiB


def test_a_response_at_the_container_limit_is_parsed() -> None:
    from census_exporter.census._requests import MAX_JSON_CONTAINERS, _parse_envelope

    within = bytearray(b'{"data":[' + b"[]," * (MAX_JSON_CONTAINERS - 3) + b"[]]}")  # the limit exactly
    parsed = _parse_envelope(within)
    assert not isinstance(parsed, str)
    assert len(parsed["data"]) == MAX_JSON_CONTAINERS - 2
    assert isinstance(_parse_envelope(within.replace(b"[]]}", b"[],{}]}")), str)


def test_a_list_page_with_far_more_records_than_asked_for_is_refused(server: HostileServer) -> None:
    items = [{"id": sync_id} for sync_id in range(1, 252)]
    server.scripts["/api/v1/syncs"] = Reply(body=envelope(items, next_page=None))
    with pytest.raises(MalformedResponseError, match=r"GET /syncs: page holds 251 records, 100 were"):
        make_client(server.url).list_syncs(FAR)


def test_a_runs_page_with_far_more_runs_than_asked_for_is_refused(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs/7/sync_runs"] = Reply(body=envelope([{"id": n} for n in range(1, 52)]))
    with pytest.raises(MalformedResponseError, match=r"page holds 51 records, 25 were asked for"):
        make_client(server.url).list_sync_runs(7, 1, 25, FAR)


def test_a_runs_page_within_the_slack_is_read(server: HostileServer) -> None:
    server.scripts["/api/v1/syncs/7/sync_runs"] = Reply(body=envelope([{"id": n} for n in range(1, 51)]))
    assert len(make_client(server.url).list_sync_runs(7, 1, 25, FAR).items) == 50


# ---------------------------------------------------------------- 10. ids that cannot be keys


@pytest.mark.parametrize("total", [3, 5], ids=["consistent", "shifted"])
def test_unhashable_ids_are_passed_through_for_the_models_to_skip(server: HostileServer, total: int) -> None:
    from census_exporter.census.models.fields import Skipped
    from census_exporter.census.models.syncs import parse_sync

    items: list[dict[str, object]] = [{"id": [3]}, {"id": 1}, {"id": {"a": 1}}]
    server.scripts["/api/v1/syncs"] = Reply(body=envelope(items, total_records=total, next_page=None))
    listing = make_client(server.url).list_syncs(FAR)
    assert sorted(map(str, listing.items)) == sorted(map(str, items))
    assert listing.complete == (total == 3)
    assert isinstance(parse_sync({"id": [3]}), Skipped)


# ---------------------------------------------------------------- 11. integers Python will not parse


def test_a_huge_integer_makes_only_its_own_value_unknown(server: HostileServer) -> None:
    from census_exporter.census.models.fields import Skipped
    from census_exporter.census.models.syncs import Sync, parse_sync

    huge = "9" * 5000
    body = (
        f'{{"status":"success","data":[{{"id":1,"label":"kept","unknown_field":{huge}}},'
        f'{{"id":{huge}}},{{"id":2,"records_processed":-{huge}}}],"pagination":{{"next_page":null}}}}'
    )
    server.scripts["/api/v1/syncs"] = Reply(body=body.encode())
    listing = make_client(server.url).list_syncs(FAR)
    first, second, third = listing.items
    assert first["id"] == 1 and first["label"] == "kept" and first["unknown_field"] == float("inf")
    assert third["id"] == 2
    assert isinstance(parse_sync(first), Sync)
    assert isinstance(parse_sync(second), Skipped)
    assert isinstance(parse_sync(third), Sync)


def test_integers_up_to_thirty_digits_keep_their_value(server: HostileServer) -> None:
    body = envelope([{"id": 10**29, "n": -(10**28)}], next_page=None)
    server.scripts["/api/v1/syncs"] = Reply(body=body)
    assert make_client(server.url).list_syncs(FAR).items == [{"id": 10**29, "n": -(10**28)}]


# ---------------------------------------------------------------- 12. Retry-After that only looks numeric


def test_a_unicode_digit_retry_after_is_ignored_over_http(server: HostileServer) -> None:
    replies = iter(
        [Reply(status=429, headers={"Retry-After": "²"}), Reply(body=envelope([{"id": 1}], next_page=None))]
    )
    server.scripts["/api/v1/syncs"] = lambda request: next(replies)
    slept: list[float] = []
    client = make_client(
        server.url, retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.01), sleep=slept.append
    )
    assert client.list_syncs(FAR).items == [{"id": 1}]
    assert len(slept) == 1 and slept[0] < 1


# ---------------------------------------------------------------- 13. tokens an HTTP header cannot carry


@pytest.mark.parametrize("token", ["secret-token:abcé", "secret-token:ab\u200bc", "secret-token:\x1bX"])
def test_a_token_that_is_not_printable_ascii_is_an_auth_error_naming_no_character(
    server: HostileServer, token: str
) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=envelope([], next_page=None))
    client = CensusClient(server.url, lambda: token, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(AuthError) as raised:
        client.list_syncs(FAR)
    assert str(raised.value) == "GET /syncs: the API token contains characters that are not printable ASCII"
    assert raised.value.__context__ is None
    assert server.requests == []


NON_ASCII_TOKEN = "secret-token:ADVERSARY1234567890é"


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_token_that_is_not_printable_ascii_is_refused_at_start_in_one_line(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(NON_ASCII_TOKEN + "\n", encoding="utf-8")
    argv = ["--census.token-file", str(token_file)] if source == "file" else []
    environ = {"CENSUS_API_TOKEN": NON_ASCII_TOKEN} if source == "env" else {}
    with pytest.raises(SystemExit) as exited:
        parse_config(argv, environ)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "the API token contains characters that are not printable ASCII" in error
    assert "ADVERSARY" not in error and "é" not in error


def test_a_rotated_token_that_is_not_printable_ascii_is_an_auth_error(
    server: HostileServer, tmp_path: Path
) -> None:
    server.scripts["/api/v1/syncs"] = Reply(body=envelope([{"id": 1}], next_page=None))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN, encoding="utf-8")
    client = CensusClient(server.url, TokenSource(path=str(token_file)), retry=RetryPolicy(max_attempts=1))
    assert client.list_syncs(FAR).items == [{"id": 1}]
    rotated = tmp_path / "token.new"
    rotated.write_text(NON_ASCII_TOKEN, encoding="utf-8")
    rotated.replace(token_file)
    with pytest.raises(AuthError) as raised:
        client.list_syncs(FAR)
    message = str(raised.value)
    assert message.endswith("the API token contains characters that are not printable ASCII")
    assert "ADVERSARY" not in message and "é" not in message
    assert len(server.requests) == 1
