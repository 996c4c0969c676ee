"""The demo workspace is realistic and, for a seed, repeatable."""

from __future__ import annotations

from census_exporter.demo import DemoActivity, SimulatedWorkspace


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def history(seed: int, polls: list[float]) -> list[tuple[object, ...]]:
    clock = FakeClock(1_800_000_000.0)
    workspace = SimulatedWorkspace(clock)
    activity = DemoActivity(workspace, seed=seed, syncs=25, clock=clock)
    for step in polls:
        clock.now += step
        activity.advance()
    return [
        (
            run["id"],
            run["sync_id"],
            run["status"],
            run["created_at"],
            run["records_processed"],
            run["error_code"],
        )
        for run in sorted(workspace.runs_by_id.values(), key=lambda r: r["id"])
    ]


def test_the_same_seed_gives_the_same_history_however_it_is_polled() -> None:
    few = history(42, [600.0])
    many = history(42, [10.0] * 60)
    assert few == many
    assert few != history(43, [600.0])


def test_the_demo_has_every_kind_of_run() -> None:
    clock = FakeClock(1_800_000_000.0)
    workspace = SimulatedWorkspace(clock)
    activity = DemoActivity(workspace, seed=1, syncs=25, clock=clock)
    clock.now += 3600
    activity.advance()
    assert len(workspace.syncs) == 25
    runs = list(workspace.runs_by_id.values())
    statuses = {run["status"] for run in runs}
    assert {"completed", "failed"} <= statuses
    assert any(run["status"] == "skipped" for run in runs) or any(run["status"] == "working" for run in runs)
    failed = [run for run in runs if run["status"] == "failed"]
    assert all(run["error_code"] and run["records_processed"] is None for run in failed)
    assert any(sync["paused"] for sync in workspace.syncs.values())
    assert len({run["records_processed"] for run in runs if run["status"] == "completed"}) > 10


def test_failing_sync_ids_always_fail() -> None:
    clock = FakeClock(1_800_000_000.0)
    workspace = SimulatedWorkspace(clock)
    activity = DemoActivity(workspace, seed=1, syncs=5, failing_sync_ids=frozenset({1003}), clock=clock)
    clock.now += 1200
    activity.advance()
    finished = [r for r in workspace.runs[1003] if r["status"] not in ("working", "skipped")]
    assert finished and all(run["status"] == "failed" for run in finished)
