"""HTTP endpoints: ``/metrics`` (or the configured path), ``/``, ``/healthz`` and ``/readyz``.

A scrape asks the fleet of watched workspaces for a view within its budget (Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds`` header, or 10 s, minus a safety margin and minus the time the
request already waited), then serves it in the format the ``Accept`` header asks for, gzipped when the
client accepts it: the Census families rendered once per view, followed by the exporter's own metrics
rendered fresh.

The server is cheroot (docs/http-server.md says why): a fixed pool of worker threads, a selector for idle
connections, header and idle timeouts and a connection cap (:class:`ServerLimits`), TLS and basic auth
from the ``--web.config.file`` (:mod:`census_exporter.web_config`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import selectors
import socket
import ssl
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cheroot.makefile
import cheroot.server
import cheroot.ssl
import cheroot.wsgi
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from census_exporter.basic_auth import BasicAuth
from census_exporter.collector import CensusCollector
from census_exporter.landing import render_landing_page
from census_exporter.refresh.fleet import Fleet
from census_exporter.rendering import RenderedFamilies
from census_exporter.snapshot import FleetView
from census_exporter.web_config_reload import WebConfigSource

log = logging.getLogger(__name__)

DEFAULT_SCRAPE_TIMEOUT_SECONDS = 10.0
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0
# Left for rendering and sending, and for a loaded machine: 0.5 s, or 10% of long timeouts.
MIN_SCRAPE_MARGIN_SECONDS = 0.5
SCRAPE_MARGIN_SHARE = 0.1
GZIP_LEVEL = 5
HEADERS_END = b"\r\n\r\n"
REQUEST_ARRIVED_KEY = "census_exporter.request_arrived"
#: True in the environ when the listener's body cap (``ServerLimits.max_body_bytes``) refuses the body.
BODY_OVER_CAP_KEY = "census_exporter.body_over_cap"
REFUSED_LOG_INTERVAL_SECONDS = 60.0
ERROR_BODY = b"internal error\n"
UNAUTHORIZED_BODY = b"unauthorized\n"
BUSY_BODY = b"too many password checks in progress, retry\n"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def scrape_budget(header: str | None, elapsed_seconds: float = 0.0) -> float:
    """Seconds a scrape may still wait for fresh data.

    The scrape timeout is Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds`` header (10 s without
    one, and at most an hour: longer waits are no scrape, and past ``threading.TIMEOUT_MAX`` no wait at
    all); the budget keeps a margin of max(0.5 s, 10%) of it and subtracts ``elapsed_seconds``, the time
    since the request arrived, so the answer leaves before Prometheus gives up.
    """
    timeout = DEFAULT_SCRAPE_TIMEOUT_SECONDS
    if header:
        try:
            value = float(header)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            timeout = min(value, MAX_SCRAPE_TIMEOUT_SECONDS)
    margin = max(MIN_SCRAPE_MARGIN_SECONDS, SCRAPE_MARGIN_SHARE * timeout)
    return max(0.0, timeout - margin - max(0.0, elapsed_seconds))


class _ViewRendering:
    """The Census part of /metrics, rendered once per view for both formats, and compressed once per format.

    It changes only when a refresh swaps a workspace's snapshot, at most once per TTL each, while
    Prometheus servers may scrape far more often, and rendering thousands of series costs far more than
    serving bytes. Both formats share the rendered samples (only HELP and TYPE lines differ). For gzip the
    cache keeps the compressed prefix and a copy of the compressor's state after it, so each scrape
    compresses only the exporter's own metrics and still sends one ordinary gzip stream (several clients,
    httpx among them, read only the first member of a multi-member stream).
    """

    def __init__(self, collector: CensusCollector) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        #: One fresh rendering at a time: two side by side would double the process's peak memory.
        self._rendering = threading.Lock()
        self._view: FleetView | None = None
        #: The view the current one replaced (weakly: its snapshots must not outlive their last scrape); a
        #: scrape that still holds it gets the newer one instead.
        self._replaced: weakref.ref[FleetView] | None = None
        self._rendered: RenderedFamilies | None = None
        self._plain: dict[bool, list[bytes]] = {}
        self._gzip: dict[bool, tuple[bytes, Any]] = {}
        #: How long the last fresh rendering (and compression) took: a scrape that waits for a refresh must
        #: leave that much of its budget to render the new view.
        self.render_seconds = 0.0

    def body(self, view: FleetView, openmetrics: bool, tail: bytes, compress: bool) -> list[bytes]:
        """The Census exposition of ``view`` followed by ``tail``, gzipped if ``compress``, as the chunks
        to send: the cached rendering itself, never a copy of it (megabytes at thousands of syncs)."""
        with self._lock:
            if self._replaced is not None and view is self._replaced() and self._view is not None:
                # Fetched just before a swap, asked for just after: the newer view is cached (or being
                # rendered), and going back would render both again, one after the other.
                view = self._view
            elif self._view is not view:
                self._replaced = weakref.ref(self._view) if self._view is not None else None
                self._view, self._rendered, self._plain, self._gzip = view, None, {}, {}
            plain = self._plain.get(openmetrics)
            packed = self._gzip.get(openmetrics)
        if plain is None or (compress and packed is None):
            with self._rendering:
                return self._fresh(view, openmetrics, tail, compress)
        return self._cached(plain, packed, tail, compress)

    def _fresh(self, view: FleetView, openmetrics: bool, tail: bytes, compress: bool) -> list[bytes]:
        """Render (and compress) what the cache lacks; another scrape may have done it meanwhile."""
        with self._lock:
            current = self._view is view
            rendered = self._rendered if current else None
            plain = self._plain.get(openmetrics) if current else None
            packed = self._gzip.get(openmetrics) if current else None
        started = time.monotonic()
        fresh = rendered is None or (compress and packed is None)
        if rendered is None:
            rendered = self._collector.render(view)
            with self._lock:
                if self._view is view:
                    self._rendered = rendered
        if plain is None:
            plain = rendered.chunks(openmetrics)
            self._store(view, self._plain, openmetrics, plain)
        if compress and packed is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            pieces = [compressor.compress(chunk) for chunk in plain]
            pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
            packed = (b"".join(pieces), compressor)
            self._store(view, self._gzip, openmetrics, packed)
        if fresh:
            self.render_seconds = time.monotonic() - started
        return self._cached(plain, packed, tail, compress)

    @staticmethod
    def _cached(
        plain: list[bytes], packed: tuple[bytes, Any] | None, tail: bytes, compress: bool
    ) -> list[bytes]:
        if not compress or packed is None:
            return [*plain, tail]
        prefix, state = packed
        compressor = state.copy()
        return [prefix, compressor.compress(tail) + compressor.flush()]

    def _store(self, view: FleetView, cache: dict[bool, Any], key: bool, value: Any) -> None:
        with self._lock:
            if self._view is view:
                cache[key] = value


class ExporterApp:
    """The WSGI application."""

    def __init__(
        self,
        fleet: Fleet,
        collector: CensusCollector,
        registry: CollectorRegistry,
        telemetry_path: str,
        *,
        cache_ttl_seconds: float | None = None,
        own_metrics: Callable[[], RenderedFamilies] = RenderedFamilies,
        demo: bool = False,
    ) -> None:
        self._fleet = fleet
        self._demo = demo
        self._census = _ViewRendering(collector)
        self._registry = registry
        self._own_metrics = own_metrics
        self._telemetry_path = telemetry_path
        self._cache_ttl_seconds = cache_ttl_seconds

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if method not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"method not allowed\n")
        if path == self._telemetry_path:
            return self._metrics(environ, start_response)
        if path == "/healthz":
            return _respond(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            if self._fleet.ready:
                return _respond(start_response, "200 OK", b"ready\n")
            return _respond(start_response, "503 Service Unavailable", b"first refresh pending\n")
        if path == "/":
            # A person watching the page (make demo has no Prometheus) sees it move; the refreshes run in
            # the background under the same TTL and single flight as a scrape's, so this costs no more.
            self._fleet.trigger()
            return _respond(
                start_response,
                "200 OK",
                render_landing_page(
                    self._fleet.view,
                    self._telemetry_path,
                    cache_ttl_seconds=self._cache_ttl_seconds,
                    demo=self._demo,
                ),
                "text/html; charset=utf-8",
            )
        return _respond(start_response, "404 Not Found", b"not found\n")

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrived = environ.get(REQUEST_ARRIVED_KEY) or time.monotonic()
        budget = scrape_budget(
            environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"), time.monotonic() - arrived
        )
        view = self._fleet.view_within(max(0.0, budget - self._census.render_seconds))
        accept = canonical_accept(environ.get("HTTP_ACCEPT", ""))
        encoder, content_type = choose_encoder(accept)
        compress = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        openmetrics = accept == OPENMETRICS_ACCEPT
        # Census data from the per-view cache, then the exporter's own metrics (its API requests and request
        # budget, then the process's from the registry), as they are now.
        own = [*self._own_metrics().chunks(openmetrics), encoder(self._registry)]
        chunks = self._census.body(view, openmetrics, b"".join(own), compress)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(chunk) for chunk in chunks))))
        start_response("200 OK", headers)
        return chunks


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


@dataclass(frozen=True)
class ServerLimits:
    """What one client, or many, may hold of the server.

    Connections wait in a selector, not a thread, until their request headers are complete, so idle,
    half-open and slowly-sending connections cost a file descriptor and a few kilobytes each: a silent one
    until ``idle_timeout_seconds`` after it was accepted or last answered, one whose headers still trickle
    in ``header_timeout_seconds`` after their first byte. Only a complete request takes one of the
    ``workers`` threads.
    """

    workers: int = 8
    backlog: int = 128
    header_timeout_seconds: float = 10.0
    idle_timeout_seconds: float = 30.0
    max_connections: int = 512
    max_header_bytes: int = 16 * 1024
    shutdown_timeout_seconds: float = 2.0
    #: Largest request body taken (0: none; every endpoint of the metrics listener refuses bodies). With a
    #: cap, a body waits in the selector with its headers, under the header timeout, and only a complete
    #: one takes a worker; a larger one is answered 413 unread (see :func:`body_complete`).
    max_body_bytes: int = 0


class _Request(cheroot.server.HTTPRequest):
    """Notes when the request's first byte arrived (the scrape budget counts from then)."""

    arrived: float | None = None

    def parse_request(self) -> None:
        self.arrived = self.conn.request_arrived or time.monotonic()
        super().parse_request()


