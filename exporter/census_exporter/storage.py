"""Ledger storage (``--storage.path``): each workspace's run ledgers on disk, so a restart counts on.

One file per workspace, ``ledgers-<hash of the workspace name>.json``, holding every sync's ledger (the run
ids accounted for, the pending runs, the counters, the streak and outcome times) with the sync's definition
as last listed (a restored sync missing from the first listing is awaited like any missing sync), and the
counters of syncs that left the workspace (they stay in its totals). The refresher saves it before each
refresh is swapped in, so what a scrape can see is never ahead of what a restart restores; a restart then
pages each sync back to the runs it knows and counts every run that finished meanwhile exactly once.

* Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the directory.
* The format (encoding, and the checked reading of every value) is :mod:`census_exporter.ledger_format`.
* Bounded: a file above :data:`MAX_STATE_BYTES` is neither written nor read; each ledger is bounded by the
  ledger's own caps, and every value read is checked against them.
* Versioned (:data:`FORMAT`, :data:`VERSION`): a file that is corrupt, of another format or version, or of
  another workspace (its label, API URL, Census workspace or group id, or, without an id, its token, kept
  only as a salted SHA-256) is set aside (renamed ``*.set-aside``, replacing an older one) with one log
  line, and the workspace starts fresh.
* One exporter per directory: a lock (``flock``) held for the process's life refuses a second one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import SyncLedger
from census_exporter.ledger_format import (
    MAX_ID,
    Unusable,
    checked_floats,
    checked_int,
    counters_json,
    decode_counters,
    decode_ledger,
    decode_sync,
    ledger_json,
    no_repeated_keys,
    parse_key,
    short,
    sync_json,
    to_json,
)
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import Snapshot
from census_exporter.totals import covers, sum_counters

log = logging.getLogger(__name__)

FORMAT = "census-exporter/ledgers"
VERSION = 2
#: A state file larger than this is neither written (the previous one stays) nor read (it is set aside).
#: A ledger takes about 5 KB with its 500 remembered run ids; this leaves room for some 25,000 syncs.
MAX_STATE_BYTES = 128 * 1024 * 1024
LOCK_FILE = "census-exporter.lock"


class StorageError(Exception):
    """The storage directory cannot be used (not creatable, not writable, or locked by another exporter)."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a workspace's state file held: each sync's ledger and definition, and the counters of syncs
    that left."""

    ledgers: Mapping[int, SyncLedger] = field(default_factory=dict)
    departed: RunCounters | None = None
    syncs: Mapping[int, Sync] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Identity:
    """Which Census workspace a state file belongs to, beyond its label: a directory pointed at another
    account's workspace with the same label must not continue its counts.

    ``scope`` is the Census workspace id (``workspace:123``) or V2 group id (``group:abc``) when known;
    without one the token tells workspaces apart, stored only as a salted hash (a rotated token starts
    afresh).
    """

    api_url: str
    scope: str | None = None
    token: Callable[[], str] | None = field(default=None, repr=False, compare=False)


class Storage:
    """The storage directory, locked for this process; hands out one :class:`LedgerFile` per workspace."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock = os.open(
                self.directory / LOCK_FILE,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                0o600,
            )
        except OSError as error:
            raise StorageError(f"cannot use {self.directory}: {error.strerror or error}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise StorageError(f"{self.directory} is in use by another census-exporter") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            self.close()
            raise StorageError(f"cannot write to {self.directory}")

    def workspace(
        self, name: str, buckets: tuple[float, ...], identity: Identity | None = None
    ) -> LedgerFile:
        """The state file of workspace ``name`` (of the Census workspace ``identity`` names, if given)."""
        return LedgerFile(self.directory, name, buckets, identity, self.still_held)

    def still_held(self) -> bool:
        """Whether the lock file at the directory is still the one this process locked: after the directory
        was removed (and maybe made again by another exporter, which then holds a new lock), writing on
        would put two exporters' counts in one file."""
        lock = self._lock
        if lock < 0:
            return False
        try:
            held = os.fstat(lock)
            there = os.stat(self.directory / LOCK_FILE, follow_symlinks=False)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)

    def close(self) -> None:
        """Release the directory's lock (the process's end does too)."""
        lock, self._lock = self._lock, -1
        if lock >= 0:
            with contextlib.suppress(OSError):
                os.close(lock)


