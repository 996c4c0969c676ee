"""Builds the Census sync runs dashboard with grafana-foundation-sdk (Grafana 11.x).

    python grafana/generate.py          # writes mixin/dashboards/census-sync-runs.json
    python grafana/generate.py --check  # exits 1 if the committed file differs from what the code builds

The JSON it writes is the monitoring mixin's dashboard (mixin/dashboards/); the mixin applies its _config
(uid, tags, selector) and renders grafana/census-sync-runs.json and the Helm chart's copy from it
(scripts/gen-mixin). `make dashboard` runs both.

The dashboard reads the recording rules in prometheus/rules.yaml (``census:sync_info:latest`` joins a sync's
name onto its series); load them in Prometheus together with the alerts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

OUTPUT = Path(__file__).resolve().parent.parent / "mixin" / "dashboards" / "census-sync-runs.json"
UID = "census-sync-runs"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# The workspace variable is multi-select ("All" is `.*`), so every selector matches it as a regex.
WS = 'workspace=~"$workspace"'
# Joins a sync's name onto any per-sync series and keeps only the syncs picked in the "sync" variable.
SYNC_JOIN = (
    "on (job, instance, workspace, sync_id) group_left (label) "
    f'census:sync_info:latest{{{WS}, label=~"$sync"}}'
)
STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "working": "blue",
    "queued": "purple",
    "skipped": "yellow",
}
# The sync table's order: failures first, then runs in progress, skipped, and completed last.
STATUS_SEVERITY = {"failed": 0, "working": 1, "queued": 1, "skipped": 2, "completed": 3}
# How a series of one sync is named in legends and annotations: sync labels may repeat across workspaces.
LEGEND_SYNC = "{{label}} ({{workspace}})"
# The scrape interval the exporter is meant for (60 s, its cache TTL), as every rate query's "Min step" and
# the panel's "Min interval": Grafana's $__rate_interval is max($__interval + step, 4 x step), with the data
# source's scrape interval (15 s unless set) as the step otherwise, so zoomed in a 60 s rate window held at
# most one sample and the panel went blank. With 1m it is at least 4m whatever the data source says.
RATE_MIN_STEP = "1m"
# CensusSyncNotSucceededRecently's default threshold (prometheus/alerts.yaml).
SUCCESS_AGE_ALERT_SECONDS = 86400


def status_severity(selector: str) -> str:
    """Per sync, the newest run's status as a number to sort by (STATUS_SEVERITY)."""
    by_value: dict[int, list[str]] = {}
    for status, severity in STATUS_SEVERITY.items():
        by_value.setdefault(severity, []).append(status)
    parts = [
        f'(census_sync_last_run_status{{{selector}, status=~"{"|".join(statuses)}"}} == 1) * 0 + {severity}'
        for severity, statuses in sorted(by_value.items())
    ]
    return "\n  or ".join(parts)


def per_sync(expr: str) -> str:
    """``expr`` (a per-sync vector) restricted to the selected syncs, with their ``label`` joined on."""
    return f"({expr}) * {SYNC_JOIN}"


