"""Exactly-once counting, as a property: whatever order runs start, finish and get refreshed in, each run
that finishes after the exporter first saw its sync is counted once, under its final status.

The real Refresher runs against an in-memory API with the Census paging semantics (newest first, small
pages), so paging back to a known run, pending runs scrolling out of the first page and their lookup by id
(a few per refresh, in rotation) are all exercised. Now and then a run with a bogus huge id shows up for one
refresh and then vanishes (404): it must not stop later, smaller ids from counting. The model it is compared
with is deliberately naive.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from census_exporter.census.errors import NotFoundError
from census_exporter.census.listing import Listing, RunsPage
from census_exporter.refresh import Refresher, RefreshSettings
from census_exporter.refresh.one_sync import FIRST_READ_PAGES_WITHOUT_SUCCESS

PAGE = 4  # small, so that bursts span pages and pending runs scroll out
LOOKUPS = 3  # pending runs looked up by id per refresh: fewer than can be pending, so rotation matters
BOGUS_ID = 2**62
TERMINAL = ("completed", "failed", "skipped")


@dataclass
class FakeCensus:
    """One sync whose runs live in memory; answers like the API, without HTTP."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    def list_syncs(self, deadline: float) -> Listing:
        return Listing([{"id": 1, "label": "s", "paused": False}])

    def list_sources(self, deadline: float) -> Listing:
        return Listing([])

    def list_destinations(self, deadline: float) -> Listing:
        return Listing([])

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        newest_first = sorted(self.runs, key=lambda run: run["id"], reverse=True)
        chunk = newest_first[(page - 1) * per_page : page * per_page]
        return RunsPage(items=[dict(run) for run in chunk], has_more=page * per_page < len(newest_first))

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        for run in self.runs:
            if run["id"] == run_id:
                return dict(run)
        raise NotFoundError("/sync_runs/{id}", "not found (404)", 404)


