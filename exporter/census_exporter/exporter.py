"""Exporter: wires clients, refreshers, discovery, collector and HTTP server together from a Config."""

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

from census_exporter.api_probe import ApiProbe, ApiProbes
from census_exporter.census.budget import DISCOVERED_LANE, NAMED_LANE, RequestBudget
from census_exporter.census.client import CensusClient
from census_exporter.collector import CensusCollector, render_budget
from census_exporter.config import Config, Discovery, Workspace
from census_exporter.fleet_metrics import render_fleet
from census_exporter.garbage import FrozenGenerations
from census_exporter.http.scrape import ExporterApp
from census_exporter.http.server import HTTPServer
from census_exporter.instrumentation import ApiRequestMetrics, WorkspaceRequestObserver
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.refresh.announcements import Announcements
from census_exporter.refresh.discovery import Discoverer
from census_exporter.refresh.fleet import Fleet, WatchedWorkspace
from census_exporter.refresh.quota import SyncQuota
from census_exporter.rendering import RenderedFamilies
from census_exporter.snapshot import SyncState
from census_exporter.storage import Identity, Restored, Storage
from census_exporter.web_config_reload import WebConfigSource
from census_exporter.web_security_metrics import WebSecurityCollector
from census_exporter.webhooks.intake import WebhookTarget
from census_exporter.webhooks.receiver import WebhookReceiver
from census_exporter.webhooks.signature import WebhookSecrets
from census_exporter.workers import DaemonPool

log = logging.getLogger(__name__)


class WebhookListenError(OSError):
    """The webhook receiver's listener cannot bind (``--web.webhook-listen-address``)."""