def record_total(name: str, function: str, window: str) -> str:
    """``function`` (rate or increase) of a record total over ``window``, summed over the selected syncs.

    With --census.record-totals=workspace (the default) the exporter sums records per workspace only: the
    query then falls back to the workspace totals, which the sync variable cannot narrow.
    """
    return (
        f"sum({per_sync(f'{function}(census_sync_{name}_total{{{WS}}}[{window}])')})\n"
        f"  or sum({function}(census_workspace_{name}_total{{{WS}}}[{window}]))"
    )


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False, as_table: bool = False) -> Any:
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if "$__rate_interval" in expr:
        target = target.interval(RATE_MIN_STEP)
    if instant:
        target = target.instant()
    if as_table:
        target = target.format(prometheus_model.PromQueryFormat.TABLE)
    return target


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def stat_panel(title: str, description: str, expr: str, unit: str, width: int) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, instant=True))
        .unit(unit)
        .height(4)
        .span(width)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def series_panel(
    title: str, description: str, targets: Sequence[Any], unit: str, width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(width)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    if any("$__rate_interval" in (target.build().expr or "") for target in targets):
        panel = panel.interval(RATE_MIN_STEP)
    return panel


def overview_row() -> list[Any]:
    failing = per_sync(f'census_sync_last_run_status{{{WS}, status="failed"}} == 1')
    running = per_sync(f'census_sync_last_run_status{{{WS}, status=~"queued|working"}} == 1')
    completed_24h = per_sync(f'increase(census_sync_runs_total{{{WS}, status="completed"}}[24h])')
    finished_24h = per_sync(f'increase(census_sync_runs_total{{{WS}, status=~"completed|failed"}}[24h])')
    return [
        stat_panel(
            "Syncs",
            "Syncs in the selected workspaces (matching the sync filter).",
            f'count(census:sync_info:latest{{{WS}, label=~"$sync"}})',
            "none",
            3,
        ),
        stat_panel(
            "Failing now", "Syncs whose newest run failed.", f"count({failing}) or vector(0)", "none", 3
        ).thresholds(thresholds((None, "green"), (1, "red"))),
        stat_panel(
            "Running now",
            "Syncs whose newest run is queued or working.",
            f"count({running}) or vector(0)",
            "none",
            3,
        ).thresholds(thresholds((None, "blue"))),
        stat_panel(
            "Success ratio (24h)",
            "Completed runs as a share of completed and failed runs that finished in the last 24 hours.",
            f"sum({completed_24h}) / sum({finished_24h})",
            "percentunit",
            4,
        ).thresholds(thresholds((None, "red"), (0.9, "yellow"), (0.99, "green"))),
        stat_panel(
            "Records processed (24h)",
            "Records processed by runs that finished in the last 24 hours (of the whole workspaces unless "
            "the exporter runs with --census.record-totals=sync).",
            record_total("records_processed", "increase", "24h"),
            "short",
            4,
        ),
        stat_panel(
            "Records rejected (24h)",
            "Records the destinations rejected in runs that finished in the last 24 hours (of the whole "
            "workspaces unless the exporter runs with --census.record-totals=sync).",
            record_total("records_failed", "increase", "24h"),
            "short",
            4,
        ).thresholds(thresholds((None, "green"), (1, "orange"))),
        stat_panel(
            "Census API",
            "Whether the exporter's last refresh of the Census API finished without errors (census_up); "
            "Down when it did not for any of the selected workspaces.",
            f"min(census_up{{{WS}}})",
            "none",
            3,
        )
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="Down", color="red"),
                        "1": model.ValueMappingResult(text="Up", color="green"),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, "red"), (1, "green"))),
    ]


def sync_table() -> table.Panel:
    def column(metric: str, extra: str = "") -> str:
        # One value per sync (and per ``extra`` label), only for the syncs picked in the "sync" variable.
        # A sync is (workspace, sync_id): sync ids repeat across workspaces.
        return f"max by (workspace, sync_id{extra}) ({per_sync(metric)})"

    info = f'census:sync_info:latest{{{WS}, label=~"$sync"}}'
    columns = [
        ("A", f"max by (workspace, sync_id, label, destination, operation, schedule) ({info})"),
        ("B", column(f"census_sync_last_run_status{{{WS}}} == 1", ", status")),
        ("C", column(f"time() - census_sync_last_run_created_timestamp_seconds{{{WS}}}")),
        ("D", column(f"census_sync_last_run_duration_seconds{{{WS}}}")),
        ("E", column(f"census_sync_last_run_records_processed{{{WS}}}")),
        ("F", column(f"census_sync_last_run_records_updated{{{WS}}}")),
        ("G", column(f"census_sync_last_run_records_failed{{{WS}}}")),
        ("H", column(f"census_sync_last_run_records_invalid{{{WS}}}")),
        ("I", column(f"census:sync_last_run_info:latest{{{WS}}}", ", error_code")),
        ("J", column(f"census_sync_paused{{{WS}}}")),
        ("K", f"min by (workspace, sync_id) ({per_sync(status_severity(WS))})"),
    ]
    panel = (
        table.Panel()
        .title("Syncs")
        .description(
            "One row per sync and workspace: the newest run's status, age, duration, record counts and "
            "error code. Click a sync's name to open it in Census."
        )
        .datasource(DATASOURCE)
        .unit("none")
        .height(10)
        .span(24)
    )
    for ref, expr in columns:
        panel = panel.with_target(query(expr, ref=ref, instant=True, as_table=True))
    # Value #K, the status severity, orders the rows (the sortBy transformation) and is then hidden.
    hidden = ["Time", "Value #A", "Value #B", "Value #I", "Value #K"]
    rename = {
        "workspace": "Workspace",
        "label": "Sync",
        "status": "Last status",
        "Value #C": "Age",
        "Value #D": "Duration",
        "Value #E": "Processed",
        "Value #F": "Updated",
        "Value #G": "Rejected",
        "Value #H": "Invalid",
        "error_code": "Error code",
        "Value #J": "Paused",
        "destination": "Destination",
        "operation": "Operation",
        "schedule": "Schedule",
        "sync_id": "Id",
    }
    order = list(rename)
    panel = (
        panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="sortBy", options={"fields": {}, "sort": [{"field": "Value #K", "desc": False}]}
            )
        )
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": dict.fromkeys(hidden, True),
                    "renameByName": rename,
                    "indexByName": {name: index for index, name in enumerate(order)},
                },
            )
        )
    )
    status_cell = common.TableColoredBackgroundCellOptions()
    panel = panel.override_by_name(
        "Last status",
        [
            model.DynamicConfigValue(
                id_val="mappings",
                value=[
                    model.ValueMap(
                        options={
                            status: model.ValueMappingResult(text=status, color=colour, index=index)
                            for index, (status, colour) in enumerate(STATUS_COLOURS.items())
                        }
                    )
                ],
            ),
            model.DynamicConfigValue(id_val="custom.cellOptions", value=status_cell),
        ],
    )
    panel = panel.override_by_name(
        "Sync",
        [
            model.DynamicConfigValue(
                id_val="links",
                value=[
                    {
                        "title": "Open in Census",
                        "url": "${census_url}/syncs/${__data.fields.Id}",
                        "targetBlank": True,
                    }
                ],
            )
        ],
    )
    for name in ("Age", "Duration"):
        panel = panel.override_by_name(name, [model.DynamicConfigValue(id_val="unit", value="s")])
    panel = panel.override_by_name(
        "Rejected",
        [
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            model.DynamicConfigValue(
                id_val="thresholds",
                value=thresholds((None, "text"), (1, "orange")).build(),
            ),
        ],
    )
    return panel.override_by_name(
        "Paused",
        [
            model.DynamicConfigValue(
                id_val="mappings",
                value=[
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="no", index=0),
                            "1": model.ValueMappingResult(text="paused", color="yellow", index=1),
                        }
                    )
                ],
            )
        ],
    )


