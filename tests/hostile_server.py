"""A small, scriptable, misbehaving HTTP/1.1 server for tests of the Census client.

Each path gets a script: a fixed :class:`Reply`, or a function of the :class:`Request` that returns one. A
reply can lie about its ``Content-Length``, drip its body, stream a body too large to hold in memory, or drop
the connection after the headers. The server listens on 127.0.0.1 only, answers one request per connection,
and :meth:`HostileServer.close` (or leaving its ``with`` block) stops it and every connection it holds, even
one in the middle of a slow drip.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

STATUS_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Request:
    """What the client sent: the path, its query parameters and its headers (names lower-cased)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    """One scripted response.

    ``body`` is bytes, or a function returning the chunks to send (for bodies too large to build at once).
    ``content_length`` overrides the declared length (``None``: the true length of bytes bodies, and no header
    with a chunk function, so the body ends when the connection closes). ``drip_seconds`` pauses before each
    chunk of ``chunk_size`` bytes; ``drop_after_headers`` closes the connection right after the headers.
    ``head_drip_seconds`` sends the status line and then a header that never ends, one byte per interval.
    """

    status: int = 200
    body: bytes | Callable[[], Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    chunk_size: int = 64 * 1024
    drip_seconds: float = 0.0
    drop_after_headers: bool = False
    head_drip_seconds: float = 0.0


Script = Reply | Callable[[Request], Reply]


class HostileServer:
    """Serves scripted replies on 127.0.0.1 from a background thread; unscripted paths get 404."""

    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        self.scripts: dict[str, Script] = dict(scripts or {})
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)

    @property
    def url(self) -> str:
        """Base URL to give the client, ending in ``/api/v1``."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> HostileServer:
        """Begin accepting connections."""
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every open connection, and wait (bounded) for the threads to end."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its peer
                connection.shutdown(socket.SHUT_RDWR)
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.add(connection)
            thread = threading.Thread(
                target=self._serve, args=(connection,), name="hostile-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            request = _read_request(connection)
            if request is not None:
                self.requests.append(request)
                self._send(connection, self._reply_for(request))
        except OSError:
            pass  # the client gave up or close() cut the connection: both are expected here
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _reply_for(self, request: Request) -> Reply:
        script = self.scripts.get(request.path)
        if script is None:
            return Reply(status=404, body=b'{"status": 404, "message": "Not found"}')
        return script if isinstance(script, Reply) else script(request)

    def _send(self, connection: socket.socket, reply: Reply) -> None:
        if reply.head_drip_seconds:
            self._drip_head(connection, reply)
            return
        headers = {"Content-Type": "application/json", "Connection": "close"} | reply.headers
        length = reply.content_length
        if length is None and isinstance(reply.body, bytes):
            length = len(reply.body)
        if length is not None:
            headers["Content-Length"] = str(length)
        reason = STATUS_REASONS.get(reply.status, "Status")
        head = f"HTTP/1.1 {reply.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        connection.sendall((head + "\r\n").encode("latin-1"))
        if reply.drop_after_headers:
            return
        for chunk in _chunks(reply):
            if reply.drip_seconds and self._stopping.wait(reply.drip_seconds):
                return
            if self._stopping.is_set():
                return
            connection.sendall(chunk)

    def _drip_head(self, connection: socket.socket, reply: Reply) -> None:
        head = f"HTTP/1.1 {reply.status} {STATUS_REASONS.get(reply.status, 'Status')}\r\nX-Slow: ".encode()
        endless = itertools.chain((head[i : i + 1] for i in range(len(head))), itertools.repeat(b"a"))
        for byte in endless:
            if self._stopping.wait(reply.head_drip_seconds):
                return
            connection.sendall(byte)


def _chunks(reply: Reply) -> Iterator[bytes]:
    if not isinstance(reply.body, bytes):
        yield from reply.body()
        return
    for start in range(0, len(reply.body), reply.chunk_size):
        yield reply.body[start : start + reply.chunk_size]


def _read_request(connection: socket.socket) -> Request | None:
    connection.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        received = connection.recv(65536)
        if not received:
            return None
        data += received
        if not data[:1].isalpha():  # not HTTP (a TLS ClientHello, say): answer as a plain server would
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    parts = urlsplit(target)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return Request(path=parts.path, query=query, headers=headers)


def gzip_bomb(inflated_bytes: int) -> bytes:
    """One gzip member that inflates to ``inflated_bytes`` zero bytes (about 1000 times its own size).

    Each MiB of zeros is deflated once, ended by a full flush (so every copy of it decodes alike), and
    repeated: a gigabyte's bomb in under a second instead of ten seconds of deflating the same zeros."""
    block = bytes(1024 * 1024)
    whole, rest = divmod(inflated_bytes, len(block))
    repeated = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    one_block = repeated.compress(block) + repeated.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    final_block = last.compress(bytes(rest)) + last.flush()
    crc = 0
    for _ in range(whole):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name or time, best
    trailer = struct.pack("<II", crc, inflated_bytes & 0xFFFFFFFF)
    return header + one_block * whole + final_block + trailer


def envelope(items: list[dict[str, object]], *, next_link: str | None = None, **pagination: object) -> bytes:
    """A Census list response body: ``data``, the legacy ``next`` link if given, and any ``pagination``."""
    body: dict[str, object] = {"status": "success", "data": items}
    if next_link is not None:
        body["next"] = next_link
    if pagination:
        body["pagination"] = pagination
    return json.dumps(body).encode()
