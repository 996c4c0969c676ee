"""Adversarial review of "a failing streak no scrape showed counts as superseded" (18399b8) and of the
per-sync memory of the newest run a terminal event named, over real HTTP against the simulator.

Each test states one way the change loses, doubles or hides a page. "Paged" means: a scrape Prometheus
received showed ``census_sync_last_finished_run_failed == 1`` (``CensusSyncFailed``, ``for: 0m``), or the
superseded counter rose (``CensusSyncRunFailed``). A failure must page once: not zero times, not twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_exporter.demo.server import API_PREFIX, Fault
from census_exporter.ledger import SyncLedger
from census_exporter.rendering import RenderedFamilies
from census_exporter.snapshot import FleetView
from tests.conftest import Harness, Scrape, wait_for
from tests.webhook_harness import WORKSPACE, deliver, start_receiving, webhook_event, workspace_with_syncs

SECRET = "whsec-adversary-93b2"
#: What Prometheus sends with every scrape.
PROMETHEUS = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}


def _ledger(harness: Harness, sync_id: int) -> SyncLedger:
    state = harness.exporter.refresher.snapshot.syncs.get(sync_id)
    assert state is not None and state.ledger is not None
    return state.ledger


def _failing(scrape: Scrape, sync_id: int = 1) -> list[float]:
    return list(scrape.all("census_sync_last_finished_run_failed", sync_id=str(sync_id)).values())


def _superseded(scrape: Scrape, sync_id: int = 1) -> float | None:
    return scrape.value("census_sync_superseded_failed_runs_total", sync_id=str(sync_id))


def _slow_runs(harness: Harness, sync_id: int, delay: float) -> Fault:
    """Sync ``sync_id``'s runs as the simulator answers them now, delivered ``delay`` seconds late."""
    status, body = harness.simulator.answer(f"{API_PREFIX}/syncs/{sync_id}/sync_runs", {})
    return Fault(rf"/syncs/{sync_id}/sync_runs$", status, json.dumps(body).encode(), delay_seconds=delay)