def runs_row() -> list[Any]:
    records = [
        (name, legend, record_total(name, "rate", "$__rate_interval"))
        for name, legend in (
            ("records_processed", "processed"),
            ("records_updated", "updated"),
            ("records_failed", "rejected"),
            ("records_invalid", "invalid"),
        )
    ]
    # The histogram is per sync, per workspace (the default, which the sync variable cannot narrow) or off;
    # when off, the quantiles are those of each selected sync's newest run.
    buckets = (
        f"sum by (le) ({per_sync(f'increase(census_sync_run_duration_seconds_bucket{{{WS}}}[1h])')})\n"
        f"  or sum by (le) (increase(census_workspace_run_duration_seconds_bucket{{{WS}}}[1h]))"
    )
    last_run_durations = per_sync(f"census_sync_last_run_duration_seconds{{{WS}}}")

    def duration_quantile(q: float) -> str:
        return f"histogram_quantile({q}, {buckets})\nor quantile({q}, {last_run_durations})"

    return [
        series_panel(
            "Runs by status",
            "Runs that finished in each bar's interval, by final status: whole runs per hour (per longer "
            "interval only when zoomed out beyond about a month). The exporter counts runs from its start, "
            "so the bar of a restart shows fewer.",
            [
                query(
                    "round(sum by (status) ("
                    + per_sync(f"increase(census_sync_runs_total{{{WS}}}[$__interval])")
                    + "))",
                    "{{status}}",
                )
            ],
            "short",
        )
        # Each point counts the runs of its own step (at least an hour), so the bars add up to every run
        # once and do not change with zoom; round() removes increase()'s extrapolation.
        .interval("1h")
        .draw_style(common.GraphDrawStyle.BARS)
        .stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
        .decimals(0),
        series_panel(
            "Records",
            "Records per second processed, accepted (updated), rejected by the destination, and invalid; of "
            "the whole workspaces unless the exporter runs with --census.record-totals=sync.",
            [query(expr, legend, ref=chr(ord("A") + i)) for i, (_, legend, expr) in enumerate(records)],
            "cps",
        ),
        series_panel(
            "Run duration",
            "Median and 95th percentile duration of runs that finished in the past hour (of the whole "
            "workspaces with --census.duration-histogram=workspace, the default; of each sync's newest run "
            "with =off), and each sync's newest run.",
            [
                query(duration_quantile(0.5), "p50", ref="A"),
                query(duration_quantile(0.95), "p95", ref="B"),
                query(
                    per_sync(f"census_sync_last_run_duration_seconds{{{WS}}}"),
                    f"last run: {LEGEND_SYNC}",
                    ref="C",
                ),
            ],
            "s",
        ),
        series_panel(
            "Time since last success",
            "How long ago each sync last completed successfully. The red line is the 24 h after which "
            "CensusSyncNotSucceededRecently fires (unless the sync has its own threshold).",
            [query(per_sync(f"time() - census_sync_last_success_timestamp_seconds{{{WS}}}"), LEGEND_SYNC)],
            "s",
        )
        .thresholds(thresholds((None, "transparent"), (SUCCESS_AGE_ALERT_SECONDS, "red")))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)),
    ]