class _SocketWriter(cheroot.makefile.StreamWriter):
    """cheroot's socket writer without its copies, with gathered writes and a deadline.

    cheroot's writer appends each chunk to a buffer and then, for every ``send()``, copies what is left of
    the buffer into a new ``bytes``: a body of several megabytes, which the kernel takes a few hundred
    kilobytes at a time, was copied tens of times over (most of a warm scrape's time at thousands of syncs)
    and held twice per scrape in flight. This one sends the caller's bytes as they are and, on a plain
    socket, a response's chunks together (``sendmsg``): the small HELP/TYPE pieces between megabytes of
    samples would otherwise each cost a system call and a TCP segment of their own.

    Each send waits at most the socket's timeout (the idle timeout) for the client to take more, so a
    client that keeps reading, however slowly, is not cut off for being slow once; and the whole answer
    must be taken within that timeout plus its size at :data:`MIN_SEND_BYTES_PER_SECOND`, so a client
    reading a trickle cannot hold a worker for ever.
    """

    def __init__(self, sock: socket.socket, mode: str = "wb", bufsize: int = 0) -> None:
        super().__init__(sock, mode, bufsize)
        self._socket = sock
        #: TLS sockets have no ``sendmsg``.
        self.gathers = not isinstance(sock, ssl.SSLSocket)

    # cheroot's two stubs name the argument differently (``b`` and ``val``); no signature satisfies both.
    def write(self, data: Any, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        self.write_all([data])
        return len(data)

    def write_all(self, chunks: Sequence[Any]) -> None:
        """Send ``chunks`` one after the other, in as few system calls as the socket's buffer allows."""
        self._checkClosed()
        with self._write_lock:  # type: ignore[attr-defined]
            self._flush_unlocked()  # type: ignore[attr-defined]
            views = [memoryview(chunk).cast("B") for chunk in chunks if len(chunk)]
            total = sum(len(view) for view in views)
            try:
                self._send(views, total)
            finally:
                for view in views:
                    view.release()
        self.bytes_written += total

    def _send(self, views: list[memoryview], total: int) -> None:
        timeout = self._socket.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout + total / MIN_SEND_BYTES_PER_SECOND
        pending = list(views)
        shortened = False
        try:
            while pending:
                if deadline is not None and timeout is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("the client took too long to read the answer")
                    if remaining < timeout:  # only near the deadline: each settimeout() is a system call
                        self._socket.settimeout(remaining)
                        shortened = True
                if self.gathers:
                    sent = self._socket.sendmsg(pending[:_GATHERED_CHUNKS])
                else:  # sliced, since a TLS socket writes all it is given before it returns
                    sent = self._socket.send(pending[0][:_SEND_SLICE_BYTES])
                while sent:
                    head = pending[0]
                    if sent < len(head):
                        pending[0] = head[sent:]
                        break
                    sent -= len(head)
                    pending.pop(0)
        finally:
            if shortened:
                self._socket.settimeout(timeout)


#: The slowest a client may read an answer on average, after one idle timeout of grace: 64 KiB/s reads a
#: plain scrape of 5,000 syncs in under two minutes on top of it.
MIN_SEND_BYTES_PER_SECOND = 64 * 1024
#: The most one TLS ``send()`` is given: it waits until all of it is written.
_SEND_SLICE_BYTES = 1024 * 1024
#: Buffers per ``sendmsg()`` (Linux takes up to 1,024).
_GATHERED_CHUNKS = 256


def _make_file(sock: socket.socket, mode: str = "r", bufsize: int = -1) -> Any:
    """Reader or writer over ``sock`` (plain or TLS): cheroot's ``MakeFile`` with :class:`_SocketWriter`."""
    if "r" in mode:
        return cheroot.makefile.StreamReader(sock, mode, bufsize)
    return _SocketWriter(sock, mode, bufsize)


class _Connection(cheroot.server.HTTPConnection):
    """A connection that counts itself and gathers each request's headers before it needs a worker."""

    RequestHandlerClass = _Request

    def __init__(self, server: _CherootServer, sock: socket.socket, makefile: Any = None) -> None:
        # Plain or TLS, the socket itself is the file: cheroot's own makefile would copy each body.
        super().__init__(server, sock, _make_file)
        self.is_new = True
        # cheroot sets this only when a connection returns to its selector; the idle timeout (and its
        # expiry loop, which compares it) must count from the accept for connections parked there first.
        self.last_used = time.time()
        self.headers_started: float | None = None
        self.request_arrived: float | None = None
        #: With a body cap: the buffered request's body is over it (the app refuses it unread).
        self.body_over_cap = False
        self._counted = True
        server.connection_opened()

    def buffered(self) -> bytes:
        """Bytes read from the socket and not yet parsed."""
        rfile = self.rfile
        return bytes(rfile._read_buf[rfile._read_pos :])

    def read_available(self, limit: int) -> bytes | None:
        """Read what the socket has without blocking (up to ``limit`` bytes) into the parser's buffer.

        Returns the new bytes, or ``None`` when the peer closed or failed (a TLS handshake that went
        wrong included). The TLS handshake itself progresses here, in the selector thread, so a silent
        TLS client never holds a worker.
        """
        chunks: list[bytes] = []
        size = 0
        try:
            self.socket.setblocking(False)
            while size < limit:
                try:
                    chunk = self.socket.recv(limit - size)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not chunk:
                    return None
                chunks.append(chunk)
                size += len(chunk)
        except (OSError, ValueError) as error:
            # Scanners, plain HTTP on the TLS port, clients without an accepted certificate: their
            # problem, not the exporter's, and frequent enough that logging each would be noise.
            log.debug("connection from %s failed: %s", self.remote_addr, error)
            return None
        finally:
            with contextlib.suppress(OSError):
                self.socket.settimeout(self.server.timeout)
        data = b"".join(chunks)
        if data:
            rfile = self.rfile
            rfile._read_buf = rfile._read_buf[rfile._read_pos :] + data
            rfile._read_pos = 0
        return data

    def close(self) -> None:
        if self._counted:
            self._counted = False
            self.server.connection_closed()
        super().close()


class _Gateway(cheroot.wsgi.Gateway_10):
    def respond(self) -> None:
        """As cheroot's, but a whole answer of ``bytes`` chunks with its Content-Length goes to the socket
        writer at once, which sends the chunks together (see :class:`_SocketWriter`)."""
        response = self.req.server.wsgi_app(self.env, self.start_response)
        try:
            chunks = [chunk for chunk in response if chunk]
            writer = self.req.conn.wfile
            if not all(isinstance(chunk, bytes) for chunk in chunks):
                raise ValueError("WSGI Applications must yield bytes")
            if (
                isinstance(writer, _SocketWriter)
                and not self.req.chunked_write
                and self.remaining_bytes_out == sum(len(chunk) for chunk in chunks)
            ):
                self.req.ensure_headers_sent()
                writer.write_all(chunks)
                self.remaining_bytes_out = 0
            else:
                for chunk in chunks:
                    self.write(chunk)
        finally:
            self.req.ensure_headers_sent()
            if hasattr(response, "close"):
                response.close()

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        environ[REQUEST_ARRIVED_KEY] = getattr(self.req, "arrived", None) or time.monotonic()
        environ[BODY_OVER_CAP_KEY] = getattr(self.req.conn, "body_over_cap", False)
        return environ


class _CherootServer(cheroot.wsgi.Server):
    """cheroot, with its error log in the exporter's log format and the limits of :class:`ServerLimits`."""

    ConnectionClass = _Connection

    def __init__(self, app: WSGIApp, host: str, port: int, limits: ServerLimits) -> None:
        super().__init__(
            (host, port),
            app,
            numthreads=limits.workers,
            max=limits.workers,
            server_name="census-exporter",
            request_queue_size=limits.backlog,
            # cheroot's stubs say int; it only ever passes these to settimeout() and arithmetic.
            timeout=limits.idle_timeout_seconds,  # type: ignore[arg-type]
            shutdown_timeout=limits.shutdown_timeout_seconds,  # type: ignore[arg-type]
        )
        self.gateway = _Gateway
        self.max_request_header_size = limits.max_header_bytes
        # A backstop: the app refuses bodies over the cap unread (BODY_OVER_CAP_KEY); cheroot would refuse
        # one past this while reading it.
        self.max_request_body_size = (
            limits.max_body_bytes + _MAX_CHUNK_OVERHEAD if limits.max_body_bytes else 0
        )
        self._max_body_bytes = limits.max_body_bytes
        self.keep_alive_conn_limit = limits.max_connections
        self._max_connections = limits.max_connections
        self._header_timeout = limits.header_timeout_seconds
        self._open_connections = 0
        self._count_lock = threading.Lock()
        self._refused_logged_at = -math.inf

    def connection_opened(self) -> None:
        """Called for each accepted connection."""
        with self._count_lock:
            self._open_connections += 1

    def connection_closed(self) -> None:
        """Called once for each connection when it closes."""
        with self._count_lock:
            self._open_connections -= 1

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        return self._open_connections

    def process_conn(self, conn: _Connection) -> None:
        """Hand a connection to a worker only once its request headers are complete.

        cheroot would hand every new or readable connection straight to a worker, which then blocks
        reading headers: a few hundred silent or slow clients would hold every worker and queue real
        scrapes behind them. Here the selector thread gathers the headers without blocking, and a
        connection waits in the selector (a file descriptor and a small buffer, no thread) until they are
        complete, the header timeout passes, or the idle timeout closes it.
        """
        if conn.is_new:
            conn.is_new = False
            if self._open_connections > self._max_connections and not self._evict_oldest_waiting():
                self._refuse(conn)
                return
        if not self.ready:
            conn.close()
            return
        buffered = conn.buffered()
        complete = self._request_buffered(conn, buffered)
        if complete is None:
            return
        if not complete:
            data = conn.read_available(self._read_limit(buffered))
            if data is None:
                conn.close()
                return
            now = time.monotonic()
            if conn.headers_started is None and data:
                conn.headers_started = now
            buffered += data
            complete = self._request_buffered(conn, buffered)
            if complete is None:
                return
            if not complete:
                if conn.headers_started is not None and now - conn.headers_started > self._header_timeout:
                    log.debug(
                        "closing a connection whose request headers took over %gs", self._header_timeout
                    )
                    conn.close()
                    return
                # Straight back to the selector: cheroot's put_conn() would dispatch buffered data at once.
                selector = self._connections._selector  # type: ignore[attr-defined]
                selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)
                return
        conn.request_arrived = conn.headers_started or time.monotonic()
        conn.headers_started = None
        super().process_conn(conn)

    def _request_buffered(self, conn: _Connection, buffered: bytes) -> bool | None:
        """Whether the request (headers, and with a body cap its body) is all buffered, or over a limit
        cheroot answers; ``None`` after closing ``conn`` (a body that cannot be read)."""
        if HEADERS_END not in buffered:
            return len(buffered) > self.max_request_header_size
        if not self._max_body_bytes:
            return True
        state, over = _body_state(buffered, self._max_body_bytes)
        if state is None:
            log.debug("closing a connection whose request body is malformed")
            conn.close()
        conn.body_over_cap = over
        return state

    def _read_limit(self, buffered: bytes) -> int:
        """Bytes to read at most now: up to the header limit, and with a body cap the body's room too."""
        room = self.max_request_header_size + 1
        if self._max_body_bytes:
            room += self._max_body_bytes + _MAX_CHUNK_OVERHEAD
        return max(1, room - len(buffered))

    def _evict_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest in the selector, to make room for a new one.

        A flood of idle connections then costs its oldest members, not the next real scrape.
        """
        selector = self._connections._selector  # type: ignore[attr-defined]
        waiting = [conn for _, conn in selector.connections if isinstance(conn, _Connection)]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda conn: conn.last_used)
        with contextlib.suppress(KeyError, ValueError, OSError):
            selector.unregister(oldest.socket.fileno())
        oldest.close()
        now = time.monotonic()
        if now - self._refused_logged_at > REFUSED_LOG_INTERVAL_SECONDS:
            self._refused_logged_at = now
            log.warning(
                "%d connections open, the limit: closing the longest-waiting ones to admit new ones",
                self._max_connections,
            )
        return True

    def _refuse(self, conn: _Connection) -> None:
        now = time.monotonic()
        if now - self._refused_logged_at > REFUSED_LOG_INTERVAL_SECONDS:
            self._refused_logged_at = now
            log.warning(
                "refusing connections: %d open, the limit is %d",
                self._open_connections - 1,
                self._max_connections,
            )
        conn.close()

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """cheroot's complaints, as one log line (the traceback only at debug level)."""
        with_traceback = traceback and log.isEnabledFor(logging.DEBUG)
        log.log(level, "http server: %s", msg, exc_info=with_traceback)


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([^\r]*)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:[ \t]*([^\r]*)", re.IGNORECASE)
#: The longest chunk-size line taken (hex size, extensions, CRLF); a longer one is malformed.
_MAX_CHUNK_LINE = 64
#: Room for a chunked body's framing beyond the body cap when reading ahead in the selector.
_MAX_CHUNK_OVERHEAD = 4096