class Exporter:
    """One running exporter: ``start()`` binds the port and begins the first refreshes in the background."""

    def __init__(self, config: Config) -> None:
        # ``*_created`` samples double the series of every counter and no dashboard or alert reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        self._api_metrics = ApiRequestMetrics()
        # What the API showed each client (the start-up probe), and the claims on syncs naming no group.
        self._probes = ApiProbes()
        # One budget for every client of the process: workspaces, discovery, retries.
        rate = config.max_requests_per_second
        self.budget = RequestBudget(rate) if rate > 0 else None
        # Fair shares: the named workspaces keep their lane whatever discovery adds (census/budget.py).
        self._lanes = (
            self.budget.lanes(named=bool(config.watched()), discovered=bool(config.discoveries))
            if self.budget
            else {}
        )
        # Every refresh of the fleet runs on these threads: their number is configured, not the fleet's.
        self._runners = DaemonPool(config.refresh_workers, "census-refresh")
        #: The fleet-wide bound on watched syncs (docs/sizing.md): the per-workspace bound times 250
        #: workspaces would not fit any memory limit.
        self._quota = SyncQuota(config.max_syncs)
        #: Per workspace that takes webhooks, what they announce (read by its refresher).
        self._announcements: dict[str, Announcements] = {}
        if config.webhook_listen is not None:
            self._announcements = {
                workspace.name: Announcements(
                    config.webhook_reconcile_interval_seconds,
                    grace_seconds=config.webhook_announcement_grace_seconds,
                )
                for workspace in config.watched()
                if workspace.webhook_secrets
            }
        # Not registered in self.registry: /metrics serves its rendering from a per-view cache.
        self.collector = CensusCollector(config.cache_ttl_seconds, config.exposition)
        #: The locked storage directory (raises StorageError when it cannot be used).
        self.storage = Storage(config.storage_path) if config.storage_path else None
        self.fleet = Fleet(self._watch, config.watched(), max_workspaces=config.max_workspaces)
        #: Full garbage collections over every snapshot paused the process (and /readyz) for up to 680 ms.
        self._frozen = FrozenGenerations()
        self._stopping = threading.Event()
        self.discoverers = [
            Discoverer(
                discovery,
                self.fleet,
                # Its requests belong to no workspace: they are counted with an empty workspace label.
                self._client(
                    discovery,
                    self._api_metrics.observer(""),
                    self._stopping,
                    self._probe(discovery, "", f"discovery {discovery.name}", claims=False),
                ),
                timeout_seconds=config.refresh_timeout_seconds,
                stopping=self._stopping,
                max_workspaces=config.max_workspaces_per_discovery,
            )
            for discovery in config.discoveries
        ]
        self.app = ExporterApp(
            self.fleet,
            self.collector,
            self.registry,
            config.telemetry_path,
            cache_ttl_seconds=config.cache_ttl_seconds,
            own_metrics=self._own_metrics,
            demo=config.demo,
        )
        web_config = (
            WebConfigSource(config.web_config_file, config.web_config_settle_seconds)
            if config.web_config_file
            else None
        )
        self.http = HTTPServer(
            self.app,
            config.listen_host,
            config.listen_port,
            web_config,
            more_addresses=config.more_listen_addresses,
        )
        if web_config is not None:
            self.registry.register(WebSecurityCollector(web_config, self.http.basic_auth))
        self.webhooks: WebhookReceiver | None = None
        if config.webhook_listen is not None:
            try:
                self.webhooks = self._receiver(config.webhook_listen)
            except OSError as error:
                self.http.close()
                raise WebhookListenError(error.errno, error.strerror) from None

    def _receiver(self, listen: tuple[str, int]) -> WebhookReceiver:
        """The webhook receiver for the named workspaces that have secrets (discovered ones have none)."""
        targets = {
            member.workspace.name: WebhookTarget(
                member.workspace.name,
                WebhookSecrets(member.workspace.webhook_secrets),
                self._announcements[member.workspace.name],
                member.refresher,
                census_workspace_id=member.workspace.workspace_id,
                census_group_id=member.workspace.group_id,
            )
            for member in self.fleet.members()
            if member.workspace.name in self._announcements
        }
        host, port = listen
        return WebhookReceiver(
            targets,
            host,  # empty: every interface, dual-stack, as the main listener
            port,
            rate_per_source=self.config.webhook_max_requests_per_second,
        )

    def _own_metrics(self) -> RenderedFamilies:
        """The exporter's API requests, API probes, request budget use, the fleet's bounds and webhooks."""
        rendered = (
            self._api_metrics.render()
            + self._probes.render()
            + render_budget(self.budget.use() if self.budget else None)
            + render_fleet(self.fleet, self.config.cache_ttl_seconds)
        )
        return rendered + self.webhooks.render() if self.webhooks is not None else rendered

    @property
    def port(self) -> int:
        """The port the HTTP server is bound to."""
        return self.http.port

    @property
    def refresher(self) -> Refresher:
        """The first watched workspace's refresher (the only one when the flags define the workspace)."""
        return self.fleet.members()[0].refresher

    def start(self) -> None:
        """Serve HTTP, then start the first refreshes so /readyz turns ready without waiting for a scrape."""
        self.http.start()
        if self.webhooks is not None:
            self.webhooks.start()
        for member in self.fleet.members():
            member.refresher.trigger()
        for discoverer in self.discoverers:
            discoverer.start()
        self._frozen.start()

    def close(self) -> bool:
        """Stop serving and release connections; background work ends with the process.

        Returns False when the HTTP server did not stop in time: its threads may then hold the process.
        """
        stopped = self.http.close()
        if self.webhooks is not None:
            stopped = self.webhooks.close() and stopped
        self._stopping.set()
        for discoverer in self.discoverers:
            discoverer.close()
        self.fleet.close()
        self._runners.shutdown()
        self._frozen.close()
        if self.storage is not None:
            self.storage.close()
        return stopped

    # ------------------------------------------------------------------ one workspace

    def _watch(self, workspace: Workspace) -> WatchedWorkspace:
        """A client and a refresher for ``workspace``, released together."""
        config = self.config
        stopping = threading.Event()  # set by refresher.close(): ends the client's retry backoff at once
        observer = self._api_metrics.observer(workspace.name)
        probe = self._probe(workspace, workspace.name, f"workspace {workspace.name}")
        client = self._client(workspace, observer, stopping, probe)
        discovered = workspace.discovered_by is not None
        lane = self._lanes.get(DISCOVERED_LANE if discovered else NAMED_LANE)
        ledger_file, restored = None, Restored()
        if self.storage is not None:
            ledger_file = self.storage.workspace(
                workspace.name, config.duration_buckets, _identity(workspace)
            )
            restored = ledger_file.load()
            if restored.departed is not None:
                restored_counters = {sync_id: ledger.counters for sync_id, ledger in restored.ledgers.items()}
                self.collector.seed_totals(workspace.name, restored.departed, restored_counters)
        refresher = Refresher(
            client,
            RefreshSettings(
                workspace=workspace.name,
                cache_ttl_seconds=config.cache_ttl_seconds,
                concurrency=config.concurrency,
                refresh_timeout_seconds=config.refresh_timeout_seconds,
                duration_buckets=config.duration_buckets,
                syncs=workspace.syncs,
                api_url=workspace.api_url,
                request_interval_seconds=lane.interval_seconds if lane else None,
            ),
            stopping=stopping,
            # Its share is planned on among the workspaces of its lane.
            workspaces=lambda: self.fleet.count(discovered=discovered),
            runners=self._runners,
            announcements=self._announcements.get(workspace.name),
            quota=self._quota,
            ledger_file=ledger_file,
            restored={
                sync_id: SyncState(sync=restored.syncs[sync_id], ledger=ledger)
                for sync_id, ledger in restored.ledgers.items()
            },
        )

        def release() -> None:
            refresher.close()
            self._quota.release(refresher)
            client.close()
            observer.close()  # its request series go with it
            if probe is not None:
                probe.close()  # and its probe series and claims

        return WatchedWorkspace(workspace, refresher, release)

    def _probe(
        self, target: Workspace | Discovery, workspace: str, title: str, *, claims: bool = True
    ) -> ApiProbe | None:
        """The start-up probe of a V2 client; None for V1, whose shape is published (no census_api_info)."""
        if target.api_version != "v2":
            return None
        return self._probes.probe(workspace, target.api_version, title, claims=claims)

    def _client(
        self,
        target: Workspace | Discovery,
        observer: WorkspaceRequestObserver,
        stopping: threading.Event,
        probe: ApiProbe | None,
    ) -> CensusClient:
        """A client for one workspace or, for a discovery entry, for its organization-wide listings."""
        workspace = target if isinstance(target, Workspace) else None
        discovered = workspace is None or workspace.discovered_by is not None
        return CensusClient(
            target.api_url,
            target.token,
            request_timeout=self.config.request_timeout_seconds,
            observer=observer,
            max_connections=self.config.concurrency,
            max_response_bytes=self.config.max_response_bytes,
            sleep=stopping.wait,
            api_version=target.api_version,
            group_id=workspace.group_id if workspace else None,
            organization=workspace is None,  # discovery lists workspaces or groups, not one's syncs
            budget=self._lanes.get(DISCOVERED_LANE if discovered else NAMED_LANE, self.budget),
            scope=probe,
            max_listed=(
                self.config.max_syncs_per_workspace if workspace else self.config.max_workspaces_per_discovery
            ),
            # Discovery may derive V2 groups from the syncs listing: bounded as syncs, not as groups.
            max_listed_syncs=self.config.max_syncs_per_workspace,
        )


def _identity(workspace: Workspace) -> Identity:
    """Which Census workspace ``workspace`` is, for its state file: its id if known, else its token."""
    scope = None
    if workspace.workspace_id is not None:
        scope = f"workspace:{workspace.workspace_id}"
    elif workspace.group_id is not None:
        scope = f"group:{workspace.group_id}"
    return Identity(api_url=workspace.api_url.rstrip("/"), scope=scope, token=workspace.token)