class LedgerFile:
    """One workspace's state file: :meth:`load` once at start, then :meth:`save` before each swap."""

    def __init__(
        self,
        directory: Path,
        workspace: str,
        buckets: tuple[float, ...],
        identity: Identity | None = None,
        held: Callable[[], bool] = lambda: True,
    ) -> None:
        digest = hashlib.sha256(workspace.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        self.path = directory / f"ledgers-{digest}.json"
        self._workspace = workspace
        self._identity = identity or Identity(api_url="")
        #: Whether the directory's lock is still this process's (checked before each write).
        self._held = held
        self._salt = secrets.token_hex(16)
        self._buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._generation = -1
        #: The ledgers last saved (or restored): a save with the same objects writes nothing.
        self._saved: dict[int, SyncLedger] = {}
        self._saved_syncs: dict[int, Sync] = {}
        #: Each saved ledger's JSON, by sync: an unchanged ledger and definition are not encoded again.
        self._encoded: dict[int, tuple[SyncLedger, Sync, bytes]] = {}
        self._departed = sum_counters((), len(self._buckets))
        self._failed_logged_at = -math.inf

    # ------------------------------------------------------------------ reading

    def load(self) -> Restored:
        """The stored ledgers, or nothing (the file is then set aside, with one log line, if it exists)."""
        try:
            # Neither through a link nor blocked by a named pipe: only a regular file of its own is read.
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(descriptor, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise Unusable("not a regular file")
                if info.st_size > MAX_STATE_BYTES:
                    raise Unusable(f"{info.st_size} bytes, more than {MAX_STATE_BYTES}")
                data = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            log.info("workspace %s: no stored ledgers in %s; counting starts now", self._workspace, self.path)
            return Restored()
        except Unusable as error:
            return self._set_aside(str(error))
        except OSError as error:
            if error.errno == errno.ELOOP:
                return self._set_aside("a symbolic link, not a regular file")
            return self._set_aside(f"unreadable: {error.strerror or error}")
        try:
            restored = self._decode(data)
        except Unusable as error:
            return self._set_aside(str(error))
        with self._lock:
            self._saved = dict(restored.ledgers)
            self._saved_syncs = dict(restored.syncs)
            if restored.departed is not None:
                self._departed = restored.departed
        log.info(
            "workspace %s: restored the ledgers of %d syncs from %s; counting continues from them",
            self._workspace,
            len(restored.ledgers),
            self.path,
        )
        return restored

    def _set_aside(self, reason: str) -> Restored:
        aside = self.path.with_name(self.path.name + ".set-aside")
        try:
            os.replace(self.path, aside)
            where = f"set aside as {aside}"
        except OSError as error:
            where = f"could not be set aside ({error.strerror or error})"
        log.warning(
            "workspace %s: stored ledgers in %s are not usable (%s); %s, counting starts fresh",
            self._workspace,
            self.path,
            reason,
            where,
        )
        return Restored()

    def _decode(self, data: bytes) -> Restored:
        try:
            document = json.loads(data, object_pairs_hook=no_repeated_keys)
        except Unusable:
            raise
        except (ValueError, RecursionError) as error:
            raise Unusable(f"not JSON: {type(error).__name__}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise Unusable("not a census-exporter ledger file")
        if document.get("version") != VERSION:
            raise Unusable(f"format version {short(document.get('version'))}, this exporter reads {VERSION}")
        if document.get("workspace") != self._workspace:
            raise Unusable(f"it belongs to workspace {short(document.get('workspace'))}")
        if not self._same_census_workspace(document):
            raise Unusable(
                "it belongs to another Census workspace (its API URL, workspace id or token differ)"
            )
        stored_buckets = checked_floats(document.get("buckets"), "buckets", 64)
        same_buckets = tuple(stored_buckets) == self._buckets
        if not same_buckets:
            log.warning(
                "workspace %s: the duration buckets changed since the ledgers were stored; run and record "
                "counters continue, the duration histograms start again from 0",
                self._workspace,
            )
        syncs = document.get("syncs")
        if not isinstance(syncs, dict):
            raise Unusable("no syncs")
        ledgers: dict[int, SyncLedger] = {}
        definitions: dict[int, Sync] = {}
        for key, value in syncs.items():
            sync_id = checked_int(parse_key(key), "sync id", 0, MAX_ID)
            ledgers[sync_id] = decode_ledger(value, len(stored_buckets), same_buckets, self._buckets)
            definitions[sync_id] = decode_sync(value.get("sync"), sync_id)
        departed = decode_counters(document.get("departed"), len(stored_buckets), same_buckets, self._buckets)
        return Restored(MappingProxyType(ledgers), departed, MappingProxyType(definitions))

    def _same_census_workspace(self, document: Mapping[str, Any]) -> bool:
        identity = self._identity
        if document.get("api_url") != identity.api_url or document.get("scope") != identity.scope:
            return False
        salt, stored = document.get("salt"), document.get("token_sha256")
        if identity.scope is not None or identity.token is None:
            return identity.scope is not None or stored is None
        if not isinstance(salt, str) or not isinstance(stored, str):
            return False
        return secrets.compare_digest(stored, self._token_digest(salt) or "")

    def _token_digest(self, salt: str) -> str | None:
        """The salted hash of the current token (None: no token source, or it cannot be read now)."""
        if self._identity.token is None:
            return None
        try:
            token = self._identity.token()
        except Exception:  # noqa: BLE001 - an unreadable token file is reported where requests are made
            return None
        return hashlib.sha256(f"{salt}:{token}".encode("utf-8", "surrogatepass")).hexdigest()

    # ------------------------------------------------------------------ writing

    def save(self, snapshot: Snapshot, generation: int) -> None:
        """Write ``snapshot``'s ledgers (refresh ``generation``) unless nothing changed since the last save.

        A save of an older generation than one already saved (an abandoned refresh ending late) is ignored.
        A failed write is logged (at most every 10 minutes) and leaves the previous file in place.
        """
        if not snapshot.listed:
            return
        ledgers = {
            sync_id: state.ledger for sync_id, state in snapshot.syncs.items() if state.ledger is not None
        }
        definitions = {sync_id: snapshot.syncs[sync_id].sync for sync_id in ledgers}
        with self._lock:
            if generation < self._generation:
                return
            self._generation = generation
            left = [
                before.counters
                for sync_id, before in self._saved.items()
                if (now := ledgers.get(sync_id)) is None
                or (now is not before and not covers(now.counters, before.counters))
            ]
            unchanged = not left and ledgers.keys() == self._saved.keys()
            if (
                unchanged
                and all(ledgers[sync_id] is before for sync_id, before in self._saved.items())
                and all(definitions[sync_id] == before for sync_id, before in self._saved_syncs.items())
            ):
                return
            # Only their record totals and durations stay in the workspace's totals (no run counts).
            departed = sum_counters([self._departed, *left], len(self._buckets)) if left else self._departed
            data = self._encode(ledgers, definitions, departed)
            if len(data) > MAX_STATE_BYTES:
                self._failed(f"{len(data)} bytes, more than {MAX_STATE_BYTES}")
                return
            if not self._held():
                self._failed("its lock file was removed or replaced: the directory may be another exporter's")
                return
            try:
                _write_atomically(self.path, data)
            except OSError as error:
                self._failed(error.strerror or str(error))
                return
            self._saved, self._saved_syncs, self._departed = ledgers, definitions, departed

    def _failed(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._failed_logged_at >= 600:
            self._failed_logged_at = now
            log.warning(
                "workspace %s: cannot store the ledgers in %s (%s); counting goes on, a restart would count "
                "from the last stored state",
                self._workspace,
                self.path,
                reason,
            )

    def _encode(
        self, ledgers: Mapping[int, SyncLedger], definitions: Mapping[int, Sync], departed: RunCounters
    ) -> bytes:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "workspace": self._workspace,
            "api_url": self._identity.api_url,
            "scope": self._identity.scope,
            "salt": self._salt,
            "token_sha256": None if self._identity.scope is not None else self._token_digest(self._salt),
            "saved_at": time.time(),
            "buckets": list(self._buckets),
            "departed": counters_json(departed),
        }
        encoded: dict[int, tuple[SyncLedger, Sync, bytes]] = {}
        parts = []
        for sync_id, ledger in sorted(ledgers.items()):
            sync = definitions[sync_id]
            cached = self._encoded.get(sync_id)
            if cached is None or cached[0] is not ledger or cached[1] != sync:
                cached = (ledger, sync, to_json({**ledger_json(ledger), "sync": sync_json(sync)}))
            encoded[sync_id] = cached
            parts.append(b'"%d":%s' % (sync_id, cached[2]))
        self._encoded = encoded
        return to_json(header)[:-1] + b',"syncs":{' + b",".join(parts) + b"}}"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    # A leftover of a crash is removed, and nothing planted there (a symbolic link) is written through.
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
