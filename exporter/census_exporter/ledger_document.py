"""One workspace's state file as a whole document (``--storage.path``, :mod:`census_exporter.storage`).

The document is a header (:data:`FORMAT`, :data:`VERSION`, the workspace's label and Census identity, the
duration buckets, the counters of syncs that left, the id of the journal it takes) and every sync's ledger
and definition. :class:`LedgerDocument` encodes it (each sync's JSON encoded again only when its ledger or
definition changed) and decodes it checked, with the saves of its journal applied. Each value's encoding
and checked reading is :mod:`census_exporter.ledger_format`; when and where the bytes are written or read
(the lock, the atomic rewrite, the journal's appends, setting a file aside) is :mod:`.storage`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import SyncLedger
from census_exporter.ledger_files import read_journal
from census_exporter.ledger_format import (
    MAX_ID,
    Identity,
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
    same_census_workspace,
    short,
    sync_json,
    to_json,
    token_digest,
)
from census_exporter.run_counters import RunCounters

__all__ = ["FORMAT", "VERSION", "Decoded", "LedgerDocument", "Restored"]

FORMAT = "census-exporter/ledgers"
VERSION = 2


@dataclass(frozen=True, slots=True)
class Restored:
    """What a workspace's state file held: each sync's ledger and definition, and the counters of syncs
    that left."""

    ledgers: Mapping[int, SyncLedger] = field(default_factory=dict)
    departed: RunCounters | None = None
    syncs: Mapping[int, Sync] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded state file: what it held, the journal id the next save may append under (None: the next
    save rewrites the state file), and the bytes of the journal taken (None: the file names no journal, or
    its journal is not usable)."""

    restored: Restored
    journal_id: str | None
    journal_taken: int | None
    #: The journal's saves taken.
    journal_saves: int = 0
    #: Why the journal's lines after those saves are not taken (None: it ends with them).
    journal_stopped: str | None = None
    #: Why the journal is not read at all (not a regular file, too large, unreadable): the state file is
    #: restored alone, and the journal is to be set aside.
    journal_unusable: str | None = None


class LedgerDocument:
    """The state file's bytes for one workspace (of the Census workspace ``identity`` names)."""

    def __init__(self, workspace: str, identity: Identity, buckets: tuple[float, ...]) -> None:
        self._workspace = workspace
        self._identity = identity
        self._buckets = buckets
        self._salt = secrets.token_hex(16)
        #: Each saved ledger's JSON, by sync: an unchanged ledger and definition are not encoded again.
        self._encoded: dict[int, tuple[SyncLedger, Sync, bytes]] = {}

    # ------------------------------------------------------------------ decoding

    def decode(
        self, data: bytes, journal: Path, journal_max_bytes: int, buckets_changed: Callable[[], None]
    ) -> Decoded:
        """The state file ``data`` checked, with the saves of its ``journal`` (at most
        ``journal_max_bytes``) applied up to the first that is not usable; :class:`Unusable` if the state
        file is not this workspace's. ``buckets_changed`` is called when the stored duration buckets are
        not the configured ones (their histograms then start again from 0)."""
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
        if not same_census_workspace(document, self._identity):
            raise Unusable(
                "it belongs to another Census workspace (its API URL, workspace id or token differ)"
            )
        stored_buckets = checked_floats(document.get("buckets"), "buckets", 64)
        same_buckets = tuple(stored_buckets) == self._buckets
        if not same_buckets:
            buckets_changed()
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
        # A view: the journal's saves below show in it.
        restored = Restored(MappingProxyType(ledgers), departed, MappingProxyType(definitions))
        journal_id = document.get("journal")
        if not isinstance(journal_id, str):
            return Decoded(restored, None, None)
        try:
            read = read_journal(journal, journal_id, journal_max_bytes)
        except Unusable as error:
            return Decoded(restored, None, None, journal_unusable=str(error))
        stopped, taken, applied = read.stopped, 0, 0
        for save in read.saves:  # each save replaces the ledgers it holds, oldest first
            try:
                changed = self._decoded_save(save.syncs, ledgers, len(stored_buckets), same_buckets)
            except Unusable as error:
                stopped = f"line {save.line} is not a usable save: {error}"
                break
            for sync_id, (ledger, sync) in changed.items():
                ledgers[sync_id], definitions[sync_id] = ledger, sync
            taken += save.size
            applied += 1
        # After a line not taken nothing is appended: the next save rewrites the state file.
        return Decoded(restored, journal_id if stopped is None else None, taken, applied, stopped)

    def _decoded_save(
        self, syncs: dict[str, Any], ledgers: Mapping[int, SyncLedger], stored: int, same_buckets: bool
    ) -> dict[int, tuple[SyncLedger, Sync]]:
        """The ledgers and definitions one journal save holds, all checked (:class:`Unusable` if one is not
        usable, or names a sync the state file does not hold: no save ever added one)."""
        changed: dict[int, tuple[SyncLedger, Sync]] = {}
        for key, value in syncs.items():
            sync_id = checked_int(parse_key(key), "sync id", 0, MAX_ID)
            if sync_id not in ledgers:
                raise Unusable("a sync the state file does not hold")
            ledger = decode_ledger(value, stored, same_buckets, self._buckets)
            changed[sync_id] = (ledger, decode_sync(value.get("sync"), sync_id))
        return changed

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        ledgers: Mapping[int, SyncLedger],
        definitions: Mapping[int, Sync],
        departed: RunCounters,
        journal_id: str,
    ) -> bytes:
        """The whole state file, naming ``journal_id`` as the journal it takes."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "workspace": self._workspace,
            "api_url": self._identity.api_url,
            "scope": self._identity.scope,
            "salt": self._salt,
            "token_sha256": None
            if self._identity.scope is not None
            else token_digest(self._identity, self._salt),
            "saved_at": time.time(),
            "buckets": list(self._buckets),
            "departed": counters_json(departed),
            "journal": journal_id,
        }
        encoded = self._encoded
        self._encoded = {}
        parts = []
        for sync_id, ledger in sorted(ledgers.items()):
            cached = encoded.get(sync_id)
            if cached is not None:
                self._encoded[sync_id] = cached
            parts.append(b'"%d":%s' % (sync_id, self.encoded_sync(sync_id, ledger, definitions[sync_id])))
        return to_json(header)[:-1] + b',"syncs":{' + b",".join(parts) + b"}}"

    def encoded_sync(self, sync_id: int, ledger: SyncLedger, sync: Sync) -> bytes:
        """The sync's ledger and definition as JSON, encoded again only when either changed."""
        cached = self._encoded.get(sync_id)
        if cached is None or cached[0] is not ledger or cached[1] != sync:
            cached = (ledger, sync, to_json({**ledger_json(ledger), "sync": sync_json(sync)}))
            self._encoded[sync_id] = cached
        return cached[2]
