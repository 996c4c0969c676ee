"""The webhook listener against requests that are not whole, over a raw loopback socket: a stalled request
is cut off at the header timeout with one line saying what was missing (its headers or its body)."""

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
