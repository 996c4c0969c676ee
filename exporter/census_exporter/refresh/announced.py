"""Announced reads: the syncs webhook events marked, read at once, beside any full refresh (see
:mod:`.announcements`).

One workspace has at most one announced read running, on a thread of its own (not one of the fleet's
refresh threads, which may all be busy with full refreshes): it takes the marked syncs it knows (read at
least once) a batch at a time, reads each from the current snapshot's state, and swaps each batch in as
soon as it is read, so an event never waits behind a full refresh round, and a scrape never waits on an
announced read (scrapes wait only on full refreshes). No listing: the TTL is not renewed and nothing about
absence or the API's health is learnt. A sync whose read fails keeps its state and is read first by the
next full refresh.

A full refresh and an announced read may read one sync at once, each from the ledger it started from. At
each swap the newer read wins (:func:`merged`): a full refresh keeps the state an announced read swapped in
during the round (and marks the sync again when its own read counted something too); an announced read
whose sync a full refresh advanced meanwhile is dropped and the sync marked again. Each run is then counted
once, by the read whose ledger the next one continues from.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from census_exporter.census.models.fields import bounded_text
from census_exporter.census.models.syncs import Sync
from census_exporter.ledger import SyncLedger
from census_exporter.refresh.announcements import Announcements, known_ids
from census_exporter.refresh.one_sync import RefreshSettings
from census_exporter.refresh.reporting import LABEL_LOG_LIMIT, RefreshLog, SyncOutcome
from census_exporter.refresh.rounds import Built, RoundReader
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.workers import DaemonPool

log = logging.getLogger("census_exporter.refresh.refresher")

#: One announced read's results, by sync: the state it read from and its outcome.
Reads = Mapping[int, tuple[SyncState, SyncOutcome]]


def merged(
    built: Mapping[int, SyncState],
    current: Mapping[int, SyncState],
    bases: Mapping[int, SyncLedger | None],
) -> tuple[dict[int, SyncState], set[int]]:
    """``built``'s syncs, but those an announced read advanced since the round read them keep the current
    state (with ``built``'s definition and absence); and which syncs kept it.

    A sync was advanced meanwhile when its current ledger is neither the one the round started from
    (``bases``; without an entry, ``built``'s own) nor ``built``'s.
    """
    syncs: dict[int, SyncState] = {}
    kept: set[int] = set()
    for sync_id, state in built.items():
        now = current.get(sync_id)
        if (
            now is None
            or now.ledger is None
            or now.ledger is state.ledger
            or now.ledger is bases.get(sync_id, state.ledger)
        ):
            syncs[sync_id] = state
            continue
        syncs[sync_id] = replace(
            now, sync=state.sync, missing_listings=state.missing_listings, missing_since=state.missing_since
        )
        kept.add(sync_id)
    return syncs, kept


def applied(
    current: Mapping[int, SyncState], reads: Reads
) -> tuple[dict[int, SyncState], set[int], list[int]]:
    """``current`` with the announced ``reads`` whose sync nothing advanced since they read it; the syncs
    swapped in, and those a full refresh advanced meanwhile (to be marked again, and read from that)."""
    syncs = dict(current)
    swapped: set[int] = set()
    again: list[int] = []
    for sync_id, (before, outcome) in reads.items():
        now = current.get(sync_id)
        if now is None:
            continue  # dropped by a full refresh meanwhile (gone)
        if now.ledger is not before.ledger:
            again.append(sync_id)
            continue
        syncs[sync_id] = replace(
            outcome.state, missing_listings=now.missing_listings, missing_since=now.missing_since
        )
        swapped.add(sync_id)
    return syncs, swapped, again


def after_round(announcements: Announcements, built: Built, kept: set[int]) -> None:
    """After a full refresh's swap: the syncs it found runs of await their event, unless an announced read
    swapped them in during the round (``kept``); those the round read too are marked to be read again."""
    announcements.polled({sync_id: run for sync_id, run in built.found.items() if sync_id not in kept})
    for sync_id in kept:
        if built.snapshot.syncs[sync_id].ledger is not built.bases.get(sync_id):
            announcements.announce(sync_id)


class AnnouncedReads:
    """The announced reads of one workspace; :meth:`wake` after marks, :meth:`close` at the end."""

    def __init__(
        self,
        announcements: Announcements,
        rounds: RoundReader,
        settings: RefreshSettings,
        logs: RefreshLog,
        stopping: threading.Event,
        *,
        snapshot: Callable[[], Snapshot],
        swap: Callable[[Reads], set[int]],
        context: Callable[[], contextvars.Context],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._announcements = announcements
        self._rounds = rounds
        self._settings = settings
        self._logs = logs
        self._stopping = stopping
        self._snapshot = snapshot
        self._swap = swap
        self._context = context
        self._clock = clock
        self._lock = threading.Lock()
        #: Whether the read is running, and whether marks came while it ran (it then looks again).
        self._running = False
        self._again = False
        self._fetchers: DaemonPool | None = None

    def wake(self) -> None:
        """Read the marked syncs now, on the announced read's thread (or let the running one look again)."""
        if self._stopping.is_set():
            return
        snapshot = self._snapshot()
        if not snapshot.listed:
            return
        with self._lock:
            if self._running:
                self._again = True
                return
            if not self._announcements.has_known(known_ids(snapshot.syncs)):
                return
            self._running = True
            self._again = False
            if self._fetchers is None:
                self._fetchers = DaemonPool(self._batch(), f"census-announced-{self._settings.workspace}")
        thread = threading.Thread(
            target=self._context().run,
            args=(self._run,),
            name=f"census-announced-{self._settings.workspace}",
            daemon=True,
        )
        thread.start()

    def close(self) -> None:
        """Stop the fetchers (the stopping event ends the read)."""
        with self._lock:
            fetchers, self._fetchers = self._fetchers, None
        if fetchers is not None:
            fetchers.shutdown()

    def _batch(self) -> int:
        return max(1, self._settings.concurrency)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._read_batch():
                    continue
                with self._lock:
                    if not self._again:
                        return
                    self._again = False
        except Exception as error:  # noqa: BLE001 - the next event or full refresh tries again
            if not self._stopping.is_set():
                self._logs.once(
                    ("announced read", type(error).__name__),
                    "the reads webhook events asked for failed unexpectedly: %s; the next refresh reads them",
                    type(error).__name__,
                    level=logging.ERROR,
                )
        finally:
            with self._lock:
                self._running = False

    def _read_batch(self) -> bool:
        """Read and swap in the next batch of marked syncs; False when none is marked."""
        snapshot = self._snapshot()
        taken = self._announcements.take_known(known_ids(snapshot.syncs), self._batch())
        fetchers = self._fetchers
        if not taken or fetchers is None:
            return False
        deadline = self._clock() + self._settings.refresh_timeout_seconds
        known: dict[int, SyncState | None] = {sync_id: snapshot.syncs[sync_id] for sync_id in taken}
        jobs = {sync_id: snapshot.syncs[sync_id].sync for sync_id in taken}
        results = self._rounds.read(
            taken, jobs, known=known, deadline=deadline, fetchers=fetchers, publish=None
        )
        done: dict[int, tuple[SyncState, SyncOutcome]] = {}
        failed: list[int] = []
        for sync_id in taken:
            result = results.get(sync_id)
            before = snapshot.syncs[sync_id]
            if isinstance(result, SyncOutcome):
                done[sync_id] = (before, result)
                continue
            failed.append(sync_id)
            self._logs.once(
                ("announced read failed", sync_id),
                "sync %s (%s): the read a webhook event asked for failed (%s); the next refresh reads it",
                sync_id,
                bounded_text(before.sync.label, LABEL_LOG_LIMIT),
                type(result).__name__ if result is not None else "not read",
            )
        self._announcements.again(failed)
        swapped = self._swap(done)
        outcomes: list[tuple[Sync, SyncOutcome]] = [
            (done[sync_id][0].sync, done[sync_id][1]) for sync_id in taken if sync_id in swapped
        ]
        self._logs.failed_runs(outcomes, first_refresh=False, watched=len(snapshot.syncs))
        return True