def health_row() -> list[Any]:
    return [
        series_panel(
            "Census API up",
            "1 when the exporter's last refresh finished without errors (census_up).",
            [query(f"census_up{{{WS}}}", "{{workspace}} ({{instance}})")],
            "none",
            6,
        ),
        series_panel(
            "Refresh duration",
            "How long the exporter's last refresh of the Census API took.",
            [query(f"census_refresh_duration_seconds{{{WS}}}", "{{workspace}} ({{instance}})")],
            "s",
            6,
        ),
        series_panel(
            "API requests by response code",
            "Requests per second to the Census API, by workspace and HTTP status (or timeout / "
            "connection_error).",
            [
                query(
                    f"sum by (workspace, code) (rate(census_api_requests_total{{{WS}}}[$__rate_interval]))",
                    "{{workspace}} {{code}}",
                )
            ],
            "reqps",
            6,
        ),
        series_panel(
            "API latency",
            "95th percentile latency of Census API requests, by workspace and endpoint.",
            [
                query(
                    "histogram_quantile(0.95, sum by (le, workspace, endpoint) "
                    f"(rate(census_api_request_duration_seconds_bucket{{{WS}}}[$__rate_interval])))",
                    "p95 {{workspace}} {{endpoint}}",
                )
            ],
            "s",
            6,
        ),
    ]


def build() -> db.Dashboard:
    """The whole dashboard."""
    dashboard = (
        db.Dashboard("Census sync runs")
        .uid(UID)
        .description("Census (Fivetran Activations) reverse-ETL syncs, from census-exporter.")
        .tags(["census", "reverse-etl", "census-exporter"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("workspace")
            .label("Workspace")
            .datasource(DATASOURCE)
            .query("label_values(census_up, workspace)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            db.QueryVariable("sync")
            .label("Sync")
            .datasource(DATASOURCE)
            .query(f"label_values(census_sync_info{{{WS}}}, label)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            db.CustomVariable("census_url")
            .label("Census app")
            .values("https://app.getcensus.com,https://app-eu.getcensus.com")
            .description("Where the sync links in the table point: the US or the EU Census app.")
        )
        .annotation(
            db.AnnotationQuery()
            .name("Failed runs")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .expr(
                # The failed-runs counter exists at 0 before a sync's first failure, so unlike the
                # last-failure timestamp it also marks the first one; increase() ignores restarts.
                per_sync(f'increase(census_sync_runs_total{{{WS}, status="failed"}}[2m]) > 0')
            )
        )
    )
    dashboard = dashboard.with_row(db.Row("Overview"))
    for panel in overview_row():
        dashboard = dashboard.with_panel(panel)
    dashboard = dashboard.with_row(db.Row("Syncs")).with_panel(sync_table())
    dashboard = dashboard.with_row(db.Row("Runs and records"))
    for panel in runs_row():
        dashboard = dashboard.with_panel(panel)
    dashboard = dashboard.with_row(db.Row("Exporter health"))
    for panel in health_row():
        dashboard = dashboard.with_panel(panel)
    return dashboard


def render() -> str:
    """The dashboard as the JSON text committed for users, with panel ids numbered in order."""
    document = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for number, panel in enumerate(document["panels"], start=1):
        panel["id"] = number
    # The SDK's AnnotationQuery has no Prometheus-specific fields; Grafana reads these from the same object.
    for annotation in document["annotations"]["list"]:
        annotation |= {
            "titleFormat": f"Run failed: {LEGEND_SYNC}",
            "tagKeys": "workspace,sync_id",
            "step": "60s",
        }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
