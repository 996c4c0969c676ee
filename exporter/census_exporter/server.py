"""HTTP endpoints: ``/metrics`` (or the configured path), ``/``, ``/healthz`` and ``/readyz``.

A scrape asks the refresher for a snapshot within its budget (Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds`` header minus 0.5 s, or 10 s), then serves it in the format the
``Accept`` header asks for, gzipped when the client accepts it: the Census families rendered once per
snapshot, followed by the exporter's own metrics rendered fresh.
"""

from __future__ import annotations

import logging
import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from census_exporter.collector import CensusCollector
from census_exporter.landing import render_landing_page
from census_exporter.refresh import Refresher
from census_exporter.snapshot import Snapshot

log = logging.getLogger(__name__)

DEFAULT_SCRAPE_BUDGET_SECONDS = 10.0
GZIP_LEVEL = 5
OPENMETRICS_EOF = b"# EOF\n"
SCRAPE_TIMEOUT_OFFSET_SECONDS = 0.5

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def scrape_budget(header: str | None) -> float:
    """Seconds a scrape may wait for fresh data, from Prometheus's scrape-timeout header."""
    if header:
        try:
            timeout = float(header)
        except ValueError:
            return DEFAULT_SCRAPE_BUDGET_SECONDS
        if timeout > 0:
            return max(0.0, timeout - SCRAPE_TIMEOUT_OFFSET_SECONDS)
    return DEFAULT_SCRAPE_BUDGET_SECONDS


class _SnapshotFamilies:
    """What prometheus_client's encoders need (``collect()``), bound to one snapshot."""

    def __init__(self, collector: CensusCollector, snapshot: Snapshot) -> None:
        self._collector = collector
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return self._collector.families(self._snapshot)


class _SnapshotRendering:
    """The Census part of /metrics, rendered once per snapshot and format, and compressed once.

    It changes only when a refresh swaps the snapshot, at most once per TTL, while Prometheus servers may
    scrape far more often, and rendering thousands of series costs far more than serving bytes. For gzip
    the cache keeps the compressed prefix and a copy of the compressor's state after it, so each scrape
    compresses only the exporter's own metrics and still sends one ordinary gzip stream (several clients,
    httpx among them, read only the first member of a multi-member stream).
    """

    def __init__(self, collector: CensusCollector) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._plain: dict[str, bytes] = {}
        self._gzip: dict[str, tuple[bytes, Any]] = {}

    def body(
        self,
        snapshot: Snapshot,
        content_type: str,
        encoder: Callable[[Any], bytes],
        tail: bytes,
        compress: bool,
    ) -> bytes:
        """The Census exposition of ``snapshot`` followed by ``tail``, gzipped if ``compress``."""
        with self._lock:
            if self._snapshot is not snapshot:
                self._snapshot, self._plain, self._gzip = snapshot, {}, {}
            plain = self._plain.get(content_type)
            packed = self._gzip.get(content_type)
        if plain is None:
            plain = encoder(_SnapshotFamilies(self._collector, snapshot))
            if plain.endswith(OPENMETRICS_EOF):
                plain = plain[: -len(OPENMETRICS_EOF)]  # the tail ends the exposition
            self._store(snapshot, self._plain, content_type, plain)
        if not compress:
            return plain + tail
        if packed is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            packed = (compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH), compressor)
            self._store(snapshot, self._gzip, content_type, packed)
        prefix, state = packed
        compressor = state.copy()
        return prefix + compressor.compress(tail) + compressor.flush()

    def _store(self, snapshot: Snapshot, cache: dict[str, Any], key: str, value: Any) -> None:
        with self._lock:
            if self._snapshot is snapshot:
                cache[key] = value


class ExporterApp:
    """The WSGI application."""

    def __init__(
        self,
        refresher: Refresher,
        collector: CensusCollector,
        registry: CollectorRegistry,
        telemetry_path: str,
    ) -> None:
        self._refresher = refresher
        self._census = _SnapshotRendering(collector)
        self._registry = registry
        self._telemetry_path = telemetry_path

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
            if self._refresher.ready:
                return _respond(start_response, "200 OK", b"ready\n")
            return _respond(start_response, "503 Service Unavailable", b"first refresh pending\n")
        if path == "/":
            return _respond(
                start_response,
                "200 OK",
                render_landing_page(self._refresher.snapshot, self._telemetry_path),
                "text/html; charset=utf-8",
            )
        return _respond(start_response, "404 Not Found", b"not found\n")

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        budget = scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
        snapshot = self._refresher.snapshot_within(budget)
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        compress = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        # Census data from the per-snapshot cache, then the exporter's own metrics, fresh each scrape.
        body = self._census.body(snapshot, content_type, encoder, encoder(self._registry), compress)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


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


class HTTPServer:
    """The exporter's HTTP server, serving in a background thread until closed."""

    def __init__(self, app: ExporterApp, host: str, port: int) -> None:
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host or "0.0.0.0",  # noqa: S104 - listening on every interface is the documented default
            port,
            app,
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-server", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Begin answering requests."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and release the socket (also when it never started)."""
        if self._thread.is_alive():
            # shutdown() waits for serve_forever() to return: it would wait forever if that never ran.
            self._server.shutdown()
        self._server.server_close()
