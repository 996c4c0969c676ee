"""What Prometheus receives: valid classic text and OpenMetrics, gzip, HTTP endpoints, promtool-clean."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Callable

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from census_exporter.demo import DemoActivity, SimulatedWorkspace, reference_workspace
from tests.conftest import Harness, require_tool

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
    assert families["census_sync_run_duration_seconds"].type == "histogram"
    assert families["census_up"].samples[0].value == 1


def test_classic_text_by_default_and_gzip_when_accepted(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    plain = h.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    raw = httpx.get(
        f"{h.base_url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10
    )  # httpx decodes; check the header and the bytes on the wire through a raw stream
    assert raw.headers["Content-Encoding"] == "gzip"
    with httpx.stream("GET", f"{h.base_url}/metrics", headers={"Accept-Encoding": "gzip"}) as stream:
        wire = b"".join(stream.iter_raw())
    assert b"census_up" in gzip.decompress(wire)


def test_help_strings_say_the_data_is_cached(harness_factory: HarnessFactory) -> None:
    m = harness_factory(reference_workspace(), cache_ttl=45.0).scrape()
    assert "Cached: up to 45s old." in m.helps["census_sync_last_run_status"]
    assert "Cached" in m.helps["census_sync_runs"]


def test_endpoints(harness_factory: HarnessFactory) -> None:
    h = harness_factory(reference_workspace())
    landing = h.get("/")
    assert landing.status_code == 200
    assert 'href="/metrics"' in landing.text and "0.1.0" in landing.text
    assert h.get("/healthz").status_code == 200
    assert h.get("/readyz").status_code == 503  # no refresh has finished yet
    h.scrape()
    assert h.get("/readyz").status_code == 200
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
