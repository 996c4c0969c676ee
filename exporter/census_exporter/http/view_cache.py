"""The rendering cache of ``/metrics``: Census families rendered once per view, compressed once per format."""

from __future__ import annotations

import threading
import time
import weakref
import zlib
from typing import Any

from census_exporter.collector import CensusCollector
from census_exporter.rendering import RenderedFamilies
from census_exporter.snapshot import FleetView

GZIP_LEVEL = 5


class ViewRendering:
    """The Census part of /metrics, rendered once per view for both formats, and compressed once per format.

    It changes only when a refresh swaps a workspace's snapshot, at most once per TTL each, while
    Prometheus servers may scrape far more often, and rendering thousands of series costs far more than
    serving bytes. Both formats share the rendered samples (only HELP and TYPE lines differ). For gzip the
    cache keeps the compressed prefix and a copy of the compressor's state after it, so each scrape
    compresses only the exporter's own metrics and still sends one ordinary gzip stream (several clients,
    httpx among them, read only the first member of a multi-member stream).
    """

    def __init__(self, collector: CensusCollector) -> None:
        self._collector = collector
        self._lock = threading.Lock()
        #: One fresh rendering at a time: two side by side would double the process's peak memory.
        self._rendering = threading.Lock()
        self._view: FleetView | None = None
        #: The view the current one replaced (weakly: its snapshots must not outlive their last scrape); a
        #: scrape that still holds it gets the newer one instead.
        self._replaced: weakref.ref[FleetView] | None = None
        self._rendered: RenderedFamilies | None = None
        self._plain: dict[bool, list[bytes]] = {}
        self._gzip: dict[bool, tuple[bytes, Any]] = {}
        #: How long the last fresh rendering (and compression) took: a scrape that waits for a refresh must
        #: leave that much of its budget to render the new view.
        self.render_seconds = 0.0

    def body(self, view: FleetView, openmetrics: bool, tail: bytes, compress: bool) -> list[bytes]:
        """The Census exposition of ``view`` followed by ``tail``, gzipped if ``compress``, as the chunks
        to send: the cached rendering itself, never a copy of it (megabytes at thousands of syncs)."""
        with self._lock:
            if self._replaced is not None and view is self._replaced() and self._view is not None:
                # Fetched just before a swap, asked for just after: the newer view is cached (or being
                # rendered), and going back would render both again, one after the other.
                view = self._view
            elif self._view is not view:
                self._replaced = weakref.ref(self._view) if self._view is not None else None
                self._view, self._rendered, self._plain, self._gzip = view, None, {}, {}
            plain = self._plain.get(openmetrics)
            packed = self._gzip.get(openmetrics)
        if plain is None or (compress and packed is None):
            with self._rendering:
                return self._fresh(view, openmetrics, tail, compress)
        return self._cached(plain, packed, tail, compress)

    def _fresh(self, view: FleetView, openmetrics: bool, tail: bytes, compress: bool) -> list[bytes]:
        """Render (and compress) what the cache lacks; another scrape may have done it meanwhile."""
        with self._lock:
            current = self._view is view
            rendered = self._rendered if current else None
            plain = self._plain.get(openmetrics) if current else None
            packed = self._gzip.get(openmetrics) if current else None
        started = time.monotonic()
        fresh = rendered is None or (compress and packed is None)
        if rendered is None:
            rendered = self._collector.render(view)
            with self._lock:
                if self._view is view:
                    self._rendered = rendered
        if plain is None:
            plain = rendered.chunks(openmetrics)
            self._store(view, self._plain, openmetrics, plain)
        if compress and packed is None:
            compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            pieces = [compressor.compress(chunk) for chunk in plain]
            pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
            packed = (b"".join(pieces), compressor)
            self._store(view, self._gzip, openmetrics, packed)
        if fresh:
            self.render_seconds = time.monotonic() - started
        return self._cached(plain, packed, tail, compress)

    @staticmethod
    def _cached(
        plain: list[bytes], packed: tuple[bytes, Any] | None, tail: bytes, compress: bool
    ) -> list[bytes]:
        if not compress or packed is None:
            return [*plain, tail]
        prefix, state = packed
        compressor = state.copy()
        return [prefix, compressor.compress(tail) + compressor.flush()]

    def _store(self, view: FleetView, cache: dict[bool, Any], key: bool, value: Any) -> None:
        with self._lock:
            if self._view is view:
                cache[key] = value