operation = st.one_of(
    st.tuples(st.just("start"), st.sampled_from(("queued", "working", *TERMINAL))),
    st.tuples(st.just("finish"), st.integers(min_value=0, max_value=50), st.sampled_from(TERMINAL)),
    st.tuples(st.just("refresh")),
    st.tuples(st.just("bogus"), st.sampled_from(("working", *TERMINAL))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(st.sampled_from(("queued", "working", *TERMINAL)), max_size=12),
    operations=st.lists(operation, max_size=40),
)
def test_every_run_finishing_after_the_baseline_is_counted_once(
    before: list[str], operations: list[tuple[Any, ...]]
) -> None:
    api = FakeCensus()
    next_id = iter(range(1, 10_000))
    next_bogus_id = iter(range(BOGUS_ID, BOGUS_ID + 10_000))
    bogus: list[dict[str, Any]] = []  # shown until the next refresh, then gone

    def start(status: str, run_id: int | None = None) -> None:
        api.runs.append({"id": next(next_id) if run_id is None else run_id, "sync_id": 1, "status": status})

    for status in before:
        start(status)
    refresher = Refresher(
        api,
        RefreshSettings(
            cache_ttl_seconds=0, runs_page_size=PAGE, concurrency=1, max_pending_lookups_per_sync=LOOKUPS
        ),
    )
    try:
        refresher.trigger().result(timeout=30)  # the baseline
        # Naive model: runs that finish from now on count; so do runs the baseline saw unfinished on the
        # pages it read: one, or more while none of them completed (up to FIRST_READ_PAGES_WITHOUT_SUCCESS).
        # Older unfinished runs were never seen, and are not counted.
        newest_first = sorted(api.runs, key=lambda run: run["id"], reverse=True)
        pages = 1
        while (
            pages < FIRST_READ_PAGES_WITHOUT_SUCCESS
            and len(newest_first) > pages * PAGE
            and all(run["status"] != "completed" for run in newest_first[: pages * PAGE])
        ):
            pages += 1
        baseline_page = newest_first[: pages * PAGE]
        watched = {run["id"] for run in api.runs if run["status"] not in TERMINAL and run in baseline_page}
        expected: Counter[str] = Counter()
        for op in operations:
            if op[0] in ("start", "bogus"):
                start(op[1], next(next_bogus_id) if op[0] == "bogus" else None)
                if op[0] == "bogus":
                    bogus.append(api.runs[-1])
                if op[1] in TERMINAL:
                    expected[op[1]] += 1
                else:
                    watched.add(api.runs[-1]["id"])
            elif op[0] == "finish":
                pending = [run for run in api.runs if run["status"] not in TERMINAL]
                if pending:
                    run = pending[op[1] % len(pending)]
                    run["status"] = op[2]
                    if run["id"] in watched:
                        expected[op[2]] += 1
            else:
                refresher.trigger().result(timeout=30)
                for run in bogus:
                    api.runs.remove(run)
                    watched.discard(run["id"])
                bogus.clear()
        # Enough refreshes for the rotating lookups to reach every run still pending.
        for _ in range(len(api.runs) // LOOKUPS + 2):
            refresher.trigger().result(timeout=30)
        ledger = refresher.snapshot.syncs[1].ledger
        assert ledger is not None
        counted = {status: n for status, n in ledger.counters.runs_by_status.items() if n}
        assert counted == dict(expected)
        assert refresher.snapshot.up
    finally:
        refresher.close()


@dataclass
class ChurningCensus:
    """Several syncs that come and go, and sync listings that may miss some of them (as paging does when the
    list shifts between pages); answers like the API, without HTTP."""

    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    complete: bool = True

    def list_syncs(self, deadline: float) -> Listing:
        shown = [
            {"id": sync_id, "label": f"s{sync_id}"} for sync_id in self.runs if sync_id not in self.hidden
        ]
        return Listing(shown, complete=self.complete)

    def list_sources(self, deadline: float) -> Listing:
        return Listing([])

    def list_destinations(self, deadline: float) -> Listing:
        return Listing([])

    def list_sync_runs(self, sync_id: int, page: int, per_page: int, deadline: float) -> RunsPage:
        if sync_id not in self.runs:
            raise NotFoundError("/syncs/{id}/sync_runs", "not found (404)", 404)
        newest_first = sorted(self.runs[sync_id], key=lambda run: run["id"], reverse=True)
        chunk = newest_first[(page - 1) * per_page : page * per_page]
        return RunsPage(items=[dict(run) for run in chunk], has_more=page * per_page < len(newest_first))

    def get_sync_run(self, run_id: int, deadline: float) -> Any:
        for runs in self.runs.values():
            for run in runs:
                if run["id"] == run_id:
                    return dict(run)
        raise NotFoundError("/sync_runs/{id}", "not found (404)", 404)


churn = st.one_of(
    st.tuples(st.just("create")),
    st.tuples(st.just("delete"), st.integers(min_value=0, max_value=20)),
    st.tuples(
        st.just("start"), st.integers(min_value=0, max_value=20), st.sampled_from(("working", *TERMINAL))
    ),
    st.tuples(st.just("finish"), st.integers(min_value=0, max_value=20), st.sampled_from(TERMINAL)),
    # The next listing misses these syncs; ``complete`` says whether the client noticed the shift.
    st.tuples(st.just("refresh"), st.sets(st.integers(min_value=0, max_value=20), max_size=3), st.booleans()),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(churn, max_size=40))
def test_syncs_missing_from_listings_never_lose_or_double_a_run(operations: list[tuple[Any, ...]]) -> None:
    api = ChurningCensus()
    next_run_id = iter(range(1, 10_000))
    next_sync_id = iter(range(1, 1_000))
    expected: dict[int, Counter[str]] = {}  # per sync seen by a listing (baselined): what must be counted
    watched: dict[int, set[int]] = {}  # per baselined sync: unfinished runs whose finish must be counted

    def pick(index: int) -> int | None:
        syncs = sorted(api.runs)
        return syncs[index % len(syncs)] if syncs else None

    # A clock that never moves: the grace period never ends, so only a 404 may drop a sync.
    refresher = Refresher(
        api, RefreshSettings(cache_ttl_seconds=0, runs_page_size=PAGE, concurrency=2), clock=lambda: 0.0
    )
    try:
        api.runs[next(next_sync_id)] = []
        for op in operations:
            if op[0] == "create":
                api.runs[next(next_sync_id)] = []
            elif op[0] == "delete" and (sync_id := pick(op[1])) is not None:
                del api.runs[sync_id]
                expected.pop(sync_id, None)
            elif op[0] == "start" and (sync_id := pick(op[1])) is not None:
                run = {"id": next(next_run_id), "sync_id": sync_id, "status": op[2]}
                api.runs[sync_id].append(run)
                if sync_id in expected:
                    if op[2] in TERMINAL:
                        expected[sync_id][op[2]] += 1
                    else:
                        watched[sync_id].add(run["id"])
            elif op[0] == "finish" and (sync_id := pick(op[1])) is not None:
                pending = [run for run in api.runs[sync_id] if run["status"] not in TERMINAL]
                if pending:
                    run = pending[op[1] % len(pending)]
                    run["status"] = op[2]
                    if run["id"] in watched.get(sync_id, set()):
                        expected[sync_id][op[2]] += 1
            elif op[0] == "refresh":
                api.hidden = {sync_id for index in op[1] if (sync_id := pick(index)) is not None}
                api.complete = op[2]
                for sync_id in api.runs:
                    if sync_id not in expected and sync_id not in api.hidden:
                        # First listed: a baseline. Only unfinished runs on its first page are watched.
                        page = sorted(api.runs[sync_id], key=lambda run: run["id"], reverse=True)[:PAGE]
                        expected[sync_id] = Counter()
                        watched[sync_id] = {run["id"] for run in page if run["status"] not in TERMINAL}
                refresher.trigger().result(timeout=30)
        api.hidden, api.complete = set(), True
        refresher.trigger().result(timeout=30)
        snapshot = refresher.snapshot
        assert snapshot.up
        assert set(snapshot.syncs) == set(api.runs)
        for sync_id, counts in expected.items():
            ledger = snapshot.syncs[sync_id].ledger
            assert ledger is not None
            counted = {status: n for status, n in ledger.counters.runs_by_status.items() if n}
            assert counted == dict(counts), sync_id
    finally:
        refresher.close()
