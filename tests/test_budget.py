"""The request budget's token bucket on a fake clock, and the plan of which syncs a round reads."""

from __future__ import annotations

import threading
import time

import pytest

from census_exporter.census.budget import JITTER_ALLOWANCE, RequestBudget
from census_exporter.census.client import CensusClient
from census_exporter.census.errors import TransientError
from census_exporter.census.models.runs import SyncRun
from census_exporter.census.models.syncs import Sync
from census_exporter.cli.assembly import parse_config
from census_exporter.demo import SimulatedWorkspace, SimulatorServer
from census_exporter.ledger import SyncLedger
from census_exporter.refresh import schedule
from census_exporter.refresh.schedule import Priority
from census_exporter.snapshot import SyncState
from tests.conftest import TEST_TOKEN
from tests.factories import make_run, make_sync
from tests.helm import by_kind, render


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_token_is_immediate_and_each_next_one_waits_one_interval() -> None:
    clock = FakeClock()
    budget = RequestBudget(4, clock=clock)
    interval = (1 + JITTER_ALLOWANCE) / 4
    assert budget.reserve(10) == 0
    assert budget.reserve(10) == pytest.approx(interval)
    assert budget.reserve(10) == pytest.approx(2 * interval)
    use = budget.use()
    assert (use.granted, use.waited, use.refused) == (3, 2, 0)
    assert use.wait_seconds == pytest.approx(3 * interval)


def test_tokens_do_not_accumulate_beyond_a_burst_of_one() -> None:
    clock = FakeClock()
    budget = RequestBudget(2, clock=clock)
    budget.reserve(10)
    clock.now += 60  # a long idle time saves up no burst
    assert budget.reserve(10) == 0
    assert budget.reserve(10) == pytest.approx(budget.interval_seconds)


def test_a_token_that_comes_after_the_deadline_is_refused_and_not_reserved() -> None:
    clock = FakeClock()
    budget = RequestBudget(1, clock=clock)
    assert budget.reserve(0) == 0
    assert budget.reserve(0.5) is None  # the next token is 1.1 s away
    assert budget.use().refused == 1
    # The refused caller did not push the next token further out.
    assert budget.reserve(5) == pytest.approx(budget.interval_seconds)


def test_no_window_of_one_second_holds_more_than_the_rate_of_granted_tokens() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, clock=clock)
    granted: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(10):
            wait = budget.reserve(100)
            assert wait is not None
            with lock:
                granted.append(clock.now + wait)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted.sort()
    assert len(granted) == 80
    assert len(set(granted)) == 80, "two callers got the same slot"
    for index, start in enumerate(granted):
        in_window = sum(1 for at in granted[index:] if at < start + 1.0)
        assert in_window <= 5


def test_a_budget_of_zero_or_less_is_refused() -> None:
    with pytest.raises(ValueError, match="above 0"):
        RequestBudget(0)


# ------------------------------------------------------------------ the plan


def sync(sync_id: int, schedule_word: str = "hourly") -> Sync:
    return make_sync(sync_id, destination_object="Contact", schedule=schedule_word)


def run(run_id: int, status: str, created_at: float) -> SyncRun:
    return make_run(run_id, status, created_at=created_at)


NOW = 1_800_000_000.0


def read_state(
    sync_id: int, *, latest: SyncRun | None, read_at: float, schedule_word: str = "hourly"
) -> SyncState:
    runs = [latest] if latest else []
    ledger = SyncLedger.baseline(runs, (10.0,))
    return SyncState(
        sync(sync_id, schedule_word), latest_run=latest, ledger=ledger, runs_read_monotonic=read_at
    )


