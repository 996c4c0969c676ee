"""Restart continuity (``--storage.path``, issue 17): ledgers stored, restored, and refused when unusable.

The exporter saves each workspace's ledgers before it swaps a refresh in; a restart pages every sync back
to the runs it knows and counts each run that finished meanwhile exactly once, and its counters continue.
Over real HTTP against the simulator, and with real processes killed with SIGKILL in a burst of runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest

from census_exporter import storage
from census_exporter.census.models.syncs import Sync
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.demo.webhooks import DEMO_WEBHOOK_SECRET, WebhookSender
from census_exporter.ledger import DEFAULT_DURATION_BUCKETS, SyncLedger
from census_exporter.run_counters import RunCounters
from census_exporter.run_ids import RunIds
from census_exporter.snapshot import Snapshot, SyncState
from census_exporter.storage import FORMAT, VERSION, Storage, StorageError
from tests.conftest import TEST_TOKEN, Harness, Scrape, parse_scrape, wait_for
from tests.stack import Process, free_port

SYNCS = (11, 12, 13)
RECORDS = 0  # in the kill test's samples: census_workspace_records_processed_total


def runs_total(scrape: Scrape, sync_id: int) -> float:
    """Every counted run of the sync, whatever its status (0 when absent)."""
    return sum(scrape.all("census_sync_runs_total", sync_id=str(sync_id)).values())


def state_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("ledgers-*.json"))


def workspace_with_history() -> SimulatedWorkspace:
    workspace = SimulatedWorkspace()
    for sync_id in SYNCS:
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
        for _ in range(3):
            workspace.add_run(sync_id, "completed")
    return workspace


# ----------------------------------------------------------------------------- in one process


def test_a_restart_with_the_state_counts_what_finished_meanwhile_once_and_the_counters_continue(
    harness_factory: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = workspace_with_history()
    pending = workspace.add_run(11, "working")
    leaving = 13
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    for k in range(4):
        workspace.add_run(11, "completed", records=10 + k)
        workspace.add_run(12, "failed", error_code="E")
        workspace.add_run(leaving, "completed", records=1000)
    first.refresh()
    before = first.scrape()
    assert [runs_total(before, s) for s in SYNCS] == [4, 4, 4]
    processed_before = before.value("census_workspace_records_processed_total")
    assert processed_before == 10 + 11 + 12 + 13 + 4 * 1000
    # The sync leaves the workspace; its counts stay in the workspace's totals.
    workspace.remove_sync(leaving)
    first.refresh()
    first.exporter.close()

    # While the exporter is down: the pending run finishes, and more runs than one page holds finish.
    workspace.finish_run(pending["id"], records=7)
    for _ in range(30):
        workspace.add_run(11, "completed", records=1)
    workspace.add_run(12, "completed", records=5)
    with caplog.at_level(logging.INFO, logger="census_exporter.storage"):
        second = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
    assert any("restored the ledgers of 2 syncs" in r.getMessage() for r in caplog.records)
    second.refresh()
    after = second.scrape()
    assert runs_total(after, 11) == 4 + 1 + 30
    assert after.value("census_sync_runs_total", sync_id="12", status="failed") == 4
    assert after.value("census_sync_runs_total", sync_id="12", status="completed") == 1
    assert after.value("census_workspace_records_processed_total") == processed_before + 7 + 30 + 5
    # Read again: nothing is counted twice.
    second.refresh()
    again = second.scrape()
    assert [runs_total(again, s) for s in (11, 12)] == [35, 5]
    assert again.value("census_workspace_records_processed_total") == processed_before + 42


def test_without_the_flag_nothing_is_stored(harness_factory: Callable[..., Harness], tmp_path: Path) -> None:
    harness = harness_factory(workspace_with_history())
    harness.refresh()
    assert harness.exporter.storage is None
    assert list(tmp_path.iterdir()) == []


def test_the_state_file_is_replaced_whole_and_private(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = workspace_with_history()
    harness = harness_factory(workspace, storage_path=str(tmp_path))
    harness.refresh()
    (path,) = state_files(tmp_path)
    inode, whole = path.stat().st_ino, path.read_bytes()
    workspace.add_run(11, "completed")
    harness.refresh()
    # One ledger changed: appended to the journal; the state file is never rewritten in place.
    journal = path.with_suffix(".journal")
    assert path.read_bytes() == whole and journal.read_bytes().count(b"\n") == 1
    assert journal.stat().st_mode & 0o777 == 0o600
    workspace.add_sync(14, label="sync 14")
    harness.refresh()  # the set of syncs changed: the state file is replaced whole
    assert path.stat().st_ino != inode  # renamed over, never rewritten in place
    assert not journal.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    document = json.loads(path.read_bytes())
    assert (document["format"], document["version"], document["workspace"]) == (FORMAT, VERSION, "default")


LAST_SUCCESS = rb'"last_success_at":[0-9.e+]+'
UNUSABLE = {
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
    "not ours": lambda good: b'{"groups": []}',
    "newer version": lambda good: good.replace(b'"version":2', b'"version":3'),
    "other workspace": lambda good: good.replace(b'"workspace":"default"', b'"workspace":"other"'),
    "negative count": lambda good: good.replace(b'"completed":1', b'"completed":-1'),
    "a bool for a count": lambda good: good.replace(b'"completed":1', b'"completed":true'),
    "deep nesting": lambda good: b"[" * 100_000,
    "a time beyond now": lambda good: re.sub(LAST_SUCCESS, b'"last_success_at":1e308', good),
    "a time before 1970": lambda good: re.sub(LAST_SUCCESS, b'"last_success_at":-1e18', good),
    "one sync stored twice": lambda good: good.replace(b'"syncs":{"11":', b'"syncs":{"12":'),
}


@pytest.mark.parametrize("damage", sorted(UNUSABLE))
def test_a_corrupt_or_foreign_state_file_is_set_aside_with_one_line_and_counting_starts_fresh(
    harness_factory: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    workspace.add_run(11, "completed")
    first.refresh()
    first.exporter.close()
    (path,) = state_files(tmp_path)
    good = path.read_bytes()
    assert b'"completed":1' in good
    damaged = UNUSABLE[damage](good)
    path.write_bytes(damaged)
    with caplog.at_level(logging.INFO, logger="census_exporter"):
        second = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
    lines = [r.getMessage() for r in caplog.records if "not usable" in r.getMessage()]
    assert len(lines) == 1 and "set aside" in lines[0], lines
    assert path.with_name(path.name + ".set-aside").read_bytes() == damaged
    workspace.add_run(11, "completed")
    second.refresh()  # a baseline: the run before it is history
    assert runs_total(second.scrape(), 11) == 0
    workspace.add_run(11, "completed")
    second.refresh()
    assert runs_total(second.scrape(), 11) == 1
    assert state_files(tmp_path) == [path]  # a fresh file replaced the set-aside one


def test_a_state_file_above_the_size_bound_is_neither_read_nor_written(
    harness_factory: Callable[..., Harness],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    (path,) = state_files(tmp_path)
    size = path.stat().st_size
    first.exporter.close()
    monkeypatch.setattr(storage, "MAX_STATE_BYTES", size // 2)
    with caplog.at_level(logging.WARNING, logger="census_exporter"):
        second = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
        second.refresh()
    messages = [r.getMessage() for r in caplog.records]
    assert any("not usable" in m and "more than" in m for m in messages)
    assert any("cannot store the ledgers" in m for m in messages)
    assert state_files(tmp_path) == []  # set aside, and the new one (as large) was not written


def test_changed_duration_buckets_restart_only_the_histogram(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    workspace.add_run(11, "completed", duration=30)
    first.refresh()
    first.exporter.close()
    second = harness_factory(
        workspace, storage_path=str(tmp_path), api_url=first.simulator.url, duration_buckets=(5.0, 50.0)
    )
    second.refresh()
    scrape = second.scrape()
    assert runs_total(scrape, 11) == 1
    assert scrape.value("census_workspace_run_duration_seconds_count") == 0
    assert scrape.value("census_workspace_run_duration_seconds_bucket", le="50") == 0


def test_one_exporter_per_directory(tmp_path: Path) -> None:
    held = Storage(tmp_path)
    try:
        with pytest.raises(StorageError, match="in use by another census-exporter"):
            Storage(tmp_path)
    finally:
        held.close()
    Storage(tmp_path).close()  # free again


# ----------------------------------------------------------------------------- real processes


@pytest.mark.parametrize("webhooks", [False, True], ids=["polling", "webhooks"])
@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_kill_9_during_a_burst_of_runs_then_a_restart_counts_every_run_once_without_a_reset(
    tmp_path: Path, webhooks: bool
) -> None:
    workspace = workspace_with_history()
    working = {sync_id: workspace.add_run(sync_id, "working")["id"] for sync_id in SYNCS}
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    token = tmp_path / "token"
    token.write_text(TEST_TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = [
        sys.executable,
        "-m",
        "census_exporter",
        f"--census.api-url={simulator.url}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--census.cache-ttl=1",
        "--census.max-requests-per-second=0",
        f"--census.token-file={token}",
        f"--storage.path={tmp_path / 'state'}",
    ]
    sender: WebhookSender | None = None
    if webhooks:
        # Signed events read their syncs at once: most saves are journal lines, not rewrites.
        hooks = free_port()
        secret = tmp_path / "webhook-secret"
        secret.write_text(DEMO_WEBHOOK_SECRET)
        argv += [f"--web.webhook-listen-address=127.0.0.1:{hooks}", f"--web.webhook-secret-file={secret}"]
        sender = WebhookSender(f"http://127.0.0.1:{hooks}/webhooks/census/default").start()
        workspace.run_listeners.append(sender)
    expected = dict.fromkeys((*SYNCS, RECORDS), 0)
    expected_lock = threading.Lock()
    seen: list[dict[int, float]] = []
    stop_burst, stop_scraping = threading.Event(), threading.Event()

    def scrape() -> dict[int, float] | None:
        try:
            response = httpx.get(url, timeout=10)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        parsed = parse_scrape(response.text)
        if not all(parsed.all("census_sync_runs_total", sync_id=str(s)) for s in SYNCS):
            return None
        values = {s: runs_total(parsed, s) for s in SYNCS}
        values[RECORDS] = parsed.value("census_workspace_records_processed_total") or 0.0
        return values

    def scraper() -> None:
        while not stop_scraping.is_set():
            values = scrape()
            if values is not None:
                seen.append(values)

    def burst() -> None:
        k = 0
        while not stop_burst.is_set():
            sync_id = SYNCS[k % len(SYNCS)]
            records = 0
            if k < len(SYNCS) * 20 and k % 20 == 0:
                workspace.finish_run(working[sync_id], records=100)  # pending at the baseline
                records = 100
            elif k % 7 == 0:
                workspace.add_run(sync_id, "failed")
            else:
                workspace.add_run(sync_id, "completed", records=k)
                records = k
            with expected_lock:
                expected[sync_id] += 1
                expected[RECORDS] += records
            k += 1
            stop_burst.wait(0.01)

    process = Process(argv, tmp_path / "first.log")
    threads = [threading.Thread(target=scraper), threading.Thread(target=burst)]
    try:
        wait_for(scrape, timeout=30, what=process.output)  # the baseline is read: counting starts here
        for thread in threads:
            thread.start()
        wait_for(lambda: seen and sum(seen[-1][s] for s in SYNCS) >= 60, timeout=30, what=process.output)
        if webhooks:
            assert list((tmp_path / "state").glob("*.journal")), "no save went to the journal"
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(timeout=10)
        last_seen = dict(seen[-1])
        stop_scraping.set()
        threads[0].join(timeout=15)
        # The burst goes on while the exporter is down.
        wait_for(lambda: sum(expected[s] for s in SYNCS) >= sum(last_seen[s] for s in SYNCS) + 60, timeout=30)
        seen.clear()
        stop_scraping.clear()
        restarted = Process(argv, tmp_path / "second.log")
        threads[0] = threading.Thread(target=scraper)
        threads[0].start()
        try:
            wait_for(lambda: seen, timeout=30, what=restarted.output)
            assert "restored the ledgers of 3 syncs" in restarted.log.read_text()
            first_after = seen[0]
            assert all(first_after[s] >= last_seen[s] for s in (*SYNCS, RECORDS)), (first_after, last_seen)
            stop_burst.set()
            threads[1].join(timeout=15)
            with expected_lock:
                final = dict(expected)
            assert sum(final[s] for s in SYNCS) >= sum(last_seen[s] for s in SYNCS) + 60  # while it was down
            wait_for(lambda: seen[-1] == final, timeout=30, what=lambda: f"{seen[-1]} != {final}")
            # Counters never went down after the restart, and another refresh counts nothing more.
            for earlier, later in itertools.pairwise(seen):
                assert all(later[s] >= earlier[s] for s in (*SYNCS, RECORDS))
            assert wait_for(scrape) == final
        finally:
            stop_scraping.set()
            threads[0].join(timeout=15)
            restarted.stop()
    finally:
        stop_burst.set()
        stop_scraping.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=15)
        process.stop()
        simulator.close()
        if sender is not None:
            sender.close()


def test_the_cli_refuses_a_directory_another_exporter_holds_in_one_line(tmp_path: Path) -> None:
    held = Storage(tmp_path)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "census_exporter",
                "--demo",
                "--web.listen-address=127.0.0.1:0",
                f"--storage.path={tmp_path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        held.close()
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert error == [
        f"census-exporter: error: argument --storage.path: {tmp_path} is in use by another census-exporter"
    ]


def test_a_leftover_or_planted_temporary_file_is_never_written_through(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = workspace_with_history()
    harness = harness_factory(workspace, storage_path=str(tmp_path / "state"))
    harness.refresh()
    (path,) = state_files(tmp_path / "state")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (path.parent / f".{path.name}.tmp").symlink_to(victim)
    path.with_suffix(".journal").symlink_to(victim)
    workspace.add_run(11, "completed")
    # One ledger changed: for the journal, which is not written through either; the state file is
    # rewritten instead (and the link in the journal's place removed).
    harness.refresh()
    assert victim.read_text() == "untouched"
    assert json.loads(path.read_bytes())["syncs"]["11"]["counters"]["runs"]["completed"] == 1
    workspace.add_run(11, "completed")
    harness.refresh()
    assert victim.read_text() == "untouched"
    assert not path.with_suffix(".journal").is_symlink()


def test_every_field_of_a_ledger_survives_the_round_trip(tmp_path: Path) -> None:
    # A field added to the ledger or its counters must be stored too: this sets every one off its default.
    counters = RunCounters.of(
        {"completed": 3, "failed": 2, "skipped": 1, "weird": 1},
        [10, 9, 1, 2, 40],
        [1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
        1234.5,
        superseded_failures=2,
    )
    ledger = SyncLedger(
        recent_run_ids=RunIds([100, 105, 230]),
        pending_run_ids=frozenset({231, 232}),
        counters=counters,
        last_success_at=1.7e9,
        last_failure_at=1.7e9 + 1,
        buckets=DEFAULT_DURATION_BUCKETS,
        last_pending_lookup=231,
        floor_run_id=90,
        newest_outcome_run_id=230,
        failing=True,
        failing_error_code="E_QUOTA",
        earliest_run_at=1.6e9,
        pending_seen_at=MappingProxyType({232: 1.7e9 + 5}),
        watched_since=1.69e9,
        counted_fingerprints=RunIds([-5, 7, 2**62]),
    )
    defaults = SyncLedger(recent_run_ids=RunIds(), pending_run_ids=frozenset(), counters=RunCounters.zero(12))
    for each in dataclasses.fields(SyncLedger):
        if each.name != "buckets":
            assert getattr(ledger, each.name) != getattr(defaults, each.name), f"set {each.name} here"
    zero = RunCounters.zero(12)
    for each in dataclasses.fields(RunCounters):
        assert getattr(counters, each.name) != getattr(zero, each.name), f"set {each.name} here"
    sync = Sync(7, "s", "update", 3, "glimmering_donkey", "Contact", "hourly", False, "failing", 1.7e9, 1.6e9)
    for each in dataclasses.fields(Sync):
        if each.name not in ("id", "problems"):
            assert getattr(sync, each.name) not in (None, ""), f"set {each.name} here"
    snapshot = Snapshot(workspace="w", syncs={7: SyncState(sync=sync, ledger=ledger)}, listed=True)
    held = Storage(tmp_path)
    try:
        held.workspace("w", DEFAULT_DURATION_BUCKETS).save(snapshot, 1)
        restored = held.workspace("w", DEFAULT_DURATION_BUCKETS).load()
    finally:
        held.close()
    assert restored.ledgers[7] == ledger
    assert restored.syncs[7] == sync


def test_a_sync_gone_while_the_exporter_was_down_keeps_its_counts_in_the_workspace_totals(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    workspace.add_run(11, "completed", records=5)
    workspace.add_run(13, "completed", records=700)
    first.refresh()
    assert first.scrape().value("census_workspace_records_processed_total") == 705
    first.exporter.close()
    workspace.remove_sync(13)  # deleted while the exporter is down
    second = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
    second.refresh()
    scrape = second.scrape()
    assert scrape.value("census_workspace_records_processed_total") == 705  # no drop, no reset
    assert scrape.all("census_sync_runs_total", sync_id="13") == {}
    # It comes back: a baseline, so its old runs are not counted again, and its old counts stay in the totals.
    workspace.add_sync(13, label="sync 13")
    workspace.add_run(13, "completed", records=1)
    second.refresh()
    workspace.add_run(13, "completed", records=2)
    second.refresh()
    assert second.scrape().value("census_workspace_records_processed_total") == 707
    second.exporter.close()
    third = harness_factory(workspace, storage_path=str(tmp_path), api_url=first.simulator.url)
    third.refresh()
    assert third.scrape().value("census_workspace_records_processed_total") == 707


@pytest.mark.slow  # restarts after kill -9 and waits out the grace, 12 s
def test_a_restored_sync_the_first_listing_after_a_kill_9_misses_keeps_counting_through_the_grace(
    tmp_path: Path,
) -> None:
    # A sync missing from one listing while the exporter runs keeps its ledger for the grace; one that a
    # restart's first listing misses must too: it lost its stored counts and the runs finished meanwhile.
    workspace = workspace_with_history()
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    token = tmp_path / "token"
    token.write_text(TEST_TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    argv = [
        sys.executable,
        "-m",
        "census_exporter",
        f"--census.api-url={simulator.url}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--census.cache-ttl=1",
        "--census.max-requests-per-second=0",
        f"--census.token-file={token}",
        f"--storage.path={tmp_path / 'state'}",
    ]
    hidden_id = 12

    def scrape() -> Scrape | None:
        try:
            response = httpx.get(url, timeout=10)
        except httpx.HTTPError:
            return None
        return parse_scrape(response.text) if response.status_code == 200 else None

    def counted(at_least: float) -> Scrape | None:
        scraped = scrape()
        return scraped if scraped is not None and runs_total(scraped, hidden_id) >= at_least else None

    first = Process(argv, tmp_path / "first.log")
    second: Process | None = None
    try:
        wait_for(lambda: counted(0) is not None and runs_total(counted(0), 11) == 0, what=first.output)
        for _ in range(5):
            workspace.add_run(hidden_id, "completed")
        wait_for(lambda: counted(5), timeout=30, what=first.output)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        for _ in range(3):
            workspace.add_run(hidden_id, "completed")  # finished while the exporter is down
        with workspace.lock:
            definition = workspace.syncs.pop(hidden_id)  # unlisted; its runs endpoint still answers
        listings = simulator.count(r"/syncs$")
        second = Process(argv, tmp_path / "second.log")
        # The first listing after the restart (without the sync) has been read and swapped in.
        up = wait_for(
            lambda: (
                (s := scrape()) is not None
                and s.value("census_up") == 1
                and simulator.count(r"/syncs$") > listings
                and s
            ),
            timeout=30,
            what=second.output,
        )
        assert runs_total(up, hidden_id) == 5 + 3, "awaited with its restored ledger, read as usual"
        with workspace.lock:
            workspace.syncs[hidden_id] = definition
        listed_again = simulator.count(r"/syncs$")
        # Scrapes drive the refreshes: two listings with the sync in them.
        wait_for(lambda: scrape() and simulator.count(r"/syncs$") > listed_again + 1, timeout=30)
        workspace.add_run(hidden_id, "completed")
        final = wait_for(lambda: counted(9), timeout=30, what=second.output)
        assert runs_total(final, hidden_id) == 9
        assert "has not been listed" not in second.log.read_text()
        assert "dropping its series" not in second.log.read_text()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        simulator.close()


@pytest.mark.parametrize("other", ["token", "api url"])
def test_the_state_of_another_census_workspace_with_the_same_label_is_set_aside(
    harness_factory: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture, other: str
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path))
    first.refresh()
    workspace.add_run(11, "completed", records=3_000_000)
    first.refresh()
    assert first.scrape().value("census_workspace_records_processed_total") == 3_000_000
    first.exporter.close()
    (path,) = state_files(tmp_path)
    stored = path.read_bytes()
    assert TEST_TOKEN.encode() not in stored  # only a salted hash of it
    # Another account's workspace, labelled "default" too, on the same directory.
    another = workspace_with_history()
    if other == "token":
        # The same API URL (as every account on api.getcensus.com has), another workspace's token.
        first.simulator.workspace, first.simulator.token = another, "another-token"
        with caplog.at_level(logging.INFO, logger="census_exporter"):
            second = harness_factory(
                another, storage_path=str(tmp_path), token="another-token", api_url=first.simulator.url
            )
    else:
        with caplog.at_level(logging.INFO, logger="census_exporter"):
            second = harness_factory(another, storage_path=str(tmp_path))
    lines = [r.getMessage() for r in caplog.records if "not usable" in r.getMessage()]
    assert len(lines) == 1 and "another Census workspace" in lines[0] and "set aside" in lines[0], lines
    assert path.with_name(path.name + ".set-aside").read_bytes() == stored
    second.refresh()
    assert second.scrape().value("census_workspace_records_processed_total") in (None, 0)
    assert runs_total(second.scrape(), 11) == 0
    # Its own file now: a restart of the same workspace continues from it.
    another.add_run(11, "completed", records=5)
    second.refresh()
    second.exporter.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="census_exporter"):
        third = harness_factory(
            another,
            storage_path=str(tmp_path),
            token=second.exporter.config.token(),
            api_url=second.exporter.config.api_url,
        )
    assert not [r for r in caplog.records if "not usable" in r.getMessage()]
    third.refresh()
    assert runs_total(third.scrape(), 11) == 1


def test_with_a_workspace_or_group_id_the_id_decides_and_a_rotated_token_continues(tmp_path: Path) -> None:
    sync = Sync(7, "s", "update", None, None, "Contact", "hourly", False)
    ledger = SyncLedger(
        recent_run_ids=RunIds([5]), pending_run_ids=frozenset(), counters=RunCounters.zero(12)
    )
    snapshot = Snapshot(workspace="w", syncs={7: SyncState(sync=sync, ledger=ledger)}, listed=True)
    url = "https://app.getcensus.com/api/v1"

    def stored_then_loaded(scope: str, token: str) -> storage.Restored:
        held = Storage(tmp_path)
        try:
            saved = storage.Identity(url, "group:a", token=lambda: "old-token")
            held.workspace("w", DEFAULT_DURATION_BUCKETS, saved).save(snapshot, 1)
            loaded = storage.Identity(url, scope, token=lambda: token)
            return held.workspace("w", DEFAULT_DURATION_BUCKETS, loaded).load()
        finally:
            held.close()

    assert stored_then_loaded("group:a", "rotated-token").ledgers[7] == ledger
    assert stored_then_loaded("group:b", "old-token").ledgers == {}
    assert stored_then_loaded("workspace:1", "old-token").ledgers == {}


def state_path(directory: Path, workspace: str = "default") -> Path:
    """Where workspace ``workspace``'s state file lives in ``directory`` (created, unlocked again)."""
    held = Storage(directory)
    try:
        return held.workspace(workspace, DEFAULT_DURATION_BUCKETS).path
    finally:
        held.close()