def body_complete(buffered: bytes, cap: int) -> bool | None:
    """Whether ``buffered`` (a request's header block and what followed it) holds its whole body.

    True as well when the body is over ``cap`` and will be refused unread: a ``Content-Length`` above it,
    or a chunked body whose well-formed chunks pass it (:func:`body_over_cap` tells these apart). ``None``
    for a body that cannot be read: two lengths, a length that is no number, or a chunked framing that is
    not one. The worker then reads only buffered bytes, so no client can hold it by sending slowly.
    """
    return _body_state(buffered, cap)[0]


def body_over_cap(buffered: bytes, cap: int) -> bool:
    """Whether the complete request in ``buffered`` (see :func:`body_complete`) has a body over ``cap``."""
    return _body_state(buffered, cap)[1]


def _body_state(buffered: bytes, cap: int) -> tuple[bool | None, bool]:
    """(complete, over the cap) of the body after the header block in ``buffered``."""
    end = buffered.index(HEADERS_END)
    head, body = buffered[: end + 2], buffered[end + 4 :]
    lengths = _CONTENT_LENGTH.findall(head)
    if _TRANSFER_ENCODING.search(head):
        return (None, False) if lengths else _chunked_state(body, cap)
    if not lengths:
        return True, False
    if len(lengths) > 1 or not lengths[0].strip().isdigit():
        return None, False
    length = int(lengths[0])
    return length > cap or len(body) >= length, length > cap


