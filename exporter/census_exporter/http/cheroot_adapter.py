"""The listener on cheroot, with its limits: every cheroot subclass of the exporter but the TLS adapter and
the answer writer (:mod:`.cheroot_writer`).

Connections wait in a selector, not a thread, until their request headers (and, with a body cap, their
body) are complete; the idle and header timeouts, the connection cap and the eviction of the longest-waiting
connection are enforced there (:class:`ServerLimits`). Answers go to the socket without cheroot's copies,
gathered, under a deadline (:mod:`.cheroot_writer`, whose subclasses only this module uses). cheroot's error
log goes through ``logging``.

The interface, used by :mod:`census_exporter.http.server` alone: :class:`ServerLimits`, and
``CherootServer(app, host, port, limits)`` with cheroot's own ``ssl_adapter``, ``prepare()``, ``serve()``,
``stop()``, ``ready``, ``socket`` and ``bind_addr``, plus :attr:`CherootServer.open_connections`.

cheroot internals relied on here (the answer writer's are named in :mod:`.cheroot_writer`), each exercised
by tests/test_server.py and tests/test_adversary_rendering.py:

- ``HTTPServer._connections._selector`` (the connection manager's selector: ``register``, ``unregister``,
  ``connections``): connections are parked there until their request is buffered, and evicted from it.
- ``makefile.StreamReader._read_buf`` / ``_read_pos``: headers read in the selector go there for the
  parser.
- ``ConnectionManager._expire(threshold)``, called by the selector loop every ``expiration_interval``:
  wrapped (:meth:`CherootServer.prepare`) so that its pass also cuts off requests not whole within the
  header timeout.
- ``HTTPConnection.last_used`` (the idle timeout's clock), ``HTTPServer.process_conn`` (overridden: a
  connection reaches a worker only once its request is buffered) and ``keep_alive_conn_limit``.
- ``HTTPServer.prepare()`` reporting a failed bind with ``[Errno N]`` in its message (read by the server).

Tested with cheroot 10.0.1 and 11.1.2 (the one locked in uv.lock); pyproject.toml allows ``>=10,<12``: a new
major version must pass these tests before the upper bound moves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import cheroot.server
import cheroot.wsgi

from census_exporter.http.cheroot_writer import Gateway, SocketWriter, make_file
from census_exporter.http.request_body import HEADERS_END, MAX_CHUNK_OVERHEAD, body_state
from census_exporter.http.wsgi import WSGIApp

#: The server's log lines keep the logger name they had before it became a package.
log = logging.getLogger("census_exporter.server")

REFUSED_LOG_INTERVAL_SECONDS = 60.0


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
    #: one takes a worker; a larger one is answered 413 unread, a badly framed one 400 (see
    #: :func:`~census_exporter.http.request_body.body_state`).
    max_body_bytes: int = 0
    #: How long a client may leave an answer untaken, on top of its size at MIN_SEND_BYTES_PER_SECOND (None:
    #: the idle timeout). A client that pipelines requests and reads no answer holds a worker this long.
    send_grace_seconds: float | None = None


class _Request(cheroot.server.HTTPRequest):
    """Notes when the request's first byte arrived (the scrape budget counts from then)."""

    arrived: float | None = None

    def parse_request(self) -> None:
        self.arrived = self.conn.request_arrived or time.monotonic()
        super().parse_request()


class _Connection(cheroot.server.HTTPConnection):
    """A connection that counts itself and gathers each request's headers before it needs a worker."""

    RequestHandlerClass = _Request

    def __init__(self, server: CherootServer, sock: socket.socket, makefile: Any = None) -> None:
        # Plain or TLS, the socket itself is the file: cheroot's own makefile would copy each body.
        super().__init__(server, sock, make_file)
        if isinstance(self.wfile, SocketWriter):
            self.wfile.grace = server.send_grace_seconds
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


