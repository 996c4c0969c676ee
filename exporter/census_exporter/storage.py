"""Ledger storage (``--storage.path``): each workspace's run ledgers on disk, so a restart counts on.

One file per workspace, ``ledgers-<hash of the workspace name>.json``, holding every sync's ledger (the run
ids accounted for, the pending runs, the counters, the streak and outcome times) with the sync's definition
as last listed (a restored sync missing from the first listing is awaited like any missing sync), and the
counters of syncs that left the workspace (they stay in its totals). The refresher saves it before each
refresh is swapped in, so what a scrape can see is never ahead of what a restart restores; a restart then
pages each sync back to the runs it knows and counts every run that finished meanwhile exactly once.

* Writes are atomic: a temporary file, fsync, rename, fsync of the directory; a save of a few ledgers is a
  journal line instead (its bound and crash window: :mod:`census_exporter.ledger_files`).
* The document (header and syncs, encoded and decoded whole) is :mod:`census_exporter.ledger_document`,
  each value's encoding and checked reading :mod:`census_exporter.ledger_format`.
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
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import SyncLedger
from census_exporter.ledger_document import FORMAT, VERSION, Decoded, LedgerDocument, Restored
from census_exporter.ledger_files import (
    JOURNAL_MIN_BYTES,
    JournalWriter,
    journal_line,
    journal_path,
    read_regular_file,
    write_atomically,
)
from census_exporter.ledger_format import Identity, Unusable
from census_exporter.run_counters import RunCounters
from census_exporter.snapshot import Snapshot
from census_exporter.totals import covers, sum_counters

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "MAX_STATE_BYTES",
    "VERSION",
    "Identity",
    "LedgerFile",
    "Restored",
    "Storage",
    "StorageError",
]

#: A state file larger than this is neither written (the previous one stays) nor read (it is set aside).
#: A ledger takes about 5 KB with its 500 remembered run ids; this leaves room for some 25,000 syncs.
MAX_STATE_BYTES = 128 * 1024 * 1024
LOCK_FILE = "census-exporter.lock"


class StorageError(Exception):
    """The storage directory cannot be used (not creatable, not writable, or locked by another exporter)."""


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
        #: Whether the directory's lock is still this process's (checked before each write).
        self._held = held
        self._buckets = tuple(buckets)
        #: The state file's bytes: its header and each sync's JSON (:mod:`.ledger_document`).
        self._document = LedgerDocument(workspace, identity or Identity(api_url=""), self._buckets)
        self._lock = threading.Lock()
        self._generation = -1
        #: The journal beside the state file (:mod:`.ledger_files`), the id the state file gives it (None:
        #: the next save rewrites the state file), and the state file's size (the journal's bound).
        self._journal = JournalWriter(journal_path(self.path))
        self._journal_id: str | None = None
        self._state_bytes = 0
        #: Bytes written to the state file and the journal since start (the cost of saves, measured).
        self.bytes_written = 0
        #: The ledgers last saved (or restored): a save with the same objects writes nothing.
        self._saved: dict[int, SyncLedger] = {}
        self._saved_syncs: dict[int, Sync] = {}
        self._departed = sum_counters((), len(self._buckets))
        self._failed_logged_at = -math.inf

    # ------------------------------------------------------------------ reading

    def load(self) -> Restored:
        """The stored ledgers, or nothing (the file is then set aside, with one log line, if it exists)."""
        try:
            data = read_regular_file(self.path, MAX_STATE_BYTES)
        except FileNotFoundError:
            log.info("workspace %s: no stored ledgers in %s; counting starts now", self._workspace, self.path)
            return Restored()
        except Unusable as error:
            return self._set_aside(str(error))
        except OSError as error:
            if error.errno == errno.ELOOP:
                return self._set_aside("a symbolic link, not a regular file")
            return self._set_aside(f"unreadable: {error.strerror or error}")
        self._journal_id, self._state_bytes = None, len(data)
        # No journal written with this state file grows past this (``_append``): a larger one is not ours.
        journal_max = max(len(data), JOURNAL_MIN_BYTES)
        try:
            decoded = self._document.decode(data, self._journal.path, journal_max, self._buckets_changed)
        except Unusable as error:
            return self._set_aside(str(error))
        self._journal_id, restored = decoded.journal_id, decoded.restored
        if decoded.journal_taken is not None:
            # A journal cut short stays until the next save's rewrite: a crash before it restores as much.
            self._journal.restart(decoded.journal_taken)
        with self._lock:
            self._saved = dict(restored.ledgers)
            self._saved_syncs = dict(restored.syncs)
            if restored.departed is not None:
                self._departed = restored.departed
        self._log_restored(decoded)
        return restored

    def _log_restored(self, decoded: Decoded) -> None:
        """One line: what was restored, and what of the journal was not (setting an unusable one aside)."""
        count = len(decoded.restored.ledgers)
        if decoded.journal_unusable is not None:
            log.warning(
                "workspace %s: restored the ledgers of %d syncs from %s without its journal, which is not "
                "usable (%s) and %s; they are as the state file last stored them, without the saves since",
                self._workspace,
                count,
                self.path,
                decoded.journal_unusable,
                self._set_journal_aside(),
            )
        elif decoded.journal_stopped is not None:
            log.warning(
                "workspace %s: restored the ledgers of %d syncs from %s and %d of its journal's saves, whose "
                "rest is not taken (%s); the next save rewrites the state file",
                self._workspace,
                count,
                self.path,
                decoded.journal_saves,
                decoded.journal_stopped,
            )
        else:
            log.info(
                "workspace %s: restored the ledgers of %d syncs from %s; counting continues from them",
                self._workspace,
                count,
                self.path,
            )

    def _set_journal_aside(self) -> str:
        """Move the journal out of the way (a link is moved, never followed); what became of it."""
        path = self._journal.path
        aside = path.with_name(path.name + ".set-aside")
        try:
            os.replace(path, aside)
        except OSError as error:
            return f"could not be set aside ({error.strerror or error})"
        return f"was set aside as {aside}"

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

    def _buckets_changed(self) -> None:
        log.warning(
            "workspace %s: the duration buckets changed since the ledgers were stored; run and record "
            "counters continue, the duration histograms start again from 0",
            self._workspace,
        )

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
            changed = [
                sync_id
                for sync_id, ledger in ledgers.items()
                if ledger is not self._saved.get(sync_id)
                or definitions[sync_id] != self._saved_syncs.get(sync_id)
            ]
            same_syncs = not left and ledgers.keys() == self._saved.keys()
            if same_syncs and not changed:
                return
            if not self._held():
                self._failed("its lock file was removed or replaced: the directory may be another exporter's")
                return
            if same_syncs and self._journal_id is not None and self._append(changed, ledgers, definitions):
                self._saved, self._saved_syncs = ledgers, definitions
                return
            # Only their record totals and durations stay in the workspace's totals (no run counts).
            departed = sum_counters([self._departed, *left], len(self._buckets)) if left else self._departed
            self._rewrite(ledgers, definitions, departed)

    def close(self) -> None:
        """At a clean stop: fold the journal into the state file (a restart then reads one file)."""
        with self._lock:
            if self._journal.size and self._saved and self._held():
                self._rewrite(self._saved, self._saved_syncs, self._departed)
            self._journal.close()

    def _rewrite(
        self, ledgers: dict[int, SyncLedger], definitions: dict[int, Sync], departed: RunCounters
    ) -> None:
        """Replace the state file whole, naming a new journal (lock held); a failure is logged."""
        journal_id = secrets.token_hex(8)
        data = self._document.encode(ledgers, definitions, departed, journal_id)
        if len(data) > MAX_STATE_BYTES:
            self._failed(f"{len(data)} bytes, more than {MAX_STATE_BYTES}")
            return
        try:
            write_atomically(self.path, data)
            # The state file names the new journal id now: the old journal's lines are not taken.
            self._journal.restart()
        except OSError as error:
            self._failed(error.strerror or str(error))
            return
        self.bytes_written += len(data)
        self._journal_id, self._state_bytes = journal_id, len(data)
        self._saved, self._saved_syncs, self._departed = ledgers, definitions, departed

    def _append(
        self, changed: list[int], ledgers: Mapping[int, SyncLedger], definitions: Mapping[int, Sync]
    ) -> bool:
        """Append the ``changed`` ledgers to the journal (lock held); False when the state file is due for a
        rewrite instead (the journal would outgrow it) or the append failed."""
        assert self._journal_id is not None
        encoded = self._document.encoded_sync
        line = journal_line(
            self._journal_id,
            [
                b'"%d":%s' % (sync_id, encoded(sync_id, ledgers[sync_id], definitions[sync_id]))
                for sync_id in sorted(changed)
            ],
        )
        if self._journal.size + len(line) > max(self._state_bytes, JOURNAL_MIN_BYTES):
            return False
        try:
            self._journal.append(line)
        except OSError as error:
            self._failed(f"its journal: {error.strerror or error}")
            self._journal_id = None  # a line may be torn: rewrite the state file next
            return False
        self.bytes_written += len(line)
        return True

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
