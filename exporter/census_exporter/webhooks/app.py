"""The receiver: ``POST /webhooks/census/<workspace>``, a WSGI app served on its own listener.

Checks, in order, each answered at once and counted by result: the method (405), the workspace (404), the
body's size (413: the listener refuses a body over the cap unread) and framing (411 without a length), the
content type (415), the signature over the raw body against every accepted secret (401), the JSON (400),
then the Census workspace or group the event names, where the exporter knows the target's (422: signed
with this workspace's secret but about another one, a misrouted Census webhook; it changes nothing, and
4xx rather than 2xx so that Census's delivery log shows the failure). Each of these failures takes a
token of its source's rate limit (an address; an IPv6 /64), and once that is spent the source's failures
are answered 429: the limit never refuses a verified delivery, so behind an Ingress (one source address for
every sender) a flood of unsigned requests cannot make Census's own deliveries 429.
Verifying first is cheap and bounded (a body of at most 8 KiB, an HMAC per accepted secret).

A verified event already shown by a read is answered 200 and ignored (a duplicate); a new one, or one taken
before whose read did not show it yet, is queued (202), or refused with 503 when the queue is full, so that
Census delivers it again: the queue bounds verified deliveries. An event about a sync the workspace does
not watch is taken too (``unknown_sync``), but says nothing about the workspace's webhooks being alive.
Nothing here waits on the Census API or the refresher: every answer is a few microseconds of work.
The body and the secrets are never logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from census_exporter.http.wsgi import BODY_OVER_CAP_KEY, StartResponse
from census_exporter.webhooks.events import EventError, parse_event
from census_exporter.webhooks.intake import (
    Dispatcher,
    RateLimiter,
    RecentEvents,
    WebhookTarget,
    shown,
    watched,
)
from census_exporter.webhooks.metrics import WebhookMetrics
from census_exporter.webhooks.signature import signature_matches

log = logging.getLogger(__name__)

PATH_PREFIX = "/webhooks/census/"
#: The largest body taken: Census's events are a few hundred bytes; alert events carry a message.
MAX_BODY_BYTES = 8 * 1024

_ANSWERS = {
    "accepted": ("202 Accepted", b"accepted\n"),
    "unknown_sync": ("202 Accepted", b"accepted, but no watched sync has this id\n"),
    "duplicate": ("200 OK", b"duplicate, ignored\n"),
    "rate_limited": ("429 Too Many Requests", b"too many requests\n"),
    "method_not_allowed": ("405 Method Not Allowed", b"method not allowed\n"),
    "unknown_workspace": ("404 Not Found", b"not found\n"),
    "too_large": ("413 Payload Too Large", b"body too large\n"),
    "length_required": ("411 Length Required", b"length required\n"),
    "unsupported_media_type": ("415 Unsupported Media Type", b"expected application/json\n"),
    "bad_signature": ("401 Unauthorized", b"missing or bad signature\n"),
    "malformed": ("400 Bad Request", b"malformed event\n"),
    "wrong_workspace": ("422 Unprocessable Content", b"the event is about another Census workspace\n"),
    "queue_full": ("503 Service Unavailable", b"busy, deliver again later\n"),
}

#: Signed events about another Census workspace or group are logged at most this often per workspace.
WRONG_WORKSPACE_LOG_INTERVAL_SECONDS = 60.0

#: Results of verified deliveries: never rate limited (the queue bounds them).
_TAKEN = frozenset({"accepted", "unknown_sync", "duplicate", "queue_full"})


class WebhookApp:
    """The WSGI app of the webhook listener."""

    def __init__(
        self,
        targets: Callable[[str], WebhookTarget | None],
        dispatcher: Dispatcher,
        metrics: WebhookMetrics,
        limiter: RateLimiter,
        *,
        recent: RecentEvents | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._targets = targets
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._limiter = limiter
        self._recent = recent or RecentEvents()
        self._max_body = max_body_bytes
        self._lock = threading.Lock()
        self._wrong_logged: dict[str, float] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one delivery."""
        target = self._target(environ)
        result = self._check(environ, target)
        unread = result in ("too_large", "length_required")
        if result not in _TAKEN and not self._limiter.allows(str(environ.get("REMOTE_ADDR", ""))):
            result = "rate_limited"
        self._metrics.request(target.name if target is not None else "", result)
        status, body = _ANSWERS[result]
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        if result == "rate_limited":
            headers.append(("Retry-After", "1"))
        if unread:
            # The body was not read: what follows must not be taken for the next request.
            headers.append(("Connection", "close"))
        start_response(status, headers)
        return [body]

    def _target(self, environ: dict[str, Any]) -> WebhookTarget | None:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(PATH_PREFIX):
            return None
        try:
            # WSGI hands the path over as latin-1; workspace labels are UTF-8.
            name = path[len(PATH_PREFIX) :].encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
        return self._targets(name) if name and "/" not in name else None

    def _check(self, environ: dict[str, Any], target: WebhookTarget | None) -> str:
        if environ.get("REQUEST_METHOD") != "POST":
            return "method_not_allowed"
        if target is None:
            return "unknown_workspace"
        if environ.get(BODY_OVER_CAP_KEY) or _length(environ) > self._max_body:
            return "too_large"
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if not chunked and (not environ.get("CONTENT_LENGTH") or _length(environ) < 0):
            return "length_required"
        media_type = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return "unsupported_media_type"
        body = self._body(environ)
        if body is None:
            return "too_large"
        if not signature_matches(body, environ.get("HTTP_X_SIGNATURE"), target.secrets.current()):
            return "bad_signature"
        try:
            event = parse_event(body)
        except EventError as error:
            log.debug("webhook for workspace %s refused: %s", target.name, error)
            return "malformed"
        other = target.names_another(event)
        if other is not None:
            self._wrong_workspace(target.name, other)
            return "wrong_workspace"
        key = (target.name, *event.dedup_key)
        taken = self._recent.state(key)
        snapshot = target.refresher.snapshot
        if taken is not None and (taken or shown(event, snapshot)):
            self._recent.remember(key, confirmed=True)
            return "duplicate"
        # New, or taken before but not shown by a read yet (the API said the run was still working): read.
        if not self._dispatcher.offer(target, event):
            return "queue_full"
        if taken is None:
            self._recent.remember(key, confirmed=shown(event, snapshot))
            self._metrics.event(target.name, event.event)
        return "accepted" if watched(event, snapshot) else "unknown_sync"

    def _wrong_workspace(self, workspace: str, what: str) -> None:
        """One line a minute per workspace: signed events about another workspace mean a misconfiguration."""
        now = time.monotonic()
        with self._lock:
            if now - self._wrong_logged.get(workspace, -math.inf) < WRONG_WORKSPACE_LOG_INTERVAL_SECONDS:
                return
            self._wrong_logged[workspace] = now
        log.warning(
            "webhook for workspace %s refused (422): signed with its secret, but the event's %s: is the "
            "Census webhook posting to /webhooks/census/%s another workspace's?",
            workspace,
            what,
            workspace,
        )

    def _body(self, environ: dict[str, Any]) -> bytes | None:
        """The raw body (all of it is buffered already: the listener waits for it), or None over the cap."""
        stream = environ["wsgi.input"]
        try:
            body: bytes = stream.read(self._max_body + 1)
        except (OSError, ValueError):  # cheroot's size backstop, a chunked framing it refuses
            return None
        return None if len(body) > self._max_body else body


def _length(environ: dict[str, Any]) -> int:
    """The Content-Length, 0 without one, -1 when it is no number (cheroot answers that case first)."""
    text = str(environ.get("CONTENT_LENGTH", "") or "0").strip()
    return int(text) if text.isdigit() else -1
