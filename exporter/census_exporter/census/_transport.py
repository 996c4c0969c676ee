"""An httpx transport whose every network operation ends by the request's wall-clock deadline.

httpx's timeouts bound each socket operation, not the request: a server that sends its status line and headers
one byte per second never trips a read timeout, and the request lasts as long as the server likes. Here every
connect, read and write of a connection has its socket timeout clamped to the time left until the deadline of
the request in progress, and one that starts after the deadline fails at once as a timeout. The deadline is
held per thread: httpx's sync client does its network I/O on the thread that sends the request.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

_deadline = threading.local()

_context_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS client context of the process: loading the CA bundle costs ~0.8 MiB and ~25 ms of CPU
    (holding the GIL), which a context per workspace would pay again for each of hundreds of workspaces."""
    global _context  # noqa: PLW0603 - built once, on first use
    with _context_lock:
        if _context is None:
            _context = httpx.create_ssl_context()
        return _context


@contextlib.contextmanager
def request_deadline(ends_at: float) -> Iterator[None]:
    """Bound every network operation of this thread inside the block by ``time.monotonic()`` ``ends_at``."""
    previous: float | None = getattr(_deadline, "ends_at", None)
    _deadline.ends_at = ends_at
    try:
        yield
    finally:
        _deadline.ends_at = previous


def _clamped(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before this thread's deadline; ``expired`` once it passed."""
    ends_at: float | None = getattr(_deadline, "ends_at", None)
    if ends_at is None:
        return timeout
    left = ends_at - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _clamped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking socket backend, with every stream it opens bound by the thread's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _clamped(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _clamped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose requests end by their :func:`request_deadline`."""

    def __init__(self, limits: httpx.Limits) -> None:
        # Not super().__init__(): httpx 0.28 builds its pool without a way to pass a network backend, and the
        # pool is all the parent's methods use.
        self._pool = httpcore.ConnectionPool(
            ssl_context=shared_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )
