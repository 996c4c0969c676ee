"""The exporter's HTTP server: one listener per address, started and stopped together, TLS and auth included.

:class:`HTTPServer` binds every address in its constructor (a taken port fails before anything starts),
puts the guard (:mod:`census_exporter.http.guard`) in front of the app, and runs one cheroot listener per
address (:mod:`census_exporter.http.cheroot_adapter`, docs/http-server.md says why cheroot) until closed.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence

from census_exporter.basic_auth import BasicAuth
from census_exporter.http.cheroot_adapter import CherootServer, ServerLimits
from census_exporter.http.guard import Guard
from census_exporter.http.tls import TLSAdapter
from census_exporter.http.wsgi import WSGIApp
from census_exporter.web_config_reload import WebConfigSource

#: The server's log lines keep the logger name they had before it became a package.
log = logging.getLogger("census_exporter.server")


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
        guarded = Guard(app, web_config, self.basic_auth, accepts_bodies=limits.max_body_bytes > 0)
        startup = web_config.current() if web_config is not None else None
        context = startup.ssl_context if startup is not None else None
        self._servers: list[CherootServer] = []
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
) -> CherootServer:
    """A cheroot server bound to ``address``; an empty host is dual-stack, or IPv4 without IPv6."""
    host, port = address
    # cheroot turns IPV6_V6ONLY off for "::", so one socket takes IPv4 (as ::ffff:a.b.c.d) and IPv6.
    candidates = [host] if host else (["::", "0.0.0.0"] if socket.has_ipv6 else ["0.0.0.0"])  # noqa: S104
    for index, candidate in enumerate(candidates):
        server = CherootServer(app, candidate, port, limits)
        if context is not None:
            server.ssl_adapter = TLSAdapter(web_config, context)  # type: ignore[arg-type]
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


def _release(server: CherootServer) -> None:
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
