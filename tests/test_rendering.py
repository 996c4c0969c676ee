"""The exposition written straight to bytes (census_exporter.rendering) says what prometheus_client would.

The golden files pin the whole text exposition of the reference workspace; these tests compare the
rendering with prometheus_client's own encoders on awkward names and values, and check that the OpenMetrics
output, which shares the text output's sample lines, passes prometheus_client's strict OpenMetrics parser
with the same samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from census_exporter.collector import CensusCollector
from census_exporter.config import Exposition
from census_exporter.demo import DemoActivity, SimulatedWorkspace
from census_exporter.rendering import Family, FamilyBlocks, label_text, sample
from tests.conftest import Harness

AWKWARD_TEXT = [
    "plain",
    "",
    'quote " inside',
    "back\\slash",
    "new\nline",
    "trailing backslash \\",
    "Ünïcødé ✓ 日本",
    "{braces},commas=equals",
]
VALUES = [0, 1, -1, 0.5, 1e-9, 123456, 1234567, 1634698267.546, 10**15, 2**53 + 1, -1634698267.5, True, False]


class _Families(Collector):
    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return list(self._families)


def _prometheus_client(*families: Metric) -> tuple[bytes, bytes]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(*families))
    return generate_latest(registry), generate_openmetrics(registry)


@pytest.mark.parametrize("text", AWKWARD_TEXT)
def test_labels_and_help_are_escaped_as_prometheus_client_does(text: str) -> None:
    gauge = GaugeMetricFamily("census_test", f"help with {text}", labels=["zeta", "alpha"])
    gauge.add_metric([text, "a"], 1)
    counter = CounterMetricFamily("census_test_total", f"counter {text}", labels=["workspace"])
    counter.add_metric([text], 3)
    expected_text, expected_openmetrics = _prometheus_client(gauge, counter)

    blocks = FamilyBlocks(
        [
            Family("census_test", "gauge", f"help with {text}"),
            Family("census_test_total", "counter", f"counter {text}"),
        ]
    )
    blocks.add(
        [
            (0, sample("census_test", label_text([("zeta", text), ("alpha", "a")]), 1)),
            (1, sample("census_test_total", label_text([("workspace", text)]), 3)),
        ]
    )
    rendered = blocks.rendered()
    assert rendered.text() == expected_text
    assert rendered.openmetrics() == expected_openmetrics


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    gauge = GaugeMetricFamily("census_value", "A value.", labels=["sync_id"])
    gauge.add_metric(["1"], value)
    expected_text, _ = _prometheus_client(gauge)
    rendered = FamilyBlocks([Family("census_value", "gauge", "A value.")])
    rendered.add([(0, sample("census_value", label_text([("sync_id", "1")]), value))])
    assert rendered.rendered().text() == expected_text


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400])
def test_a_value_without_a_finite_float_is_refused(value: float) -> None:
    with pytest.raises((OverflowError, ValueError)):
        sample("census_value", "", value)


def test_a_counter_must_be_named_for_the_text_format() -> None:
    with pytest.raises(ValueError, match="_total"):
        Family("census_runs", "counter", "Runs.")


def test_a_line_that_cannot_be_encoded_keeps_none_of_its_group() -> None:
    blocks = FamilyBlocks([Family("census_a", "gauge", "A."), Family("census_b", "gauge", "B.")])
    with pytest.raises(UnicodeEncodeError):
        blocks.add([(0, sample("census_a", "", 1)), (1, sample("census_b", 'x="\ud800"', 1))])
    blocks.add([(1, sample("census_b", "", 2))])
    assert blocks.rendered().text().endswith(b"# TYPE census_b gauge\ncensus_b 2.0\n")
    assert b"census_a 1.0" not in blocks.rendered().text()


@pytest.mark.parametrize("setting", ["default", "everything"])
def test_both_formats_carry_the_same_samples(setting: str, harness_factory: Callable[..., Harness]) -> None:
    """A busy demo workspace (runs of every status, histograms, totals) in both formats, parsed strictly."""
    workspace = SimulatedWorkspace()
    now = [time.time()]
    activity = DemoActivity(workspace, seed=5, syncs=15, clock=lambda: now[0])
    exposition = Exposition() if setting == "default" else Exposition.everything()
    h = harness_factory(workspace, exposition=exposition)
    h.scrape()
    for _ in range(24):
        now[0] += 600
        activity.advance()
    h.refresh()
    rendered = CensusCollector(60.0, exposition).render(h.exporter.fleet.view)

    def samples(families: list[Metric]) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {(s.name, tuple(sorted(s.labels.items())), s.value) for f in families for s in f.samples}

    text = samples(list(parse_text(rendered.text().decode())))
    openmetrics = samples(list(parse_openmetrics(rendered.openmetrics().decode())))
    assert len(text) > 15 * 10
    assert text == openmetrics


def test_api_request_metrics_say_what_prometheus_client_metrics_would() -> None:
    from prometheus_client import Counter, Histogram

    from census_exporter.instrumentation import (
        DURATIONS,
        REQUEST_DURATION_BUCKETS,
        REQUESTS,
        ApiRequestMetrics,
    )

    ours = ApiRequestMetrics()
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter(REQUESTS.name, REQUESTS.help, ["workspace", "endpoint", "code"], registry=registry)
    buckets = REQUEST_DURATION_BUCKETS
    labels = ["workspace", "endpoint"]
    durations = Histogram(DURATIONS.name, DURATIONS.help, labels, buckets=buckets, registry=registry)
    observations = [
        ("sales", "/syncs", "200", 0.05),
        ("sales", "/syncs", "200", 0.051),
        ("sales", "/syncs", "503", 31.0),
        ("", "/workspaces", "timeout", 10.0),
        ("marketing", "/syncs/{id}/sync_runs", "200", 0.0001),
        ("marketing", "/syncs/{id}/sync_runs", "200", 2.5),
    ]
    observers = {name: ours.observer(name) for name in ("sales", "marketing", "")}
    first = ours.render()
    assert ours.render() is first  # nothing changed: the same rendering
    for workspace, endpoint, code, seconds in observations:
        observers[workspace].observe(endpoint, code, seconds)
        requests.labels(workspace, endpoint, code).inc()
        durations.labels(workspace, endpoint).observe(seconds)

    def samples(text: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        parsed = parse_text(text.decode())
        # The exporter disables prometheus_client's *_created samples; this registry has them.
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in parsed
            for s in f.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours.render().text()) == samples(generate_latest(registry))
    observers["sales"].close()
    assert b'workspace="sales"' not in ours.render().text()
    assert b'workspace="marketing"' in ours.render().text()
