"""Refresh model: TTL cache, single flight, and a scrape budget that a slow API cannot break."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from census_exporter.demo import reference_workspace
from census_exporter.http.scrape import scrape_budget
from tests.conftest import Harness, wait_for

HarnessFactory = Callable[..., Harness]


def test_scrapes_within_the_ttl_cause_at_most_one_refresh(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=300.0)
    for _ in range(5):
        assert h.scrape().value("census_up") == 1
    assert h.simulator.count(r"^/api/v1/syncs$") == 1
    assert h.exporter.refresher.refresh_count == 1


def test_expired_ttl_refreshes_again(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=0.0)
    h.scrape()
    h.scrape()
    assert h.simulator.count(r"^/api/v1/syncs$") == 2
    # Connection names are refreshed rarely, not on every refresh.
    assert h.simulator.count(r"^/api/v1/sources$") == 1


def test_concurrent_scrapes_share_one_refresh(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=300.0, latency=0.3)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: h.scrape(), range(8)))
    assert all(m.value("census_up") == 1 for m in results)
    assert h.simulator.count(r"^/api/v1/syncs$") == 1
    assert h.exporter.refresher.refresh_count == 1


@pytest.mark.slow  # 6-10 s: test-fast keeps to tests under ~5 s
def test_a_slow_api_does_not_hold_a_scrape_past_its_budget(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=0.0, latency=1.5)
    # Budget: 1 s header - 0.5 s offset. The refresh needs at least 4 requests x 1.5 s.
    first = h.scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    refresh = h.exporter.refresher.trigger()
    assert not refresh.done(), "the scrape returned only after the refresh finished"
    assert first.value("census_up") == 0  # nothing fetched yet: not up, and no invented data
    assert first.all("census_sync_info") == {}
    assert h.get("/readyz").status_code == 503
    refresh.result(timeout=30)
    assert h.get("/readyz").status_code == 200
    # The next scrape gets the finished refresh's data even though it starts another one.
    second = h.scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert second.value("census_up") == 1
    assert second.value("census_sync_last_run_status", sync_id="52", status="completed") == 1


def test_first_refresh_starts_at_startup_without_a_scrape(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), start=True, cache_ttl=300.0)
    assert h.get("/healthz").status_code == 200
    wait_for(lambda: h.get("/readyz").status_code == 200, what="readiness after the first refresh")
    assert h.simulator.count(r"^/api/v1/syncs$") == 1


def test_scrape_budget_from_the_prometheus_header() -> None:
    assert scrape_budget("10") == 9.0
    assert scrape_budget("0.2") == 0.0
    assert scrape_budget(None) == 9.0
    assert scrape_budget("soon") == 9.0
    assert scrape_budget("-3") == 9.0
