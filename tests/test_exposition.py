"""What Prometheus receives: valid classic text and OpenMetrics, gzip, HTTP endpoints, promtool-clean."""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from census_exporter.demo import DemoActivity, SimulatedWorkspace, reference_workspace
from tests.conftest import Harness, parse_scrape, require_tool

HarnessFactory = Callable[..., Harness]


def demo_harness(harness_factory: HarnessFactory) -> Harness:
    workspace = SimulatedWorkspace()
    DemoActivity(workspace, seed=7, syncs=25)
    return harness_factory(workspace)


def test_promtool_finds_nothing_to_report(harness_factory: HarnessFactory) -> None:
    promtool = require_tool("promtool")
    h = demo_harness(harness_factory)
    h.scrape()  # baseline
    text = h.get("/metrics").text
    assert "census_sync_last_run_status" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_openmetrics_by_accept_header(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    response = h.get("/metrics", Accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {family.name: family for family in parse_openmetrics(response.text)}
    assert families["census_sync_runs"].type == "counter"
    assert families["census_workspace_run_duration_seconds"].type == "histogram"
    assert families["census_up"].samples[0].value == 1


def test_classic_text_by_default_and_gzip_when_accepted(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=300.0)
    plain = h.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for _ in range(2):  # the second answer comes from the per-snapshot cache
        with httpx.stream("GET", f"{h.base_url}/metrics", headers={"Accept-Encoding": "gzip"}) as stream:
            assert stream.headers["Content-Encoding"] == "gzip"
            wire = b"".join(stream.iter_raw())
        # One ordinary gzip stream: clients that read only the first member must get everything.
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = decoder.decompress(wire) + decoder.flush()
        assert decoder.eof and decoder.unused_data == b""
        assert b"census_up{" in text and b"process_cpu_seconds_total" in text
        scrape = parse_scrape(text.decode())
        assert scrape.value("census_sync_last_run_status", sync_id="52", status="completed") == 1


def test_census_families_are_rendered_once_per_snapshot(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness_factory(reference_workspace(), cache_ttl=300.0)
    renders = []
    original = h.exporter.collector.render
    monkeypatch.setattr(h.exporter.collector, "render", lambda s: renders.append(s) or original(s))
    first = h.scrape()
    second = h.scrape()
    assert len(renders) == 1
    assert first.value("census_api_requests_total", endpoint="/syncs") == 1
    h.refresh()  # a new snapshot: rendered again, and the exporter's own metrics are current
    third = h.scrape()
    assert len(renders) == 2 and renders[0] is not renders[1]
    assert third.value("census_api_requests_total", endpoint="/syncs") == 2
    assert second.value("census_last_refresh_timestamp_seconds") < third.value(
        "census_last_refresh_timestamp_seconds"
    )
    openmetrics = h.get("/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert len(renders) == 2  # both formats share one rendering of the view
    assert "# TYPE census_sync_runs counter" in openmetrics.text


def test_help_strings_say_the_data_is_cached(harness_factory: HarnessFactory) -> None:
    m = harness_factory(reference_workspace(), cache_ttl=45.0).scrape()
    assert "Cached: up to 45s old." in m.helps["census_sync_last_run_status"]
    assert "Cached" in m.helps["census_sync_runs"]


def test_endpoints(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    landing = h.get("/")
    assert landing.status_code == 200
    assert 'href="/metrics"' in landing.text and "0.1.0" in landing.text
    assert "first refresh in progress" in landing.text
    assert h.get("/healthz").status_code == 200
    assert h.get("/readyz").status_code == 503  # no refresh has finished yet
    h.scrape()
    assert h.get("/readyz").status_code == 200
    landing = h.get("/").text
    assert "<th>Census API</th><td>up</td>" in landing
    assert "<th>Syncs</th><td>1</td>" in landing and "<th>Workspace</th><td>default</td>" in landing
    assert h.get("/nope").status_code == 404
    assert h.http.post(h.base_url + "/metrics").status_code == 405


def test_custom_telemetry_path(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace(), telemetry_path="/census/metrics")
    assert h.get("/metrics").status_code == 404
    assert "census_up" in h.get("/census/metrics").text


def test_build_info_and_process_metrics(harness_factory: HarnessFactory) -> None:
    m = harness_factory(reference_workspace()).scrape()
    assert m.value("census_exporter_build_info", version="0.1.0") == 1
    assert m.value("process_cpu_seconds_total") is not None
    assert m.value("census_refresh_duration_seconds") is not None
    assert not [name for name, _ in m.samples if name.endswith("_created")]


def test_an_exporter_that_never_started_closes() -> None:
    from census_exporter.config import Config, TokenSource
    from census_exporter.exporter import Exporter
    from census_exporter.workers import DaemonPool

    exporter = Exporter(
        Config(
            api_url="http://127.0.0.1:9/api/v1",
            token=TokenSource(value="t"),
            listen_host="127.0.0.1",
            listen_port=0,
        )
    )
    closing = DaemonPool(1, "closer").submit(exporter.close)
    closing.result(timeout=10)  # used to block forever in socketserver.shutdown()


def test_census_syncs_is_absent_while_the_sync_list_was_never_read(harness_factory: HarnessFactory) -> None:
    # Nothing listens on the discard port: the API is unreachable from the start.
    h = harness_factory(reference_workspace(), api_url="http://127.0.0.1:9/api/v1")
    m = h.scrape()
    assert m.value("census_up", workspace="default") == 0
    assert "census_syncs" in m.types  # the family is declared...
    assert m.value("census_syncs", workspace="default") is None  # ...but unknown is not 0