def test_a_named_pipe_at_the_state_path_neither_hangs_the_start_nor_is_read(tmp_path: Path) -> None:
    workspace = workspace_with_history()
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    token = tmp_path / "token"
    token.write_text(TEST_TOKEN)
    path = state_path(tmp_path / "state")
    os.mkfifo(path)  # nothing ever writes to it: a blocking open or read would wait forever
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "census_exporter",
            f"--census.api-url={simulator.url}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--census.max-requests-per-second=0",
            f"--census.token-file={token}",
            f"--storage.path={tmp_path / 'state'}",
        ],
        tmp_path / "exporter.log",
    )

    def up() -> bool:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        except httpx.HTTPError:
            return False
        return parse_scrape(response.text).value("census_up") == 1

    try:
        wait_for(up, timeout=30, what=process.output)
        lines = [line for line in process.log.read_text().splitlines() if "not usable" in line]
        assert len(lines) == 1 and "not a regular file" in lines[0], lines
        assert stat.S_ISFIFO(path.with_name(path.name + ".set-aside").lstat().st_mode)
        assert stat.S_ISREG(path.lstat().st_mode)  # its own file replaced it
        assert "Traceback" not in process.log.read_text()
    finally:
        process.stop()
        simulator.close()


@pytest.mark.parametrize("target", ["another state file", "/dev/zero"])
def test_a_symbolic_link_at_the_state_path_is_not_followed(
    harness_factory: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(tmp_path / "elsewhere"))
    first.refresh()
    workspace.add_run(11, "completed")
    first.refresh()
    first.exporter.close()
    (elsewhere,) = state_files(tmp_path / "elsewhere")
    planted = elsewhere.read_bytes()
    path = state_path(tmp_path / "state")
    path.symlink_to(elsewhere if target == "another state file" else Path(target))
    with caplog.at_level(logging.INFO, logger="census_exporter"):
        second = harness_factory(workspace, storage_path=str(tmp_path / "state"), api_url=first.simulator.url)
    lines = [r.getMessage() for r in caplog.records if "not usable" in r.getMessage()]
    assert len(lines) == 1 and "symbolic link" in lines[0] and "set aside" in lines[0], lines
    assert path.with_name(path.name + ".set-aside").is_symlink()
    workspace.add_run(11, "completed")
    second.refresh()
    assert runs_total(second.scrape(), 11) == 0  # a baseline: the linked file's ledgers were not used
    assert elsewhere.read_bytes() == planted  # and nothing was written through the link
    assert not path.is_symlink()


def test_after_the_directory_is_removed_and_another_exporter_takes_it_the_first_writes_no_more(
    harness_factory: Callable[..., Harness], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    workspace = workspace_with_history()
    first = harness_factory(workspace, storage_path=str(directory))
    first.refresh()
    shutil.rmtree(directory)
    # Another exporter starts on the same path: the directory and its lock are new, so its lock succeeds.
    second = harness_factory(workspace, storage_path=str(directory), api_url=first.simulator.url)
    second.refresh()
    workspace.add_run(11, "completed")
    second.refresh()
    (path,) = state_files(directory)
    theirs = path.read_bytes()
    workspace.add_run(12, "completed")
    with caplog.at_level(logging.WARNING, logger="census_exporter.storage"):
        first.refresh()
        workspace.add_run(12, "completed")
        first.refresh()
    assert runs_total(first.scrape(), 12) == 2  # counting goes on in memory
    assert path.read_bytes() == theirs, "the first exporter wrote into the second one's file"
    lines = [r.getMessage() for r in caplog.records if "cannot store" in r.getMessage()]
    assert len(lines) == 1 and "lock file was removed or replaced" in lines[0], lines
