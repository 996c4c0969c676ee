"""SimulatorServer: a real HTTP server on loopback that answers like the Census Management API (v1).

Knobs for tests, benchmarks and fault injection: the expected token, response latency, the pagination
style (``pagination`` block, legacy ``next`` link, or both), scripted faults (a status, headers and body
for the next N requests whose path matches a pattern, optionally stalled or dripped a byte at a time), and an
``after_answer`` hook that may change the workspace between two page reads.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from census_exporter.demo.workspace import JSON, SimulatedWorkspace

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
#: Requests kept in ``SimulatorServer.request_log``.
REQUEST_LOG_LENGTH = 100_000

Query = dict[str, list[str]]
# Answers every request itself, auth included: (path, query, Authorization header) -> (status, JSON body).
# Used by dialects that serve several workspaces or another API version (demo/organization.py).
Router = Callable[[str, Query, str | None], tuple[int, Any]]


@dataclass
class Fault:
    """A scripted answer for requests whose path matches ``pattern`` (``times`` < 0: forever)."""

    pattern: str
    status: int = 503
    body: bytes = b'{"status":"error","message":"simulated fault"}'
    headers: tuple[tuple[str, str], ...] = ()
    times: int = 1
    delay_seconds: float = 0.0
    #: When positive, the body is sent one byte per ``drip_seconds`` after headers announcing its full
    #: length: a stalled API that a per-read timeout never catches.
    drip_seconds: float = 0.0


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    """socketserver prints a traceback to stderr when a client goes away mid-answer; log it at debug."""

    # socketserver's default backlog of 5 drops the SYNs of a client opening 16 connections at once, and
    # each dropped one costs a 1 s retransmission: latency a real API front end would not add.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("simulator: a request from %s ended early", client_address, exc_info=True)


class SimulatorServer:
    """Serves a :class:`SimulatedWorkspace` over HTTP on 127.0.0.1 (or ``host``: 0.0.0.0 in a container)."""

    def __init__(
        self,
        workspace: SimulatedWorkspace,
        *,
        token: str = "secret-token:demo",  # noqa: S107 - the simulator's public token
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        pagination_style: str = "both",
        before_request: Callable[[], None] | None = None,
        router: Router | None = None,
        after_answer: Callable[[str, dict[str, list[str]]], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.token = token
        self.latency_seconds = latency_seconds
        self.pagination_style = pagination_style
        self.before_request = before_request
        self.router = router
        # Called with the path and query once an answer is computed but before it is sent: a change made
        # there lands exactly between two page reads, which a race with the client could not guarantee.
        self.after_answer = after_answer
        self.faults: list[Fault] = []
        self.requests: Counter[str] = Counter()
        #: The newest requests as (``time.monotonic()`` at arrival, path), in arrival order; bounded, so a
        #: long-running demo does not grow with it.
        self.request_log: deque[tuple[float, str]] = deque(maxlen=REQUEST_LOG_LENGTH)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"simulator": self})
        self._server = _QuietThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="census-simulator", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API base URL to give the exporter."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def start(self) -> SimulatorServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def inject(self, fault: Fault) -> None:
        """Answer matching requests with ``fault`` (first matching fault wins)."""
        with self._lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        """Remove every scripted fault."""
        with self._lock:
            self.faults.clear()

    def count(self, pattern: str) -> int:
        """How many requests so far had a path matching ``pattern``."""
        with self._lock:
            return sum(n for path, n in self.requests.items() if re.search(pattern, path))

    def take_fault(self, path: str) -> Fault | None:
        """The fault that answers this request, if any (its remaining count goes down)."""
        with self._lock:
            for fault in self.faults:
                if re.search(fault.pattern, path) and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
            return None

    def record(self, path: str) -> None:
        """Count one request, and log when it arrived."""
        arrived = time.monotonic()
        with self._lock:
            self.requests[path] += 1
            self.request_log.append((arrived, path))

    # ------------------------------------------------------------------ routing

    def answer(
        self, path: str, query: dict[str, list[str]], workspace: SimulatedWorkspace | None = None
    ) -> tuple[int, Any]:
        """Status and JSON body for an authorised V1 GET on ``workspace`` (default: the server's)."""
        if not path.startswith(API_PREFIX):
            return 404, {"status": 404, "message": "Not found"}
        route = path[len(API_PREFIX) :].rstrip("/")
        workspace = self.workspace if workspace is None else workspace
        with workspace.lock:
            if route == "/syncs":
                return 200, self._page(list(workspace.syncs.values()), query, path, newest_first=False)
            if route == "/sources":
                return 200, self._page(list(workspace.sources.values()), query, path, False)
            if route == "/destinations":
                return 200, self._page(list(workspace.destinations.values()), query, path, False)
            if match := re.fullmatch(r"/syncs/(\d+)/sync_runs", route):
                runs = workspace.runs_newest_first(int(match.group(1)))
                if runs is None:
                    return 404, {"status": 404, "message": "Sync not found"}
                if _first(query, "order", "desc") == "asc":
                    runs = runs[::-1]
                return 200, self._page(runs, query, path, newest_first=True)
            if match := re.fullmatch(r"/syncs/(\d+)", route):
                sync = workspace.syncs.get(int(match.group(1)))
                if sync is None:
                    return 404, {"status": 404, "message": "Sync not found"}
                return 200, {"status": "success", "data": sync}
            if match := re.fullmatch(r"/sync_runs/(\d+)", route):
                run = workspace.runs_by_id.get(int(match.group(1)))
                if run is None:
                    return 404, {"status": 404, "message": "Sync run not found"}
                return 200, {"status": "success", "data": run}
        return 404, {"status": 404, "message": "Not found"}

    def _page(self, items: list[JSON], query: dict[str, list[str]], path: str, newest_first: bool) -> JSON:
        del newest_first  # the order is already applied by the caller
        per_page = min(100, max(1, _int(_first(query, "per_page", "25"), 25)))
        page = max(1, _int(_first(query, "page", "1"), 1))
        last_page = max(1, -(-len(items) // per_page))
        chunk = [dict(item) for item in items[(page - 1) * per_page : page * per_page]]
        body: JSON = {"status": "success", "data": chunk}
        next_page = page + 1 if page < last_page else None
        if self.pagination_style in ("both", "pagination"):
            body["pagination"] = {
                "total_records": len(items),
                "per_page": per_page,
                "prev_page": page - 1 if page > 1 else None,
                "page": page,
                "next_page": next_page,
                "last_page": last_page,
            }
        if self.pagination_style in ("both", "next_link"):
            # Like the real API: an absolute URL on the public host, which clients must not follow.
            body["next"] = (
                f"https://app.getcensus.com{path}?page={next_page}&per_page={per_page}" if next_page else None
            )
        return body


def _first(query: dict[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    return values[0] if values else default


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


class _Handler(BaseHTTPRequestHandler):
    simulator: SimulatorServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the client's delayed
    # ACK of the headers (~40 ms on Linux) on a keep-alive connection, latency a real API front end lacks.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None

    def do_GET(self) -> None:
        simulator = self.simulator
        parts = urlsplit(self.path)
        simulator.record(parts.path)
        if simulator.latency_seconds:
            time.sleep(simulator.latency_seconds)
        fault = simulator.take_fault(parts.path)
        if fault is not None:
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            if fault.drip_seconds > 0:
                self._drip(fault.status, fault.body, fault.headers, fault.drip_seconds)
            else:
                self._send(fault.status, fault.body, fault.headers)
            return
        query = parse_qs(parts.query)
        if simulator.router is not None:
            if simulator.before_request is not None:
                simulator.before_request()
            status, payload = simulator.router(parts.path, query, self.headers.get("Authorization"))
        elif self.headers.get("Authorization") != f"Bearer {simulator.token}":
            body = {"status": 401, "message": "Invalid credentials for the requested resource."}
            self._send(401, json.dumps(body).encode())
            return
        else:
            if simulator.before_request is not None:
                simulator.before_request()
            status, payload = simulator.answer(parts.path, query)
        encoded = json.dumps(payload).encode()
        if simulator.after_answer is not None:
            simulator.after_answer(parts.path, query)
        self._send(status, encoded)

    def _send(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...], interval: float) -> None:
        """Like ``_send``, but the body goes out one byte per ``interval`` until the client hangs up."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        try:
            self.end_headers()
            for offset in range(len(body)):
                self.wfile.write(body[offset : offset + 1])
                time.sleep(interval)
        except OSError:
            return  # the client gave up, which is what a drip is for
