"""WebhookReceiver: the webhook app on its own listener (the project's cheroot server), and its worker.

Its own port, so an Ingress can expose the webhook path to Census without exposing ``/metrics``. The
listener takes bodies up to the cap (``ServerLimits.max_body_bytes``): a body waits in the selector with
its headers and only a complete one takes a worker, so no sender, however slow, holds a thread.
"""

from __future__ import annotations

from collections.abc import Mapping

from census_exporter.http.cheroot_adapter import ServerLimits
from census_exporter.http.server import HTTPServer
from census_exporter.refresh.announcements import AnnouncementStatus
from census_exporter.rendering import RenderedFamilies
from census_exporter.webhooks.app import MAX_BODY_BYTES, WebhookApp
from census_exporter.webhooks.intake import Dispatcher, RateLimiter, WebhookTarget
from census_exporter.webhooks.metrics import WebhookMetrics

#: The webhook listener's limits: small bodies, short waits, few workers (an answer takes microseconds).
WEBHOOK_LIMITS = ServerLimits(
    workers=4,
    backlog=128,
    header_timeout_seconds=5.0,
    idle_timeout_seconds=15.0,
    max_connections=256,
    max_header_bytes=8 * 1024,
    max_body_bytes=MAX_BODY_BYTES,
    # An answer is ~200 bytes: a client that has not taken it within this is pipelining requests and
    # reading nothing (with the idle timeout, 4 such clients held every worker for 15 s).
    send_grace_seconds=0.5,
)
#: Deliveries a second one source address may make by default, and the burst it may save up (twice).
DEFAULT_RATE_PER_SOURCE = 50.0


class WebhookReceiver:
    """The listener, app, queue and metrics of the webhook path; ``start()`` serves, ``close()`` stops."""

    def __init__(
        self,
        targets: Mapping[str, WebhookTarget],
        host: str,
        port: int,
        *,
        rate_per_source: float = DEFAULT_RATE_PER_SOURCE,
        limits: ServerLimits | None = None,
    ) -> None:
        limits = limits or WEBHOOK_LIMITS
        self._targets = dict(targets)
        self.metrics = WebhookMetrics(self._targets, self._status)
        self.dispatcher = Dispatcher(self.metrics.read)
        self.app = WebhookApp(
            self._targets.get,
            self.dispatcher,
            self.metrics,
            RateLimiter(rate_per_source, 2 * rate_per_source),
            max_body_bytes=limits.max_body_bytes,
        )
        self.http = HTTPServer(self.app, host, port, limits=limits)

    def _status(self, workspace: str) -> AnnouncementStatus | None:
        target = self._targets.get(workspace)
        return target.announcements.status() if target is not None else None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self.http.port

    def render(self) -> RenderedFamilies:
        """The receiver's metrics, for /metrics on the main listener."""
        return self.metrics.render()

    def start(self) -> None:
        """Start the worker, then answer deliveries."""
        self.dispatcher.start()
        self.http.start()

    def close(self) -> bool:
        """Stop answering, then stop the worker; False when the listener did not stop in time."""
        stopped = self.http.close()
        self.dispatcher.close()
        return stopped