def _chunked_state(body: bytes, cap: int) -> tuple[bool | None, bool]:
    position, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", position, position + _MAX_CHUNK_LINE)
        if line_end < 0:
            return (None if len(body) - position >= _MAX_CHUNK_LINE else False), False
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return None, False
        size = int(size_text, 16)
        if size == 0:
            # The last chunk, then the empty line (trailers are not taken).
            tail = body[line_end + 2 : line_end + 4]
            if len(tail) < 2:
                return (False if b"\r\n".startswith(tail) else None), False
            return (True if tail == b"\r\n" else None), False
        total += size
        if total > cap:
            return True, True  # refused unread
        position = line_end + 2 + size + 2
        if len(body) < position:
            return False, False


class _TLSAdapter(cheroot.ssl.Adapter):
    """Wraps connections in the web config's current SSLContext (rotated certificates apply at once).

    The handshake is left to :meth:`_Connection.read_available`: cheroot would otherwise run it, blocking,
    in its accept loop, where one silent client stalls every new connection for the socket timeout.
    """

    def __init__(self, web_config: WebConfigSource, fallback: ssl.SSLContext) -> None:
        super().__init__("", "")
        self._web_config = web_config
        self._fallback = fallback

    def bind(self, sock: socket.socket) -> socket.socket:
        """Nothing to do before listening."""
        return sock

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        """The accepted socket in TLS, handshake pending."""
        context = self._web_config.current().ssl_context or self._fallback
        wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, {"HTTPS": "on", "wsgi.url_scheme": "https"}

    def get_environ(self) -> dict[str, str]:
        """WSGI environ entries for TLS connections."""
        return {"HTTPS": "on", "wsgi.url_scheme": "https"}

    def makefile(self, sock: socket.socket, mode: str = "r", bufsize: int = -1) -> Any:
        """Buffered reader or writer over the TLS socket."""
        if "r" in mode:
            return cheroot.makefile.StreamReader(sock, mode, bufsize)
        return cheroot.makefile.StreamWriter(sock, mode, bufsize)


