"""Config: the validated settings of one exporter process, and the API token source."""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Literal

from census_exporter import defaults
from census_exporter.logs import RedactingFilter
from census_exporter.patterns import SyncPattern

#: A token file larger than this is refused: a token is a few dozen bytes, /dev/zero is endless.
MAX_TOKEN_FILE_BYTES = 64 * 1024


class FileTooLargeError(Exception):
    """A file meant to be small (a token, a config file) is larger than its limit."""


def read_small_file(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    A FIFO, a device or a directory is refused (OSError) without blocking on it; FileTooLargeError beyond
    ``limit``, so neither ``/dev/zero`` nor a 1 GB file can exhaust memory.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(descriptor, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileTooLargeError(path)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


class TokenError(Exception):
    """The token cannot be read; the message never contains the token."""


class EmptyTokenError(TokenError):
    """The token file holds nothing but whitespace (emptied, or caught mid-rewrite): nothing to send."""


class TokenSource:
    """The Census API token, from a value or from a file re-read when it changes (secret rotation).

    ``repr()`` never shows the token, so a Config can be logged or appear in a traceback safely.
    """

    def __init__(self, value: str | None = None, path: str | None = None) -> None:
        self._value = _clean(value) if value is not None else None
        self._path = path
        self._file_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        if self._value:
            RedactingFilter.register(self._value)

    def __repr__(self) -> str:
        where = f"file {self._path!r}" if self._path else "environment"
        return f"TokenSource({where})"

    @property
    def path(self) -> str | None:
        """The token file, if the token comes from one."""
        return self._path

    def replace(self, value: str) -> None:
        """Use ``value`` from now on (a discovered workspace's API key that Census rotated)."""
        token = _clean(value)
        RedactingFilter.register(token)
        with self._lock:
            self._value = token

    def reload(self) -> str | None:
        """Read the token file now, changed or not (SIGHUP); what is wrong with it, or None."""
        if self._path is None:
            return None
        with self._lock:
            self._file_stamp = None
        try:
            self()
        except TokenError as error:
            return str(error)
        return None

    def __call__(self, *, keep_when_gone: bool = True) -> str:
        """The current token; a changed file is read again. A file that cannot be found any more keeps the
        last token read, unless ``keep_when_gone`` is False (a removed webhook secret file is withdrawn)."""
        if self._path is None:
            return self._value or ""
        with self._lock:
            try:
                info = os.stat(self._path)
            except OSError as error:
                if self._value is not None and keep_when_gone:
                    return self._value
                raise TokenError(_unreadable(self._path, error)) from None
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp != self._file_stamp or self._value is None:
                try:
                    token = _clean(read_small_file(self._path, MAX_TOKEN_FILE_BYTES).decode("utf-8"))
                except OSError as error:
                    raise TokenError(_unreadable(self._path, error)) from None
                except FileTooLargeError:
                    limit = MAX_TOKEN_FILE_BYTES // 1024
                    raise TokenError(
                        f"cannot read token file {self._path}: larger than {limit} KiB"
                    ) from None
                except UnicodeDecodeError:
                    raise TokenError(f"cannot read token file {self._path}: not UTF-8 text") from None
                self._file_stamp = stamp
                self._value = token
                RedactingFilter.register(token)
            if not self._value:
                # An empty Bearer header fails inside the HTTP client as a protocol error after retries;
                # say what is wrong instead, and send nothing.
                raise EmptyTokenError(f"token file {self._path} is empty")
            return self._value


def _unreadable(path: str, error: OSError) -> str:
    # str(error) repeats the path and the errno ("[Errno 21] Is a directory: '/x'"); strerror does not.
    reason = (error.strerror or type(error).__name__).lower()
    return f"cannot read token file {path}: {reason}"


def _clean(token: str) -> str:
    token = token.strip()
    if any(not 0x20 <= ord(c) < 0x7F for c in token):
        # An HTTP header cannot carry it, and the error the HTTP client would raise names the character.
        raise TokenError("the API token contains characters that are not printable ASCII")
    return token


@dataclass(frozen=True)
class SyncFilter:
    """Which syncs are watched: those some ``include`` pattern matches (all without one) and no ``exclude``.

    A pattern matches a sync when it is found in its label or matches its whole id, so ``^prod `` selects
    by label and ``^1042$`` (or ``1042``) by id.
    """

    include: tuple[SyncPattern, ...] = ()
    exclude: tuple[SyncPattern, ...] = ()

    def admits(self, sync_label: str, sync_id: int | None = None) -> bool:
        """Whether the sync with this label (and id) is watched."""
        identity = "" if sync_id is None else str(sync_id)

        def matches(pattern: SyncPattern) -> bool:
            return pattern.search(sync_label) or (bool(identity) and pattern.fullmatch(identity))

        if self.include and not any(matches(pattern) for pattern in self.include):
            return False
        return not any(matches(pattern) for pattern in self.exclude)


ApiVersion = Literal["v1", "v2"]
#: Where run totals are kept: one series set per workspace, per sync, or (durations only) none.
Aggregation = Literal["workspace", "sync", "off"]


@dataclass(frozen=True, slots=True)
class Exposition:
    """Which optional per-sync series a scrape carries; docs/metrics.md states each choice's cost per sync."""

    #: ``workspace``: census_workspace_run_duration_seconds; ``sync``: census_sync_run_duration_seconds;
    #: ``off``: neither.
    duration_histogram: Aggregation = defaults.DURATION_HISTOGRAM
    #: ``workspace``: census_workspace_records_*_total; ``sync``: census_sync_records_*_total.
    record_totals: Literal["workspace", "sync"] = defaults.RECORD_TOTALS
    #: The newest run's id, completed and scheduled times, and the last failure time, per sync.
    run_details: bool = defaults.RUN_DETAILS

    @classmethod
    def everything(cls) -> Exposition:
        """Every series per sync: the exposition before the defaults were made smaller."""
        return cls(duration_histogram="sync", record_totals="sync", run_details=True)


@dataclass(frozen=True, slots=True)
class Workspace:
    """A watched workspace (V1) or Fivetran group (V2) and its token; ``name`` is its ``workspace`` label."""

    name: str
    api_url: str
    token: TokenSource
    api_version: ApiVersion = defaults.API_VERSION
    #: The Fivetran group watched with V2; ``None`` with V1.
    group_id: str | None = None
    syncs: SyncFilter = field(default_factory=SyncFilter)
    #: The Census workspace id of a V1 workspace found by discovery (its identity beside its API key).
    workspace_id: int | None = None
    #: The discovery entry that found it; None for a workspace named in the file or by the flags.
    discovered_by: str | None = None
    #: The secrets its webhooks may be signed with (several during a rotation); none: it takes none.
    webhook_secrets: tuple[TokenSource, ...] = ()


@dataclass(frozen=True, slots=True)
class Discovery:
    """Watch every workspace (V1) or group (V2) that one token can see, listing them again periodically."""

    #: The ``discovery`` label of its health metrics: where it lists from (a URL without credentials).
    name: str
    api_url: str
    token: TokenSource
    api_version: ApiVersion = defaults.API_VERSION
    syncs: SyncFilter = field(default_factory=SyncFilter)
    relist_interval_seconds: float = 300.0
    #: V2: the ``workspace`` label of everything the token lists when no group can be told apart (no groups
    #: listing, and no record names a group).
    unscoped_name: str = defaults.WORKSPACE


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the CLI parsed and validated.

    Without a workspaces file, ``api_url``, ``token``, ``workspace``, ``api_version`` and ``group_id``
    describe the one watched workspace; with one (``config_file``), ``workspaces`` and ``discoveries`` do.
    """

    api_url: str
    token: TokenSource
    workspace: str = defaults.WORKSPACE
    cache_ttl_seconds: float = defaults.CACHE_TTL_SECONDS
    concurrency: int = defaults.CONCURRENCY
    request_timeout_seconds: float = defaults.REQUEST_TIMEOUT_SECONDS
    refresh_timeout_seconds: float = defaults.REFRESH_TIMEOUT_SECONDS
    #: The request budget of the whole process, every client's attempts included; 0: no budget.
    max_requests_per_second: float = defaults.MAX_REQUESTS_PER_SECOND
    max_response_bytes: int = defaults.MAX_RESPONSE_BYTES
    #: Syncs kept of one workspace's listing (pages beyond it are not read).
    max_syncs_per_workspace: int = defaults.MAX_SYNCS_PER_WORKSPACE
    #: Syncs watched in all, over every workspace (first come, first served).
    max_syncs: int = defaults.MAX_SYNCS
    #: Workspaces or groups kept of one discovery entry's listing.
    max_workspaces_per_discovery: int = defaults.MAX_WORKSPACES_PER_DISCOVERY
    #: Workspaces watched in all, named and discovered.
    max_workspaces: int = defaults.MAX_WORKSPACES
    #: Refreshes running at once over the fleet; the others wait for one of these threads.
    refresh_workers: int = defaults.REFRESH_WORKERS
    #: The first listen address (an empty host is every interface, IPv4 and IPv6).
    listen_host: str = ""
    listen_port: int = defaults.LISTEN_PORT
    #: Every further --web.listen-address, each served as well.
    more_listen_addresses: tuple[tuple[str, int], ...] = ()
    telemetry_path: str = defaults.TELEMETRY_PATH
    log_level: str = defaults.LOG_LEVEL
    log_format: str = defaults.LOG_FORMAT
    duration_buckets: tuple[float, ...] = field(default=defaults.DURATION_BUCKETS)
    exposition: Exposition = field(default_factory=Exposition)
    demo: bool = False
    demo_seed: int = defaults.DEMO_SEED
    demo_syncs: int = defaults.DEMO_SYNCS
    web_config_file: str | None = None
    #: How long a web config change that weakens protection must stay unchanged before it applies.
    web_config_settle_seconds: float = defaults.WEB_CONFIG_SETTLE_SECONDS
    #: The Census API dialect: ``v1`` (workspace API key) or ``v2`` (Activations PAT and ``group_id``).
    api_version: Literal["v1", "v2"] = defaults.API_VERSION
    #: The Fivetran group watched with V2; ``None`` with V1.
    group_id: str | None = None
    #: The workspaces file the watched workspaces come from, if any.
    config_file: str | None = None
    workspaces: tuple[Workspace, ...] = ()
    discoveries: tuple[Discovery, ...] = ()
    #: Warnings about the configuration to log once at start (a setting that is set but not used).
    notices: tuple[str, ...] = ()
    #: Where the webhook receiver listens (``None``: no receiver; docs/webhooks.md).
    webhook_listen: tuple[str, int] | None = None
    #: The single workspace's webhook secrets (without a workspaces file).
    webhook_secrets: tuple[TokenSource, ...] = ()
    #: While webhooks are healthy, syncs no event announced are read this often.
    webhook_reconcile_interval_seconds: float = defaults.WEBHOOK_RECONCILE_INTERVAL_SECONDS
    #: How long a run polling found may wait for its event before it counts as unannounced (no flag:
    #: Census delivers within seconds and retries for minutes; tests shorten it with the reconcile interval).
    webhook_announcement_grace_seconds: float = defaults.WEBHOOK_ANNOUNCEMENT_GRACE_SECONDS
    #: Deliveries a second one source address may make to the receiver.
    webhook_max_requests_per_second: float = defaults.WEBHOOK_MAX_REQUESTS_PER_SECOND
    #: Where the run ledgers are stored so that a restart counts on (``None``: not stored; docs/metrics.md).
    storage_path: str | None = None

    def watched(self) -> tuple[Workspace, ...]:
        """The named workspaces to watch: the file's, or the one the flags describe."""
        if self.config_file is not None or self.discoveries:
            return self.workspaces  # V2 flags without a group: every group is found by discovery
        single = Workspace(
            self.workspace,
            self.api_url,
            self.token,
            self.api_version,
            self.group_id,
            webhook_secrets=self.webhook_secrets,
        )
        return (single,)