class _HeldRender:
    """Holds the next fresh rendering of /metrics until released (a large fleet on a loaded machine)."""

    def __init__(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        collector = harness.exporter.app._census._collector
        original = collector.render
        self.entered = threading.Event()
        self.release = threading.Event()
        held = [False]

        def render(view: FleetView) -> RenderedFamilies:
            if not held[0]:
                held[0] = True
                self.entered.set()
                self.release.wait(timeout=20)
            return original(view)

        monkeypatch.setattr(collector, "render", render)


class _Closing:
    """A WSGI body that says when the server is done with it (sent, or failed to send)."""

    def __init__(self, chunks: Iterable[bytes], done: threading.Event) -> None:
        self._chunks, self._done = chunks, done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._done.set()


def _answered(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the server is done with the next /metrics response."""
    app = harness.exporter.app
    original = app._metrics
    done = threading.Event()

    def metrics(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return _Closing(original(environ, start_response), done)

    monkeypatch.setattr(app, "_metrics", metrics)
    return done


def _scrape_in_background(harness: Harness, **headers: str) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(harness.scrape(**headers))
        except Exception as error:  # noqa: BLE001 - handed to the test
            result.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


# --------------------------------------------------------------------------------------------------------
# Paged twice: the streak was shown, and its failures count as superseded too.


def test_a_streak_a_scrape_shows_while_the_round_that_ends_it_is_still_running_is_not_superseded_too(
    harness_factory: Callable[..., Harness],
) -> None:
    """Whether the streak was shown is decided when the sync's read returns, not when the round swaps in:
    every scrape during the rest of the round is served the old snapshot, failing streak and all
    (CensusSyncFailed fires), and the swap then adds the same failure to the superseded counter
    (CensusSyncRunFailed fires too). With thousands of syncs the rest of the round lasts minutes."""
    harness = harness_factory(workspace_with_syncs(2), cache_ttl=3600.0, concurrency=1)
    harness.refresh()
    harness.scrape(**PROMETHEUS)
    workspace, simulator = harness.workspace, harness.simulator
    workspace.add_run(1, "failed", error_code="E_DESTINATION")
    harness.refresh()  # the failure, read by a round no scrape followed
    assert _ledger(harness, 1).failing is True
    workspace.add_run(1, "completed")  # its retry succeeds
    simulator.inject(_slow_runs(harness, 2, 4.0))  # the rest of the round: sync 2, slow
    reads_of_1, reads_of_2 = simulator.count(r"/syncs/1/sync_runs$"), simulator.count(r"/syncs/2/sync_runs$")
    round_done = harness.exporter.refresher.trigger()
    wait_for(
        lambda: (
            simulator.count(r"/syncs/1/sync_runs$") > reads_of_1
            and simulator.count(r"/syncs/2/sync_runs$") > reads_of_2
        ),
        what="the round past sync 1 (its success read) and into sync 2",
    )
    during = harness.scrape(**PROMETHEUS)
    assert _failing(during) == [1.0], "Prometheus is shown the failing streak: CensusSyncFailed pages"
    round_done.result(timeout=30)
    after = harness.scrape(**PROMETHEUS)
    assert _failing(after) == [0.0]
    assert _superseded(after) == 0, "the shown failure also counted as superseded: it pages twice"


def test_a_scrape_rendering_while_an_announced_read_swaps_in_still_counts_as_showing_the_streak(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view is marked shown after it is rendered; a swap during the rendering (any announced read, of
    any sync) finds the outgoing snapshot unmarked, so the streak it held is not remembered as shown,
    although the scrape then serves it. Its retry's success then counts it superseded: paged twice."""
    harness = start_receiving(harness_factory, workspace_with_syncs(2), SECRET, cache_ttl=3600.0)
    harness.scrape(**PROMETHEUS)
    workspace = harness.workspace
    failed = int(workspace.add_run(1, "failed", error_code="E_DESTINATION")["id"])
    assert deliver(harness, webhook_event(1, failed, "sync.failed"), secret=SECRET).status_code == 202
    wait_for(lambda: _ledger(harness, 1).failing is True, what="the failure read")
    held = _HeldRender(harness, monkeypatch)
    thread, result = _scrape_in_background(harness, **PROMETHEUS)
    assert held.entered.wait(timeout=10)
    # Meanwhile sync 2 completes a run and its event's read swaps a new snapshot in.
    other = int(workspace.add_run(2, "completed")["id"])
    assert deliver(harness, webhook_event(2, other, "sync.success"), secret=SECRET).status_code == 202
    wait_for(lambda: _ledger(harness, 2).counters.runs_by_status.get("completed") == 1, what="sync 2's read")
    held.release.set()
    thread.join(timeout=20)
    assert isinstance(result[0], Scrape) and _failing(result[0]) == [1.0], "the streak was served"
    retried = int(workspace.add_run(1, "completed")["id"])
    assert deliver(harness, webhook_event(1, retried, "sync.success"), secret=SECRET).status_code == 202
    wait_for(lambda: _ledger(harness, 1).failing is False, what="the retry read")
    assert _superseded(harness.scrape(**PROMETHEUS)) == 0, "shown and superseded: it pages twice"


def test_a_streak_ended_by_the_first_read_after_a_restart_pages_again_rather_than_never(
    harness_factory: Callable[..., Harness], tmp_path: Path
) -> None:
    """With --storage.path the streak (its first run, its failures) survives a restart; whether a scrape
    showed it does not (it is not stored). The first read after the restart sees the retry's success and
    counts the failure as superseded: CensusSyncRunFailed pages for a failure CensusSyncFailed may already
    have paged for. That is the chosen way to be wrong: taking a restored streak as shown would leave a
    failure read just before the restart, and never scraped, unpaged (docs/runbook.md)."""
    workspace = workspace_with_syncs(1)
    storage = str(tmp_path / "ledgers")
    before = harness_factory(workspace, cache_ttl=3600.0, storage_path=storage)
    before.refresh()
    workspace.add_run(1, "failed", error_code="E_DESTINATION")
    before.refresh()
    assert _failing(before.scrape(**PROMETHEUS)) == [1.0]  # paged: CensusSyncFailed
    before.exporter.close()
    workspace.add_run(1, "completed")
    # The same API (the ledger file is kept per API URL): only the exporter restarts.
    after = harness_factory(workspace, cache_ttl=3600.0, storage_path=storage, api_url=before.simulator.url)
    after.refresh()
    scrape = after.scrape(**PROMETHEUS)
    assert scrape.value("census_sync_runs_total", sync_id="1", status="failed") == 1  # restored, not redone
    assert _failing(scrape) == [0.0]
    assert _superseded(scrape) == 1


# --------------------------------------------------------------------------------------------------------
# Not paged at all.


def test_a_scrape_prometheus_gave_up_on_does_not_count_as_showing_the_streak(
    harness_factory: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view is marked shown as soon as its body is built, whether or not Prometheus receives it: a
    scrape that outlasts Prometheus's timeout (a slow rendering) marks the streak shown although no sample
    reached Prometheus. The retry's success then counts nothing superseded, and nothing ever pages."""
    harness = start_receiving(harness_factory, workspace_with_syncs(2), SECRET, cache_ttl=3600.0)
    harness.scrape(**PROMETHEUS)
    workspace = harness.workspace
    failed = int(workspace.add_run(1, "failed", error_code="E_DESTINATION")["id"])
    assert deliver(harness, webhook_event(1, failed, "sync.failed"), secret=SECRET).status_code == 202
    wait_for(lambda: _ledger(harness, 1).failing is True, what="the failure read")
    held = _HeldRender(harness, monkeypatch)
    answered = _answered(harness, monkeypatch)
    snapshot = harness.exporter.refresher.snapshot
    with pytest.raises(httpx.TimeoutException):  # Prometheus's scrape timeout: it gives up
        harness.http.get(
            harness.base_url + "/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.5"},
            timeout=0.5,
        )
    assert held.entered.wait(timeout=10)
    held.release.set()
    assert answered.wait(timeout=20), "the exporter finished the abandoned scrape (for nobody)"
    assert snapshot is harness.exporter.refresher.snapshot
    retried = int(workspace.add_run(1, "completed")["id"])
    assert deliver(harness, webhook_event(1, retried, "sync.success"), secret=SECRET).status_code == 202
    wait_for(lambda: _ledger(harness, 1).failing is False, what="the retry read")
    assert _superseded(harness.scrape(**PROMETHEUS)) == 1, "no scrape Prometheus received showed it"


@pytest.mark.parametrize("jump", [10**15, 10**6], ids=["implausible", "plausible"])
def test_a_bogus_run_id_in_a_signed_event_does_not_hide_the_sync_s_later_unannounced_runs_for_good(
    harness_factory: Callable[..., Harness], jump: int
) -> None:
    """The per-sync memory of the newest run a terminal event named takes any id a signed event carries.
    One event naming a run far ahead (a buggy or hostile sender; another sync's run, as run ids are global)
    makes every later run of that sync look announced: none is counted unannounced, and webhooks that
    stopped delivering for it never fall back. An implausible id must not be remembered; a plausible one
    not for longer than a reconcile interval (the memory is needed only until the round that read the
    sync swaps in). Sync 3's run, announced by nothing either, shows that the grace passed."""
    harness = start_receiving(
        harness_factory,
        workspace_with_syncs(3),
        SECRET,
        cache_ttl=3600.0,
        webhook_announcement_grace_seconds=0.5,
        webhook_reconcile_interval_seconds=0.5,
    )
    workspace = harness.workspace
    bogus = webhook_event(1, _ledger(harness, 1).recent_run_ids[-1] + jump, "sync.success")
    assert deliver(harness, bogus, secret=SECRET).status_code == 202
    reads_of_1 = harness.simulator.count(r"/syncs/1/sync_runs$")
    wait_for(
        lambda: harness.simulator.count(r"/syncs/1/sync_runs$") > reads_of_1, what="the bogus event's read"
    )
    workspace.add_run(1, "completed")  # no event will name these two runs
    workspace.add_run(3, "completed")

    def counted_by_a_round() -> bool:
        harness.refresh()
        return all(
            _ledger(harness, sync_id).counters.runs_by_status.get("completed") == 1 for sync_id in (1, 3)
        )

    wait_for(counted_by_a_round, what="a full round counting both runs")

    def unannounced() -> float:
        return harness.scrape().value("census_webhook_unannounced_runs_total", workspace=WORKSPACE) or 0.0

    wait_for(lambda: unannounced() >= 1, what="sync 3's run counted unannounced")
    wait_for(lambda: unannounced() >= 2, timeout=3, what="sync 1's run counted unannounced too")
