"""The shipped alert rules in a real Prometheus scraping the real exporter, against a scripted Census API.

Each sync plays one episode: a failing streak with retries (one firing, no resolve when a retry starts), a
failure replaced by a success before a refresh saw it (``CensusSyncRunFailed``), a sync that never
succeeded (``CensusSyncNotSucceededRecently`` selects it), a run created "in 2098" that must not pin a
failure over newer completed runs, and a failing sync paused (silenced while it stays failing).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from census_exporter.demo.workspace import SimulatedWorkspace
from tests.conftest import Harness, wait_for
from tests.stack import Prometheus

STREAK, REPLACED, NEVER, FUTURE, PAUSED = 11, 12, 13, 14, 15


def alert_states(prometheus: Prometheus, alert: str, sync_id: int) -> set[str]:
    rows = prometheus.query(f'ALERTS{{alertname="{alert}",sync_id="{sync_id}"}}')
    return {row["metric"]["alertstate"] for row in rows}


def newest_status(prometheus: Prometheus, sync_id: int) -> set[str]:
    rows = prometheus.query(f'census_sync_last_run_status{{sync_id="{sync_id}"}}')
    return {row["metric"]["status"] for row in rows}


def firing_gaps(prometheus: Prometheus, sync_id: int, start: float, end: float) -> list[float]:
    """Seconds between consecutive evaluations at which CensusSyncFailed fired for the sync."""
    data = prometheus.api(
        "query_range",
        query=f'ALERTS{{alertname="CensusSyncFailed",alertstate="firing",sync_id="{sync_id}"}}',
        start=str(start),
        end=str(end),
        step="1",
    )
    series = data["result"]
    assert len(series) == 1, f"one firing series for the whole streak, got {len(series)}: {series}"
    stamps = [float(value[0]) for value in series[0]["values"]]
    return [later - earlier for earlier, later in itertools.pairwise(stamps)]


def test_the_shipped_rules_tell_the_truth_about_each_episode(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    workspace = SimulatedWorkspace()
    now = time.time()
    for sync_id, label in (
        (STREAK, "Streak"),
        (REPLACED, "Replaced"),
        (NEVER, "Never Succeeded"),
        (FUTURE, "Future Run"),
        (PAUSED, "Paused While Failing"),
    ):
        workspace.add_sync(sync_id, label=label)
    for sync_id in (STREAK, REPLACED, PAUSED):
        workspace.add_run(sync_id, "completed")
    # Never succeeded: a failed run every hour for the last 30 hours.
    for k in range(30):
        workspace.add_run(NEVER, "failed", created_at=now - 3600.0 * (30 - k), error_code="E")
    # A failed run dated 2098, then completed runs.
    bogus = workspace.add_run(FUTURE, "failed", error_code="E")
    workspace.update_run(bogus["id"], created_at="2098-01-01T00:00:00.000Z")
    harness = harness_factory(workspace, start=True, cache_ttl=1.0)
    prometheus = Prometheus(tmp_path, harness.exporter.port)
    try:
        wait_for(lambda: prometheus.query("census_up == 1"), timeout=30, what="census_up in Prometheus")
        for _ in range(5):
            workspace.add_run(FUTURE, "completed")

        # The streak: fail, working, fail, working, completed.
        workspace.add_run(STREAK, "failed", error_code="INVALID_CREDENTIALS")
        wait_for(
            lambda: alert_states(prometheus, "CensusSyncFailed", STREAK) == {"firing"},
            timeout=30,
            what="CensusSyncFailed firing for the streak",
        )
        began = time.time()
        retry = workspace.add_run(STREAK, "working")
        wait_for(lambda: newest_status(prometheus, STREAK) == {"working"}, timeout=30, what="the retry")
        workspace.update_run(retry["id"], status="failed", error_code="INVALID_CREDENTIALS")
        wait_for(lambda: newest_status(prometheus, STREAK) == {"failed"}, timeout=30, what="fail again")
        workspace.add_run(STREAK, "working")
        wait_for(lambda: newest_status(prometheus, STREAK) == {"working"}, timeout=30, what="a 2nd retry")
        assert alert_states(prometheus, "CensusSyncFailed", STREAK) == {"firing"}
        last_firing = time.time()
        workspace.add_run(STREAK, "completed")
        wait_for(
            lambda: not alert_states(prometheus, "CensusSyncFailed", STREAK),
            timeout=30,
            what="CensusSyncFailed resolved at the completed run",
        )
        gaps = firing_gaps(prometheus, STREAK, began, last_firing)
        assert gaps and max(gaps) <= 3.0, f"the alert resolved during the streak: gaps {gaps}"

        # A failure fixed between two refreshes: CensusSyncFailed cannot see it; CensusSyncRunFailed can.
        with workspace.lock:
            workspace.add_run(REPLACED, "failed", error_code="DESTINATION_RATE_LIMITED")
            workspace.add_run(REPLACED, "completed")
        wait_for(
            lambda: alert_states(prometheus, "CensusSyncRunFailed", REPLACED) == {"firing"},
            timeout=30,
            what="CensusSyncRunFailed for the replaced failure",
        )
        assert not alert_states(prometheus, "CensusSyncFailed", REPLACED)

        # Never succeeded: selected at once (pending for its 15 minutes' for:).
        assert alert_states(prometheus, "CensusSyncNotSucceededRecently", NEVER) == {"pending"}
        assert alert_states(prometheus, "CensusSyncFailed", NEVER) == {"firing"}

        # Paused while failing: the alert fires, then the pause silences it though no run completed.
        workspace.add_run(PAUSED, "failed", error_code="DESTINATION_UNAVAILABLE")
        wait_for(
            lambda: alert_states(prometheus, "CensusSyncFailed", PAUSED) == {"firing"},
            timeout=30,
            what="CensusSyncFailed for the sync about to be paused",
        )
        workspace.update_sync(PAUSED, paused=True)
        wait_for(
            lambda: not alert_states(prometheus, "CensusSyncFailed", PAUSED),
            timeout=30,
            what="CensusSyncFailed silenced by the pause",
        )
        streak = prometheus.query(f'census_sync_last_finished_run_failed{{sync_id="{PAUSED}"}}')
        assert [row["value"][1] for row in streak] == ["1"], "the streak itself still says failing"
        assert not alert_states(prometheus, "CensusSyncRunFailed", PAUSED), "a paused sync pages nobody"

        # The 2098 run pins nothing.
        assert newest_status(prometheus, FUTURE) == {"completed"}
        assert not alert_states(prometheus, "CensusSyncFailed", FUTURE)
    finally:
        prometheus.proc.stop()
