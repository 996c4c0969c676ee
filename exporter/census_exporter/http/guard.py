"""The guard in front of every app the server serves: bodies refused, basic auth checked, failures contained.

A request with a body is refused unread (unless the listener takes bodies), one without valid credentials
gets 401 (429 while too many password checks run), and an app that raises gets a short 500 and one log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from census_exporter.basic_auth import BasicAuth
from census_exporter.http.wsgi import StartResponse, WSGIApp
from census_exporter.web_config_reload import WebConfigSource

#: The server's log lines keep the logger name they had before it became a package.
log = logging.getLogger("census_exporter.server")

ERROR_BODY = b"internal error\n"
UNAUTHORIZED_BODY = b"unauthorized\n"
BUSY_BODY = b"too many password checks in progress, retry\n"
BODY_REFUSED = b"request bodies are not accepted\n"


class Guard:
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
