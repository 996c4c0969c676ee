"""How the listener writes answers (:mod:`census_exporter.http.cheroot_adapter`, its only user): the
cheroot subclasses that send a response to the socket without cheroot's copies, gathered, under a deadline.

:class:`Gateway` (cheroot's WSGI gateway) hands a whole answer of ``bytes`` chunks with its Content-Length
to :class:`SocketWriter` (the writer :func:`make_file` gives every connection), which sends the chunks
together. Tested with the cheroot versions named in :mod:`census_exporter.http.cheroot_adapter`.

cheroot internals relied on, each exercised by tests/test_server.py and tests/test_adversary_rendering.py:

- ``makefile.StreamWriter._write_lock``, ``_flush_unlocked()``, ``_checkClosed()``: the writer sends under
  cheroot's lock after flushing cheroot's own buffer.
- ``wsgi.Gateway_10.remaining_bytes_out``, ``HTTPRequest.chunked_write`` and ``ensure_headers_sent()``: a
  whole answer goes to the writer at once.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import cheroot.makefile
import cheroot.wsgi

from census_exporter.http.wsgi import BODY_OVER_CAP_KEY, REQUEST_ARRIVED_KEY

__all__ = ["MIN_SEND_BYTES_PER_SECOND", "Gateway", "SocketWriter", "make_file"]


class SocketWriter(cheroot.makefile.StreamWriter):
    """cheroot's socket writer without its copies, with gathered writes and a deadline.

    cheroot's writer appends each chunk to a buffer and then, for every ``send()``, copies what is left of
    the buffer into a new ``bytes``: a body of several megabytes, which the kernel takes a few hundred
    kilobytes at a time, was copied tens of times over (most of a warm scrape's time at thousands of syncs)
    and held twice per scrape in flight. This one sends the caller's bytes as they are and, on a plain
    socket, a response's chunks together (``sendmsg``): the small HELP/TYPE pieces between megabytes of
    samples would otherwise each cost a system call and a TCP segment of their own.

    Each send waits at most the socket's timeout (the idle timeout) for the client to take more, so a
    client that keeps reading, however slowly, is not cut off for being slow once; and the whole answer
    must be taken within that timeout (or the shorter :attr:`grace`) plus its size at
    :data:`MIN_SEND_BYTES_PER_SECOND`, so a client reading a trickle cannot hold a worker for ever.
    """

    #: ``ServerLimits.send_grace_seconds`` of the listener (set by the connection, cheroot_adapter.py).
    grace: float | None = None

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
        grace = timeout if self.grace is None or timeout is None else min(timeout, self.grace)
        deadline = None if grace is None else time.monotonic() + grace + total / MIN_SEND_BYTES_PER_SECOND
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


def make_file(sock: socket.socket, mode: str = "r", bufsize: int = -1) -> Any:
    """Reader or writer over ``sock`` (plain or TLS): cheroot's ``MakeFile`` with :class:`SocketWriter`."""
    if "r" in mode:
        return cheroot.makefile.StreamReader(sock, mode, bufsize)
    return SocketWriter(sock, mode, bufsize)


class Gateway(cheroot.wsgi.Gateway_10):
    """cheroot's WSGI gateway, handing a whole answer to :class:`SocketWriter` at once, and putting when the
    request arrived and whether its body is over the cap into the environ."""

    def respond(self) -> None:
        """As cheroot's, but a whole answer of ``bytes`` chunks with its Content-Length goes to the socket
        writer at once, which sends the chunks together (see :class:`SocketWriter`)."""
        response = self.req.server.wsgi_app(self.env, self.start_response)
        try:
            chunks = [chunk for chunk in response if chunk]
            writer = self.req.conn.wfile
            if not all(isinstance(chunk, bytes) for chunk in chunks):
                raise ValueError("WSGI Applications must yield bytes")
            if (
                isinstance(writer, SocketWriter)
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
