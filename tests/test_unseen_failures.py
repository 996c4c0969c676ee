"""A failed run that the exporter showed, but not to Prometheus's rules, pages once: ``CensusSyncRunFailed``
fires for a failed run counted while ``CensusSyncFailed`` did not fire for the sync within 15 minutes.

With webhooks, the read a ``sync.failed`` triggers and the read of its successful retry can both fall between
two scrapes, or between two rule evaluations, or only another scraper may see the failing streak. The
exporter cannot know what Prometheus evaluated, so the rule decides. Over real HTTP: the simulator, the
exporter's webhook receiver, and a real Prometheus with the shipped rules, paused (SIGSTOP) while the two
reads happen so that it never sees the streak, or left running so that it does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Harness, wait_for
from tests.stack import Prometheus
from tests.webhook_harness import deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-unseen-7d41"
SYNC = 1


@contextmanager
def _paused(prometheus: Prometheus) -> Iterator[None]:
    """Prometheus neither scrapes nor evaluates while this lasts."""
    os.kill(prometheus.proc.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(prometheus.proc.process.pid, signal.SIGCONT)


def _alerts(prometheus: Prometheus, name: str) -> list[str]:
    """The states the alert had for the sync in the last 5 minutes (ALERTS series seen)."""
    found = prometheus.query(f'last_over_time(ALERTS{{alertname="{name}",sync_id="{SYNC}"}}[5m])')
    return sorted(series["metric"]["alertstate"] for series in found)


def _failing(harness: Harness) -> list[float]:
    return list(harness.scrape().all("census_sync_last_finished_run_failed", sync_id=str(SYNC)).values())


def _start(harness_factory: Callable[..., Harness], tmp_path: Path) -> tuple[Harness, Prometheus]:
    # Polling would take an hour: only the reads the events ask for see the two runs.
    harness = start_receiving(harness_factory, workspace_with_syncs(2), SECRET, cache_ttl=3600.0)
    prometheus = Prometheus(tmp_path, harness.exporter.port)
    wait_for(
        lambda: (
            prometheus.query(f'census:sync_info:latest{{sync_id="{SYNC}"}}')
            and prometheus.query(f'census_sync_runs_total{{sync_id="{SYNC}",status="failed"}} == 0')
        ),
        timeout=30,
        what="the sync and its failed-run counter at 0 in Prometheus",
    )
    return harness, prometheus


def _fail(harness: Harness) -> None:
    run_id = int(harness.workspace.add_run(SYNC, "failed", error_code="E_DESTINATION")["id"])
    assert deliver(harness, webhook_event(SYNC, run_id, "sync.failed"), secret=SECRET).status_code == 202
    wait_for(lambda: _failing(harness) == [1.0], what="the failure read")


def _retry_succeeds(harness: Harness) -> None:
    run_id = int(harness.workspace.add_run(SYNC, "completed")["id"])
    assert deliver(harness, webhook_event(SYNC, run_id, "sync.success"), secret=SECRET).status_code == 202
    wait_for(lambda: _failing(harness) == [0.0], what="the retry read")
    assert harness.scrape().value("census_sync_runs_total", sync_id=str(SYNC), status="failed") == 1


def test_a_failure_and_its_retry_that_prometheus_never_saw_as_the_streak_page_once(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    harness, prometheus = _start(harness_factory, tmp_path)
    try:
        with _paused(prometheus):
            _fail(harness)  # this test's own scrapes saw the streak; Prometheus did not
            _retry_succeeds(harness)
        wait_for(
            lambda: _alerts(prometheus, "CensusSyncRunFailed") == ["firing"],
            timeout=30,
            what="CensusSyncRunFailed firing",
        )
        assert _alerts(prometheus, "CensusSyncFailed") == []
    finally:
        prometheus.proc.stop()


def test_a_streak_prometheus_paged_does_not_page_again_when_its_retry_succeeds(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    harness, prometheus = _start(harness_factory, tmp_path)
    try:
        _fail(harness)
        wait_for(
            lambda: _alerts(prometheus, "CensusSyncFailed") == ["firing"],
            timeout=30,
            what="CensusSyncFailed firing",
        )
        _retry_succeeds(harness)
        seen_at = time.time()
        # Five seconds of scrapes and evaluations after the counted failure and the streak's end were there.
        wait_for(
            lambda: prometheus.query(
                f'timestamp(census_sync_last_finished_run_failed{{sync_id="{SYNC}",error_code=""}})'
                f" > {seen_at + 5}"
            ),
            timeout=30,
            what="five seconds of scrapes since the retry",
        )
        assert _alerts(prometheus, "CensusSyncRunFailed") == []
    finally:
        prometheus.proc.stop()