class CherootServer(cheroot.wsgi.Server):
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
        self.gateway = Gateway
        self.max_request_header_size = limits.max_header_bytes
        # A backstop: the app refuses bodies over the cap unread (BODY_OVER_CAP_KEY); cheroot would refuse
        # one past this while reading it.
        self.max_request_body_size = (
            limits.max_body_bytes + MAX_CHUNK_OVERHEAD if limits.max_body_bytes else 0
        )
        self._max_body_bytes = limits.max_body_bytes
        self.send_grace_seconds = limits.send_grace_seconds
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
                if self._past_header_timeout(conn, now):
                    self._cut_off_slow(conn)
                    return
                # Straight back to the selector: cheroot's put_conn() would dispatch buffered data at once.
                selector = self._connections._selector  # type: ignore[attr-defined]
                selector.register(conn.socket.fileno(), selectors.EVENT_READ, data=conn)
                return
        conn.request_arrived = conn.headers_started or time.monotonic()
        conn.headers_started = None
        super().process_conn(conn)

    def prepare(self) -> None:
        """Bind, then have the connection manager's expiry pass cut off slow requests too.

        cheroot expires a connection only when it has been idle for the idle timeout since it was accepted
        or last answered, and the header timeout above is checked only when more bytes arrive: a request
        whose headers or body stop coming would wait the whole idle timeout, and be closed without a word.
        """
        super().prepare()
        manager = self._connections  # type: ignore[attr-defined]
        expire_idle = manager._expire

        def expire(threshold: float) -> None:
            self._expire_slow_requests()
            expire_idle(threshold)

        manager._expire = expire

    def _expire_slow_requests(self) -> None:
        """Close each waiting connection whose request began over the header timeout ago (selector thread)."""
        selector = self._connections._selector  # type: ignore[attr-defined]
        now = time.monotonic()
        slow = [
            (fd, conn)
            for fd, conn in selector.connections
            if isinstance(conn, _Connection) and self._past_header_timeout(conn, now)
        ]
        for fd, conn in slow:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(fd)
            self._cut_off_slow(conn)

    def _past_header_timeout(self, conn: _Connection, now: float) -> bool:
        """Whether ``conn``'s request began over the header timeout before ``now`` and is not whole yet."""
        return conn.headers_started is not None and now - conn.headers_started > self._header_timeout

    def _cut_off_slow(self, conn: _Connection) -> None:
        """Close ``conn``, whose request is not whole within the header timeout, saying what was missing."""
        buffered = conn.buffered()
        end = buffered.find(HEADERS_END)
        if end < 0:
            log.debug(
                "closing a connection from %s whose request headers took over %gs",
                conn.remote_addr,
                self._header_timeout,
            )
        else:
            log.debug(
                "closing a connection from %s whose request body was not complete %gs after the request "
                "began (its headers were; %d bytes of body received)",
                conn.remote_addr,
                self._header_timeout,
                len(buffered) - end - len(HEADERS_END),
            )
        conn.close()

    def _request_buffered(self, conn: _Connection, buffered: bytes) -> bool | None:
        """Whether the request (headers, and with a body cap its body) is all buffered, or over a limit
        cheroot answers; ``None`` after closing ``conn`` (a body that cannot be read)."""
        if HEADERS_END not in buffered:
            return len(buffered) > self.max_request_header_size
        if not self._max_body_bytes:
            return True
        state = body_state(buffered, self._max_body_bytes)
        if state.problem is not None:
            self._refuse_framing(conn, state.problem)
            return None
        conn.body_over_cap = state.over_cap
        return state.complete

    def _refuse_framing(self, conn: _Connection, problem: str) -> None:
        """Answer 400 to a request whose body cannot be read (no byte more is read), then close it.

        The answer is sent without blocking, from the selector thread: a client that takes nothing (its
        window full, or gone) is closed without it.
        """
        log.debug("answering 400 to a request from %s and closing: %s", conn.remote_addr, problem)
        body = f"bad request: {problem}\n".encode()
        answer = b"".join(
            (
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n",
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body),
                body,
            )
        )
        with contextlib.suppress(OSError, ValueError):
            conn.socket.setblocking(False)
            conn.socket.send(answer)
        conn.close()

    def _read_limit(self, buffered: bytes) -> int:
        """Bytes to read at most now: up to the header limit, and with a body cap the body's room too."""
        room = self.max_request_header_size + 1
        if self._max_body_bytes:
            room += self._max_body_bytes + MAX_CHUNK_OVERHEAD
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
