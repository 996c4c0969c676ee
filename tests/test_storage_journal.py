"""The state file's journal (``--storage.path``): a save that changes a few ledgers (a webhook event's read
changes one) appends them instead of rewriting every ledger of the workspace; a restart restores the state
file plus its journal, and a torn last line (a crash while it was written) is not taken."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import DEFAULT_DURATION_BUCKETS, REMEMBERED_RUN_IDS, SyncLedger
from census_exporter.ledger_document import Restored
from census_exporter.ledger_files import JOURNAL_MIN_BYTES
from census_exporter.run_counters import RunCounters
from census_exporter.run_ids import RunIds
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.storage import LedgerFile, Storage

SYNCS = 2_000
EVENTS = 300


def _ledger(sync_id: int, completed: int) -> SyncLedger:
    """A ledger in its steady state: the most run ids it remembers, some counts."""
    first = sync_id * 100_000
    ids = list(range(first, first + REMEMBERED_RUN_IDS + completed))[-REMEMBERED_RUN_IDS:]
    counters = RunCounters.of({"completed": completed}, [completed, completed, 0, 0, 0], [0] * 13, 1.5)
    return SyncLedger(
        recent_run_ids=RunIds(ids),
        pending_run_ids=frozenset(),
        counters=counters,
        buckets=DEFAULT_DURATION_BUCKETS,
        floor_run_id=first,
        last_success_at=1.7e9,
        watched_since=1.69e9,
    )


def _snapshot(ledgers: dict[int, SyncLedger]) -> Snapshot:
    syncs = {
        sync_id: SyncState(
            sync=Sync(
                sync_id, f"sync {sync_id}", "upsert", 1, 2, "Contact", "hourly", False, "healthy", None, None
            ),
            ledger=ledger,
        )
        for sync_id, ledger in ledgers.items()
    }
    return Snapshot(workspace="w", syncs=syncs, listed=True)


def _file(storage: Storage) -> LedgerFile:
    return storage.workspace("w", DEFAULT_DURATION_BUCKETS)


def _restored(directory: Path) -> Restored:
    """What a restart over ``directory`` restores: the state file and its journal, read by a new Storage."""
    storage = Storage(directory)
    try:
        return _file(storage).load()
    finally:
        storage.close()


@pytest.mark.slow  # 300 saves of a 2,000-sync ledger file, 18-30 s
def test_a_save_per_event_at_2000_syncs_writes_its_ledger_not_the_workspace(tmp_path: Path) -> None:
    ledgers = {sync_id: _ledger(sync_id, 0) for sync_id in range(1, SYNCS + 1)}
    storage = Storage(tmp_path)
    try:
        ledger_file = _file(storage)
        ledger_file.save(_snapshot(ledgers), 1)
        whole = ledger_file.bytes_written
        assert whole == ledger_file.path.stat().st_size
        # Each event: an announced read advanced one sync's ledger, and the snapshot is saved before the swap.
        for event in range(EVENTS):
            sync_id = 1 + (event * 7) % SYNCS
            ledgers[sync_id] = _ledger(
                sync_id, ledgers[sync_id].counters.runs_by_status.get("completed", 0) + 1
            )
            ledger_file.save(_snapshot(ledgers), 2 + event)
        per_event = (ledger_file.bytes_written - whole) / EVENTS
        # Before the journal every one of these saves rewrote (and fsynced) the whole file.
        assert whole > 1_000_000
        # One ledger's line (about 1.5 KB), plus the rewrites the journal's bound brings, spread over the
        # events: measured 3.3 MB per event before the journal (the whole file), 1.7 KB after (3.3 KB over
        # the long run, with the rewrites).
        assert per_event < 16 * 1024, (per_event, whole)
        assert per_event < whole / 100, (per_event, whole)
    finally:
        storage.close()
    # The restart restores the state file and its journal: every ledger as last saved.
    restored = _restored(tmp_path)
    assert dict(restored.ledgers) == ledgers


def test_the_journal_outgrowing_the_state_file_rewrites_it(tmp_path: Path) -> None:
    ledgers = {sync_id: _ledger(sync_id, 0) for sync_id in range(1, 4)}
    storage = Storage(tmp_path)
    try:
        ledger_file = _file(storage)
        ledger_file.save(_snapshot(ledgers), 1)
        journal = ledger_file.path.with_suffix(".journal")
        rewrites = 0
        for event in range(400):
            ledgers[1] = _ledger(1, event + 1)
            before = ledger_file.path.stat().st_ino
            ledger_file.save(_snapshot(ledgers), 2 + event)
            rewrites += ledger_file.path.stat().st_ino != before
            assert not journal.exists() or journal.stat().st_size <= JOURNAL_MIN_BYTES
        assert rewrites >= 1
    finally:
        storage.close()
    assert _restored(tmp_path).ledgers[1] == ledgers[1]


def test_a_torn_last_line_is_not_taken_and_the_next_save_rewrites_the_state_file(tmp_path: Path) -> None:
    ledgers = {sync_id: _ledger(sync_id, 0) for sync_id in range(1, 4)}
    storage = Storage(tmp_path)
    try:
        ledger_file = _file(storage)
        ledger_file.save(_snapshot(ledgers), 1)
        ledgers[2] = _ledger(2, 1)
        ledger_file.save(_snapshot(ledgers), 2)  # a whole line
        saved = dict(ledgers)
        ledgers[2] = _ledger(2, 2)
        ledger_file.save(_snapshot(ledgers), 3)
    finally:
        storage.close()
    journal = ledger_file.path.with_suffix(".journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    journal.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])  # killed while the second was written
    storage = Storage(tmp_path)
    try:
        reopened = _file(storage)
        restored = reopened.load()
        assert dict(restored.ledgers) == saved  # the whole line taken, the torn one not (never swapped in)
        # Kept until the next save has rewritten the state file: a crash before it restores as much again.
        assert journal.read_bytes() == lines[0] + lines[1][: len(lines[1]) // 2]
        inode = reopened.path.stat().st_ino
        ledgers = dict(saved)
        ledgers[3] = _ledger(3, 1)
        reopened.save(_snapshot(ledgers), 1)
        assert reopened.path.stat().st_ino != inode  # nothing is appended after a torn line
        assert not journal.exists()
        assert json.loads(reopened.path.read_bytes())["syncs"]["3"]["counters"]["runs"] == {"completed": 1}
    finally:
        storage.close()


def test_a_journal_line_naming_another_state_file_is_not_taken(tmp_path: Path) -> None:
    ledgers = {1: _ledger(1, 0)}
    storage = Storage(tmp_path)
    try:
        ledger_file = _file(storage)
        ledger_file.save(_snapshot(ledgers), 1)
        ledger_file.save(_snapshot({1: dataclasses.replace(_ledger(1, 1))}), 2)
        journal = ledger_file.path.with_suffix(".journal")
        line = journal.read_bytes()
        # A rewrite names a new journal id before the old journal goes: a crash between the two leaves the
        # old journal, whose lines the new state file must not take.
        ledger_file.save(_snapshot({1: _ledger(1, 1), 2: _ledger(2, 0)}), 3)
        journal.write_bytes(line)
    finally:
        storage.close()
    restored = _restored(tmp_path)
    assert restored.ledgers[1] == _ledger(1, 1) and restored.ledgers[2] == _ledger(2, 0)
