"""The refresh against a Census API whose run pages lie, over real HTTP (tests/hostile_server.py).

Each scenario is one an adversarial review found: a server that ignores ``page``, pages of id-less runs, one
bogus huge run id, a status that briefly reads null, a single 404 for a listed sync, runs that name another
sync, and pending runs that never finish.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from census_exporter.census._requests import RetryPolicy
from census_exporter.census.client import CensusClient
from census_exporter.demo.workspace import iso
from census_exporter.ledger import MAX_PENDING_RUNS_PER_SYNC
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.snapshot import Snapshot
from tests.hostile_server import HostileServer, Reply, Request, envelope

TOKEN = "secret-token:hostile-runs-5e1a"
HEALTHY = 2  # the sync that behaves; sync 1 is the hostile one
BASE_TIME = 1767225600.0  # 2026-01-01T00:00:00Z

#: What a runs endpoint answers: a function of the page asked for and how often this sync was read before.
RunsScript = Callable[[int, int], Reply]


def run(
    run_id: int | None, sync_id: int = 1, status: str | None = "completed", **fields: Any
) -> dict[str, Any]:
    """A run record as Census sends it; its times follow its id (two runs never share a creation time)."""
    created = BASE_TIME + (run_id or 0) % 10**6
    return {
        "id": run_id,
        "sync_id": sync_id,
        "status": status,
        "created_at": iso(created),
        "completed_at": iso(created + 60) if status == "completed" else None,
        "records_processed": 10,
    } | fields


def page(runs: list[dict[str, Any]], **pagination: object) -> Reply:
    return Reply(body=envelope(runs, **(pagination or {"last_page": 1})))


class HostileCensus:
    """Two listed syncs: sync 1 answers with ``script``; sync 2 gains one completed run per read."""

    def __init__(self, server: HostileServer, script: RunsScript) -> None:
        self.server = server
        self.script = script
        self.reads: Counter[int] = Counter()
        self.runs_by_id: dict[int, dict[str, Any]] = {}
        server.scripts["/api/v1/syncs"] = page(
            [{"id": 1, "label": "hostile"}, {"id": HEALTHY, "label": "ok"}]
        )
        server.scripts["/api/v1/sources"] = page([])
        server.scripts["/api/v1/destinations"] = page([])
        server.scripts["/api/v1/syncs/1/sync_runs"] = self._runs(1)
        server.scripts[f"/api/v1/syncs/{HEALTHY}/sync_runs"] = self._runs(HEALTHY)

    def _runs(self, sync_id: int) -> Callable[[Request], Reply]:
        def answer(request: Request) -> Reply:
            read = self.reads[sync_id]
            self.reads[sync_id] += 1
            asked = int(request.query.get("page", "1"))
            if sync_id == HEALTHY:
                return page([run(100 + read - k, HEALTHY) for k in range(3)])
            return self.script(asked, read)

        return answer

    def serve_run(self, record: dict[str, Any]) -> None:
        """Answer ``GET /sync_runs/{id}`` for this run (until replaced)."""
        self.server.scripts[f"/api/v1/sync_runs/{record['id']}"] = Reply(
            body=json.dumps({"status": "success", "data": record}).encode()
        )

    def requests_for(self, sync_id: int) -> int:
        return sum(
            1 for request in self.server.requests if request.path == f"/api/v1/syncs/{sync_id}/sync_runs"
        )


@pytest.fixture
def hostile() -> Iterator[Callable[..., tuple[HostileCensus, Refresher]]]:
    opened: list[tuple[HostileServer, CensusClient, Refresher]] = []

    def build(script: RunsScript, runs_page_size: int = 25) -> tuple[HostileCensus, Refresher]:
        server = HostileServer().start()
        census = HostileCensus(server, script)
        client = CensusClient(server.url, lambda: TOKEN, retry=RetryPolicy(max_attempts=1))
        settings = RefreshSettings(
            cache_ttl_seconds=0, refresh_timeout_seconds=20, concurrency=2, runs_page_size=runs_page_size
        )
        refresher = Refresher(client, settings)
        opened.append((server, client, refresher))
        return census, refresher

    yield build
    for server, client, refresher in opened:
        refresher.close()
        client.close()
        server.close()


def refresh(refresher: Refresher) -> Snapshot:
    return refresher.trigger().result(timeout=30)


def completed(snapshot: Snapshot, sync_id: int, status: str = "completed") -> int:
    ledger = snapshot.syncs[sync_id].ledger
    assert ledger is not None
    return ledger.counters.runs_by_status.get(status, 0)


def test_a_server_that_ignores_page_cannot_keep_one_sync_paging(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    # After the baseline, 30 new runs exist, but every page is the newest 25 and promises another page.
    def same_page_forever(asked: int, read: int) -> Reply:
        top = 5000 if read == 0 else 5030
        return page([run(top - k) for k in range(25)], next_page=asked + 1, total_records=10**6)

    census, refresher = hostile(same_page_forever)
    refresh(refresher)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        snapshot = refresh(refresher)
        refresh(refresher)
    assert snapshot.up
    assert census.requests_for(1) <= 1 + 2 * 2  # the baseline, then page 1 and its repeat per refresh
    assert completed(snapshot, 1) == 25  # the 25 new runs it could see, once
    assert completed(refresher.snapshot, 1) == 25
    assert completed(refresher.snapshot, HEALTHY) == 2  # the healthy sync kept counting
    stopped = [r for r in caplog.records if "brought no run not already read" in r.getMessage()]
    assert len(stopped) == 1


def test_pages_of_unparseable_runs_promising_a_billion_pages_are_not_followed(
    hostile: Callable[..., tuple[HostileCensus, Refresher]],
) -> None:
    def idless_pages(asked: int, read: int) -> Reply:
        if read == 0:
            return page([run(5000 - k) for k in range(3)])
        return page([run(None) for _ in range(25)], last_page=10**9)

    census, refresher = hostile(idless_pages)
    refresh(refresher)
    for _ in range(3):
        snapshot = refresh(refresher)
    assert census.requests_for(1) <= 1 + 3
    assert snapshot.syncs[HEALTHY].ledger is not None
    assert completed(snapshot, HEALTHY) == 3


def test_the_page_cap_bounds_a_server_whose_pages_are_always_new(
    hostile: Callable[..., tuple[HostileCensus, Refresher]],
) -> None:
    # Each page repeats 24 runs and brings one never seen before: far below max_new_runs_per_sync new
    # runs per page, so only the page cap stops the paging.
    def one_new_run_per_page(asked: int, read: int) -> Reply:
        if read == 0:
            return page([run(10**6 - k) for k in range(3)])
        return page(
            [*(run(2 * 10**6 - k) for k in range(24)), run(2 * 10**6 - 100 - asked)], next_page=asked + 1
        )

    census, refresher = hostile(one_new_run_per_page)
    refresh(refresher)
    before = census.requests_for(1)
    refresh(refresher)
    settings = RefreshSettings()
    assert (
        census.requests_for(1) - before <= -(-settings.max_new_runs_per_sync // settings.runs_page_size) + 2
    )


def test_one_bogus_huge_run_id_does_not_freeze_the_counters(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    # One completed run per read; the third read also shows a working run with id 2**62, never seen again.
    def glitched_id(asked: int, read: int) -> Reply:
        runs = [run(1000 + read - k) for k in range(3)]
        if read == 2:
            runs.insert(0, run(2**62, status="working"))
        return page(runs)

    _, refresher = hostile(glitched_id)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(6):
            snapshot = refresh(refresher)
    assert completed(snapshot, 1) == 5  # every run after the baseline, the bogus one never finished
    assert snapshot.syncs[1].ledger is not None and 2**62 not in snapshot.syncs[1].ledger.pending_run_ids
    warned = [r for r in caplog.records if "implausibly far above" in r.getMessage()]
    assert len(warned) == 1


def test_a_status_that_briefly_reads_null_is_still_counted_once_when_it_completes(
    hostile: Callable[..., tuple[HostileCensus, Refresher]],
) -> None:
    statuses = ["working", "working", None, "completed"]

    def glitched_status(asked: int, read: int) -> Reply:
        status = statuses[min(read, len(statuses) - 1)]
        records = 777 if status == "completed" else None
        return page([run(1000, status=status, records_processed=records)])

    _, refresher = hostile(glitched_status)
    for _ in range(3):
        snapshot = refresh(refresher)
    assert completed(snapshot, 1, "unknown") == 0
    latest = snapshot.syncs[1].latest_run
    assert latest is not None and latest.status == "working"  # the last status actually reported
    assert snapshot.syncs[1].ledger is not None and 1000 in snapshot.syncs[1].ledger.pending_run_ids
    snapshot = refresh(refresher)
    snapshot = refresh(refresher)
    ledger = snapshot.syncs[1].ledger
    assert ledger is not None
    assert {status: n for status, n in ledger.counters.runs_by_status.items() if n} == {"completed": 1}
    assert ledger.counters.records_processed == 777


def test_a_single_404_for_a_listed_sync_keeps_its_counts(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    def flaky(asked: int, read: int) -> Reply:
        if read == 3:
            return Reply(status=404, body=b'{"status": 404, "message": "Not found"}')
        return page([run(1000 + read - k) for k in range(3)])

    _, refresher = hostile(flaky)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(3):
            snapshot = refresh(refresher)
        assert completed(snapshot, 1) == 2
        glitch = refresh(refresher)
        assert not glitch.up
        assert completed(glitch, 1) == 2  # kept, not dropped
        after = refresh(refresher)
    assert after.up
    assert completed(after, 1) == 4  # runs 1003 and 1004: nothing lost, nothing counted twice
    said = [r for r in caplog.records if "404 although it is listed" in r.getMessage()]
    assert len(said) == 1


def test_a_run_naming_another_sync_is_not_counted_here(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    def with_foreign_runs(asked: int, read: int) -> Reply:
        # Run ids are global: the other sync's runs interleave with this one's.
        runs = [run(1000 + 2 * read - 2 * k) for k in range(3)]
        return page([run(1001 + 2 * read, sync_id=HEALTHY), *runs])

    _, refresher = hostile(with_foreign_runs)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(4):
            snapshot = refresh(refresher)
    assert completed(snapshot, 1) == 3
    assert completed(snapshot, HEALTHY) == 3
    assert len([r for r in caplog.records if "name another sync" in r.getMessage()]) == 1


def test_pending_lookups_rotate_and_the_pending_set_is_capped(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    stuck = MAX_PENDING_RUNS_PER_SYNC + 20

    # The baseline page shows many working runs; afterwards only a newer run, so all are looked up by id.
    def many_stuck(asked: int, read: int) -> Reply:
        if read == 0:
            return page([run(10_000 - k, status="working") for k in range(stuck)])
        return page([run(20_000)])

    # Pages far longer than 25 runs: asked for as such, since the client refuses pages beyond 2x per_page.
    census, refresher = hostile(many_stuck, 1000)
    for k in range(stuck):
        census.serve_run(run(10_000 - k, status="working"))
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        baseline = refresh(refresher)
        ledger = baseline.syncs[1].ledger
        assert ledger is not None and len(ledger.pending_run_ids) == MAX_PENDING_RUNS_PER_SYNC
        for _ in range(3):
            refresh(refresher)
    lookups = Counter(
        request.path for request in census.server.requests if request.path.startswith("/api/v1/sync_runs/")
    )
    assert len(lookups) == 3 * RefreshSettings().max_pending_lookups_per_sync  # 150 different runs
    assert set(lookups.values()) == {1}


def test_a_pending_set_grown_past_the_cap_forgets_the_oldest_with_one_warning(
    hostile: Callable[..., tuple[HostileCensus, Refresher]], caplog: pytest.LogCaptureFixture
) -> None:
    def growing(asked: int, read: int) -> Reply:
        # Each read shows 300 more working runs than the last (all new): the pending set passes the cap.
        return page([run(10_000 + 300 * read - k, status="working") for k in range(300)], next_page=None)

    _, refresher = hostile(growing, 1000)
    with caplog.at_level(logging.WARNING, logger="census_exporter.refresh"):
        for _ in range(3):
            snapshot = refresh(refresher)
    ledger = snapshot.syncs[1].ledger
    assert ledger is not None and len(ledger.pending_run_ids) == MAX_PENDING_RUNS_PER_SYNC
    assert min(ledger.pending_run_ids) == 10_000 + 600 - MAX_PENDING_RUNS_PER_SYNC + 1
    assert len([r for r in caplog.records if "runs queued or working; forgetting" in r.getMessage()]) == 1
