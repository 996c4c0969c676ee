"""The webhook listener against requests that are not whole or not well framed, over a raw loopback socket:
a stalled request is cut off at the header timeout with one line saying what was missing (its headers or
its body), and a badly framed one is answered 400 at once, unread, and closed."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable

import pytest

from census_exporter.webhooks import receiver
from tests.conftest import Harness, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-wire-5c2a"
#: The webhook listener's header timeout in these tests (5 s in production).
HEADER_TIMEOUT = 0.5
_HEAD = f"POST /webhooks/census/{WORKSPACE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def _server_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "census_exporter.server"]


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (without blocking; nothing is expected to be answered)."""
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    assert data == b"", f"answered {data!r}"
    return True


@pytest.mark.parametrize("stalled", ["headers", "body stops", "body trickles"])
def test_a_stalled_request_is_cut_off_at_the_header_timeout_saying_what_was_missing(
    harness_factory: Callable[..., Harness],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stalled: str,
) -> None:
    limits = dataclasses.replace(receiver.WEBHOOK_LIMITS, header_timeout_seconds=HEADER_TIMEOUT)
    monkeypatch.setattr(receiver, "WEBHOOK_LIMITS", limits)
    caplog.set_level(logging.DEBUG, logger="census_exporter.server")
    workspace = workspace_with_syncs(1)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    assert harness.exporter.webhooks is not None
    sent = _HEAD.encode()
    if stalled != "headers":
        sent += b"Content-Length: 100\r\n\r\n" + b"{" * 10
    with socket.create_connection(("127.0.0.1", harness.exporter.webhooks.port), timeout=10) as sock:
        sock.sendall(sent)
        sock.setblocking(False)
        trickled = [10]

        def cut_off() -> bool:
            if stalled == "body trickles":
                try:
                    sock.send(b"{")  # a byte of body per poll, never all 100
                except (BlockingIOError, ConnectionError):
                    return True
                trickled[0] += 1
            return _closed(sock)

        # Well within the idle timeout (15 s), which was all that closed a request that stopped coming.
        wait_for(cut_off, timeout=5, what=f"the listener to cut off a request whose {stalled}")
    said = [line for line in _server_lines(caplog) if "closing a connection" in line]
    if stalled == "headers":
        assert len(said) == 1 and f"whose request headers took over {HEADER_TIMEOUT:g}s" in said[0], said
    else:
        assert len(said) == 1, said
        assert f"whose request body was not complete {HEADER_TIMEOUT:g}s after the request began" in said[0]
        received = int(said[0].split("; ")[1].split(" ")[0])
        assert 10 <= received <= trickled[0] and "headers took" not in said[0]
    assert all("{{" not in line for line in _server_lines(caplog))  # nothing of the body
    # The listener goes on answering.
    run = workspace.add_run(1, "failed")
    assert deliver(harness, webhook_event(1, int(run["id"])), secret=SECRET).status_code == 202


_BAD_FRAMINGS = {
    # Headers only: answered without waiting for (or reading) the body they announce.
    "both Content-Length and Transfer-Encoding": "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "a Transfer-Encoding other than chunked": "Transfer-Encoding: gzip\r\n\r\n",
    "more than one Content-Length": "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "a Content-Length that is not a number": "Content-Length: 2x\r\n\r\n{}",
    "a chunk size that is not a hex number": "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "a chunk not followed by CRLF": "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "no empty line after the last chunk (trailers are not taken)": (
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nTrailer: x\r\n\r\n"
    ),
    "a chunk size line over 64 bytes": f"Transfer-Encoding: chunked\r\n\r\n2;{'x' * 80}\r\n{{}}\r\n0\r\n\r\n",
}


def test_each_badly_framed_request_is_answered_400_unread_and_closed(
    harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="census_exporter.server")
    workspace = workspace_with_syncs(1)
    harness = start_receiving(harness_factory, workspace, SECRET, cache_ttl=3600.0)
    assert harness.exporter.webhooks is not None
    port = harness.exporter.webhooks.port
    for problem, rest in _BAD_FRAMINGS.items():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((_HEAD + rest).encode())
            answer = b""
            while chunk := sock.recv(4096):  # to the end: the listener closes after its answer
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 400 Bad Request", (problem, answer)
        assert "Connection: close" in lines[1:], (problem, answer)
        assert body == f"bad request: {problem}\n".encode(), (problem, answer)
        said = [line for line in _server_lines(caplog) if line.endswith(f": {problem}")]
        assert len(said) == 1 and said[0].startswith("answering 400 to a request from "), said
    assert not [line for line in _server_lines(caplog) if "Trailer" in line or "{}" in line]
    # The app never saw them (no result is counted), and the listener goes on answering.
    run = workspace.add_run(1, "failed")
    assert deliver(harness, webhook_event(1, int(run["id"])), secret=SECRET).status_code == 202
    scrape = harness.scrape()
    counted = scrape.all("census_webhook_requests_total", workspace=WORKSPACE)
    assert sum(counted.values()) == 1
