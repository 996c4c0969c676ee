"""``CensusExporterTruncated`` end to end: a real Prometheus with the shipped alert rules scrapes the
exporter, which watches a simulated workspace listing more syncs than ``--census.max-syncs-per-workspace``.

promtool's unit tests (prometheus/tests/) check the rule on made-up series; here the series are the
exporter's own: the alert fires with the numbers and the flag in its description, and resolves when the
listing shrinks to within the bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from census_exporter.demo import SimulatedWorkspace
from tests.conftest import HarnessFactory, require_tool, wait_for
from tests.stack import Prometheus, rules_resolving_in

ALERT = "CensusExporterTruncated"
SYNCS = 5
BOUND = 3


def _rules_firing_at_once(directory: Path) -> list[Path]:
    """The shipped rule files with the alert's ``for: 15m`` at 1 s and ``keep_firing_for`` at 2 s."""
    copies = rules_resolving_in(2, directory)
    for path in copies:
        groups = yaml.safe_load(path.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == ALERT:
                    rule["for"] = "1s"
        path.write_text(yaml.safe_dump(groups))
    return copies


def _alerts(prometheus: Prometheus) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = prometheus.api("alerts")["alerts"]
    return [alert for alert in alerts if alert["labels"]["alertname"] == ALERT]


def test_the_truncation_alert_fires_on_a_listing_beyond_the_bound_and_resolves_when_it_fits(
    harness_factory: HarnessFactory, tmp_path: Path
) -> None:
    require_tool("prometheus")
    workspace = SimulatedWorkspace()
    for sync_id in range(1, SYNCS + 1):
        workspace.add_sync(sync_id, label=f"sync {sync_id}")
        workspace.add_run(sync_id, "completed", records=5)
    harness = harness_factory(workspace, start=True, cache_ttl=1.0, max_syncs_per_workspace=BOUND)
    prometheus = Prometheus(tmp_path, harness.exporter.port, rule_files=_rules_firing_at_once(tmp_path))
    try:

        def firing() -> list[dict[str, Any]]:
            return [alert for alert in _alerts(prometheus) if alert["state"] == "firing"]

        wait_for(lambda: bool(firing()), timeout=90, what=f"{ALERT} firing\n{prometheus.proc.output()}")
        [alert] = firing()
        assert float(alert["value"]) == SYNCS - BOUND
        left_out = prometheus.query("census_syncs_left_out")
        assert [float(series["value"][1]) for series in left_out] == [SYNCS - BOUND]
        assert alert["labels"]["workspace"] == left_out[0]["metric"]["workspace"]
        description = " ".join(alert["annotations"]["description"].split())
        watched = alert["labels"]["workspace"]
        assert f"does not watch {SYNCS - BOUND} syncs of workspace {watched}" in description
        assert "--census.max-syncs-per-workspace" in description
        assert prometheus.query("count(census_sync_info)")[0]["value"][1] == str(BOUND)

        # The listing shrinks to the bound: nothing is left out, and the alert resolves.
        for sync_id in range(BOUND + 1, SYNCS + 1):
            workspace.remove_sync(sync_id)
        wait_for(lambda: not _alerts(prometheus), timeout=90, what=f"{ALERT} resolved")
        assert [float(s["value"][1]) for s in prometheus.query("census_syncs_left_out")] in ([], [0.0])
    finally:
        prometheus.proc.stop()
