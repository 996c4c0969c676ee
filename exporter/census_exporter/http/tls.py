"""TLS for the listener: cheroot's adapter interface, wrapping each connection in the web config's context.

Relies on cheroot's ``cheroot.ssl.Adapter`` plug-in interface (``bind``, ``wrap``, ``get_environ``,
``makefile``) and on ``cheroot.makefile.StreamReader``/``StreamWriter``; tested with the cheroot versions
named in :mod:`census_exporter.http.cheroot_adapter`.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import cheroot.makefile
import cheroot.ssl

from census_exporter.web_config_reload import WebConfigSource


class TLSAdapter(cheroot.ssl.Adapter):
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