BODY_REFUSED = b"request bodies are not accepted\n"


class _Guard:
    """Basic auth in front of the app, and a short 500 (one log line) when the app fails."""

    def __init__(
        self,
        app: WSGIApp,
        web_config: WebConfigSource | None,
        basic_auth: BasicAuth,
        accepts_bodies: bool = False,
    ) -> None:
        self._app = app
        self._web_config = web_config
        self._basic_auth = basic_auth
        #: Only a listener with a body cap (the webhook receiver's) passes bodies to its app.
        self.accepts_bodies = accepts_bodies

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = self._answer(environ, start_response)
        if environ.get("REQUEST_METHOD") == "HEAD":
            # The headers a GET would get (Content-Length included), and no body: cheroot would send it,
            # and a keep-alive client would read it as the start of its next response.
            return []
        return body

    def _answer(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        has_body = environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ
        if has_body and not self.accepts_bodies:
            # No endpoint takes a body. Refuse it unread and close: a body dripped byte by byte would
            # otherwise hold a worker while cheroot drains it, before even the auth check.
            start_response(
                "413 Payload Too Large",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(BODY_REFUSED))),
                    ("Connection", "close"),
                ],
            )
            return [BODY_REFUSED]
        if self._web_config is not None:
            users = self._web_config.current().users
            generation = self._web_config.generation
            result = (
                self._basic_auth.check(users, environ.get("HTTP_AUTHORIZATION"), generation)
                if users
                else "allowed"
            )
            if result == "busy":
                start_response(
                    "429 Too Many Requests",
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("Retry-After", "1"),
                        ("Content-Length", str(len(BUSY_BODY))),
                    ],
                )
                return [BUSY_BODY]
            if result == "denied":
                start_response(
                    "401 Unauthorized",
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("WWW-Authenticate", 'Basic realm="census-exporter"'),
                        ("Content-Length", str(len(UNAUTHORIZED_BODY))),
                    ],
                )
                return [UNAUTHORIZED_BODY]
        try:
            return self._app(environ, start_response)
        except Exception as error:
            log.error(
                "%s %s failed: %s: %s",
                environ.get("REQUEST_METHOD", "GET"),
                environ.get("PATH_INFO", "/"),
                type(error).__name__,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(ERROR_BODY)))],
                sys.exc_info(),
            )
            return [ERROR_BODY]


OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def canonical_accept(accept: str) -> str:
    """One of the two formats the exporter serves: OpenMetrics when ``Accept`` lists it with a q-value
    above 0, else the text format.

    prometheus_client copies the requested version into the content type; a client sending ever new
    versions must still get one of two answers, each rendered once per view.
    """
    qualities = _qualities(accept)
    return OPENMETRICS_ACCEPT if qualities.get("application/openmetrics-text", 0.0) > 0 else ""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` admits gzip: named with a q-value above 0 or, when not named at all,
    covered by a ``*`` above 0 (RFC 9110 12.5.3)."""
    qualities = _qualities(accept_encoding)
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0


def _qualities(header: str) -> dict[str, float]:
    """Each media range or coding of an ``Accept``-style header with its q-value (the highest when one is
    listed twice); a q-value that is not a number from 0 to 1 counts as 0."""
    qualities: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # also NaN
                    quality = 0.0
        qualities[name] = max(quality, qualities.get(name, 0.0))
    return qualities


def parse_listen_address(value: str) -> tuple[str, int]:
    """``[HOST]:PORT`` (``:10049``, ``127.0.0.1:10049``, ``[::1]:10049``) as (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected [HOST]:PORT, got {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


STOP_TIMEOUT_SECONDS = 3.0


#: Errors that mean "no IPv6 here" (a kernel without it, or no IPv6 address): the wildcard falls back to IPv4.
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT})


class HTTPServer:
    """The exporter's HTTP server (cheroot), serving in background threads until closed.

    It listens on ``host:port`` and on each of ``more_addresses``: one cheroot server (with its own worker
    pool and :class:`ServerLimits`) per address. An empty host is every interface, IPv4 and IPv6 alike: one
    IPv6 socket that also accepts IPv4 (``IPV6_V6ONLY`` off), or IPv4 only where the machine has no IPv6.
    The ports are bound in the constructor, so a taken port fails before anything starts.
    """

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        web_config: WebConfigSource | None = None,
        limits: ServerLimits | None = None,
        *,
        more_addresses: Sequence[tuple[str, int]] = (),
    ) -> None:
        limits = limits or ServerLimits()
        self.web_config = web_config
        self.basic_auth = BasicAuth()
        guarded = _Guard(app, web_config, self.basic_auth, accepts_bodies=limits.max_body_bytes > 0)
        startup = web_config.current() if web_config is not None else None
        context = startup.ssl_context if startup is not None else None
        self._servers: list[_CherootServer] = []
        try:
            for address in ((host, port), *more_addresses):
                self._servers.append(_listen(guarded, address, limits, web_config, context))
        except OSError:
            for server in self._servers:
                _release(server)
            raise
        self._threads = [
            threading.Thread(target=server.serve, name="http-server", daemon=True) for server in self._servers
        ]

    @property
    def port(self) -> int:
        """The first address's bound port (useful with port 0)."""
        return self.addresses[0][1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Each bound (host, port), in the order given; a wildcard host shows as ``::`` or ``0.0.0.0``."""
        return [(str(server.bind_addr[0]), int(server.bind_addr[1])) for server in self._servers]

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self._servers[0].ssl_adapter is not None

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed, over every address."""
        return sum(server.open_connections for server in self._servers)

    def start(self) -> None:
        """Begin answering requests."""
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop answering and release the sockets (also when never started), waiting at most ``timeout``.

        cheroot's stop() waits for its selector loop and its workers; a SIGTERM must still end the process
        promptly should one of them be stuck, so the stops run on daemon threads with a bound. Returns
        whether every server stopped (if not, its worker threads may keep the interpreter from exiting).
        """
        stoppers = [
            threading.Thread(target=server.stop, name="http-server-stop", daemon=True)
            for server in self._servers
        ]
        for stopper in stoppers:
            stopper.start()
        deadline = time.monotonic() + timeout
        for stopper in stoppers:
            stopper.join(max(0.0, deadline - time.monotonic()))
        if any(stopper.is_alive() for stopper in stoppers):
            log.warning("the HTTP server did not stop within %gs; exiting without waiting for it", timeout)
            return False
        return True


def _listen(
    app: WSGIApp,
    address: tuple[str, int],
    limits: ServerLimits,
    web_config: WebConfigSource | None,
    context: ssl.SSLContext | None,
) -> _CherootServer:
    """A cheroot server bound to ``address``; an empty host is dual-stack, or IPv4 without IPv6."""
    host, port = address
    # cheroot turns IPV6_V6ONLY off for "::", so one socket takes IPv4 (as ::ffff:a.b.c.d) and IPv6.
    candidates = [host] if host else (["::", "0.0.0.0"] if socket.has_ipv6 else ["0.0.0.0"])  # noqa: S104
    for index, candidate in enumerate(candidates):
        server = _CherootServer(app, candidate, port, limits)
        if context is not None:
            server.ssl_adapter = _TLSAdapter(web_config, context)  # type: ignore[arg-type]
        try:
            server.prepare()
        except OSError as raw:
            error = _bind_error(raw)
            _release(server)
            if index + 1 < len(candidates) and error.errno in _NO_IPV6:
                log.info("no IPv6 on this machine (%s): listening on IPv4 only", error.strerror)
                continue
            # The address in the error: with several, the operator must know which one failed.
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(error.errno, error.strerror, shown) from None
        return server
    raise AssertionError("unreachable: the last candidate returns or raises")


def _release(server: _CherootServer) -> None:
    """Close a server that is bound (or failed to bind) but was never started."""
    if server.ready:
        server.stop()
    elif server.socket is not None:
        server.socket.close()
        server.socket = None


def _bind_error(error: OSError) -> OSError:
    """cheroot reports a failed bind as one message with the errno inside; give it back its errno."""
    if error.errno is not None:
        return error
    found = re.search(r"\[Errno (\d+)\]", str(error))
    if found is None:
        return error
    number = int(found.group(1))
    return OSError(number, os.strerror(number))