def test_priority_follows_the_documented_order() -> None:
    working = read_state(1, latest=run(11, "working", NOW - 60), read_at=5)
    due = read_state(2, latest=run(12, "completed", NOW - 3590), read_at=5)
    live = read_state(3, latest=run(13, "completed", NOW - 10), read_at=5, schedule_word="live")
    failed = read_state(4, latest=run(14, "failed", NOW - 60), read_at=5)
    quiet = read_state(5, latest=run(15, "completed", NOW - 60), read_at=5)
    never_read = SyncState(sync(6))
    priorities = [
        schedule.priority(state, NOW, 60) for state in (working, due, live, failed, quiet, never_read)
    ]
    assert priorities == [
        Priority.UNFINISHED_RUN,
        Priority.RUN_DUE,
        Priority.RUN_DUE,
        Priority.LAST_RUN_FAILED,
        Priority.NONE,
        Priority.NONE,
    ]


def test_half_the_allowance_goes_by_priority_and_the_rest_to_the_least_recently_read() -> None:
    states = [
        read_state(sync_id, latest=run(sync_id, "completed", NOW - 60), read_at=50 + sync_id)
        for sync_id in range(1, 11)
    ]
    states[9] = read_state(10, latest=run(110, "working", NOW - 5), read_at=90)
    states[8] = read_state(9, latest=run(109, "failed", NOW - 5), read_at=80)
    states.append(SyncState(sync(11)))  # never read: the least recently read of all
    plan = schedule.plan(states, 4, NOW, 60)
    assert plan == [10, 9, 11, 1]


def test_every_sync_is_read_within_the_documented_bound_even_while_some_stay_urgent() -> None:
    syncs, allowance = 23, 5
    bound = schedule.rounds_between_reads(syncs, allowance)
    assert bound == 8  # ceil(23 / ceil(5 / 2))
    states = {
        sync_id: read_state(
            sync_id, latest=run(sync_id, "failed" if sync_id <= 4 else "completed", NOW), read_at=0
        )
        for sync_id in range(1, syncs + 1)
    }
    last_read = dict.fromkeys(states, 0)
    for round_number in range(1, 4 * bound):
        for sync_id in schedule.plan(list(states.values()), allowance, NOW, 60):
            states[sync_id] = SyncState(
                states[sync_id].sync,
                states[sync_id].latest_run,
                states[sync_id].ledger,
                runs_read_monotonic=round_number,
            )
            last_read[sync_id] = round_number
        if round_number >= bound:
            assert all(round_number - read < bound for read in last_read.values()), last_read


def test_the_round_allowance_is_a_fair_share_minus_the_listings_and_never_zero() -> None:
    assert schedule.planning_seconds(60, 30, first=False) == pytest.approx(24)
    assert schedule.planning_seconds(10, 30, first=False) == pytest.approx(8)
    assert schedule.planning_seconds(10, 30, first=True) == pytest.approx(24)
    assert schedule.round_allowance(None, 3, 5) is None
    assert schedule.round_allowance(600, 3, 5) == 195
    assert schedule.round_allowance(10, 4, 5) == 1


def test_a_request_that_cannot_get_a_token_before_its_deadline_fails_without_being_sent() -> None:
    workspace = SimulatedWorkspace()
    workspace.add_sync(1)
    simulator = SimulatorServer(workspace, token=TEST_TOKEN).start()
    budget = RequestBudget(1)
    client = CensusClient(simulator.url, lambda: TEST_TOKEN, budget=budget)
    try:
        assert client.list_syncs(time.monotonic() + 10).items, "the first token is free"
        with pytest.raises(TransientError, match="request budget"):
            client.list_syncs(time.monotonic() + 0.3)  # the next token is 1.1 s away
        assert simulator.count("/syncs$") == 1
        assert budget.use().refused == 1
    finally:
        client.close()
        simulator.close()


def test_the_helm_value_reaches_the_flag_and_the_exporter_accepts_it() -> None:
    documents = render("--set-json", "census.maxRequestsPerSecond=2.5")
    args = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--census.max-requests-per-second=2.5" in args
    flag = next(arg for arg in args if arg.startswith("--census.max-requests-per-second="))
    config = parse_config([flag], {"CENSUS_API_TOKEN": TEST_TOKEN})
    assert config.max_requests_per_second == 2.5
