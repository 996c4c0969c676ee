"""Exporter: wires client, refresher, collector and HTTP server together from a Config."""

from __future__ import annotations

import logging
import threading

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from census_exporter.census.client import CensusClient
from census_exporter.collector import CensusCollector
from census_exporter.config import Config
from census_exporter.instrumentation import ApiRequestMetrics
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.server import ExporterApp, HTTPServer
from census_exporter.web_config import WebConfigSource

log = logging.getLogger(__name__)


class Exporter:
    """One running exporter: ``start()`` binds the port and begins the first refresh in the background."""

    def __init__(self, config: Config) -> None:
        # ``*_created`` samples double the series of every counter and no dashboard or alert reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        stopping = threading.Event()  # set by refresher.close()
        self.client = CensusClient(
            config.api_url,
            config.token,
            request_timeout=config.request_timeout_seconds,
            observer=ApiRequestMetrics(self.registry, config.workspace),
            max_connections=config.concurrency,
            max_response_bytes=config.max_response_bytes,
            sleep=stopping.wait,  # backoff between retries ends at once on shutdown
            api_version=config.api_version,
            group_id=config.group_id,
        )
        self.refresher = Refresher(
            self.client,
            RefreshSettings(
                workspace=config.workspace,
                cache_ttl_seconds=config.cache_ttl_seconds,
                concurrency=config.concurrency,
                refresh_timeout_seconds=config.refresh_timeout_seconds,
                duration_buckets=config.duration_buckets,
            ),
            stopping=stopping,
        )
        # Not registered in self.registry: /metrics serves its rendering from a per-snapshot cache.
        self.collector = CensusCollector(lambda: self.refresher.snapshot, config.cache_ttl_seconds)
        self.app = ExporterApp(
            self.refresher,
            self.collector,
            self.registry,
            config.telemetry_path,
            api_url=config.api_url,
            cache_ttl_seconds=config.cache_ttl_seconds,
        )
        web_config = WebConfigSource(config.web_config_file) if config.web_config_file else None
        self.http = HTTPServer(self.app, config.listen_host, config.listen_port, web_config)

    @property
    def port(self) -> int:
        """The port the HTTP server is bound to."""
        return self.http.port

    def start(self) -> None:
        """Serve HTTP, then start the first refresh so /readyz turns ready without waiting for a scrape."""
        self.http.start()
        self.refresher.trigger()

    def close(self) -> bool:
        """Stop serving and release connections; background work ends with the process.

        Returns False when the HTTP server did not stop in time: its threads may then hold the process.
        """
        stopped = self.http.close()
        self.refresher.close()
        self.client.close()
        return stopped
