// Recording rules. Load them together with the alerts: the alerts use the ratios, and the dashboard uses
// all of them. Every rule keeps job, instance and workspace: one exporter may serve several workspaces whose
// sync ids collide, and two exporters may serve workspaces of the same name.
// Every vector selector is written with braces (`{}` when empty): see withSelector in lib/utils.libsonnet.
local utils = import '../lib/utils.libsonnet';

{
  prometheusRules+:: {
    local selector = $._config.censusExporterSelector,
    local rule(record, expr) = { record: record, expr: utils.withSelector(expr, selector) },
    groups+: [
      {
        name: 'census-exporter.rules',
        rules: [
          // census_sync_info and census_sync_last_run_info, one series per sync: the newest. When a sync is
          // renamed or a run's error code changes, the old series can linger for up to 5 minutes (after a
          // Prometheus restart no staleness marker ends it), and a join against two series per sync would
          // fail the whole alert rule for every sync. Joins in the alerts use these instead.
          rule('census:sync_info:latest', |||
            topk by (job, instance, workspace, sync_id) (1, timestamp(census_sync_info{})) * 0 + 1
          |||),
          rule('census:sync_last_run_info:latest', |||
            topk by (job, instance, workspace, sync_id) (1, timestamp(census_sync_last_run_info{})) * 0 + 1
          |||),

          // Share of the newest run's records that the destination rejected (records_failed /
          // records_processed). Absent when the run processed nothing or Census reported null counts
          // (failed runs).
          rule('census:sync_last_run_records_failed:ratio', |||
            census_sync_last_run_records_failed{}
              / on (job, instance, workspace, sync_id)
            (census_sync_last_run_records_processed{} > 0)
          |||),

          // Share of the newest run's source records that Census skipped as invalid.
          rule('census:sync_last_run_records_invalid:ratio', |||
            census_sync_last_run_records_invalid{}
              / on (job, instance, workspace, sync_id)
            (census_sync_last_run_source_records{} > 0)
          |||),

          // Seconds since each sync last completed successfully.
          rule('census:sync_seconds_since_last_success', 'time() - census_sync_last_success_timestamp_seconds{}'),

          // Records rejected as a share of records processed over the last hour, per workspace. It works
          // with either --census.record-totals setting: per workspace (the default) or per sync, summed.
          rule('census:workspace_records_failed:ratio_rate1h', |||
            (
              sum by (job, instance, workspace) (rate(census_workspace_records_failed_total{}[1h]))
              or
              sum by (job, instance, workspace) (rate(census_sync_records_failed_total{}[1h]))
            )
              /
            (
              (
                sum by (job, instance, workspace) (rate(census_workspace_records_processed_total{}[1h]))
                or
                sum by (job, instance, workspace) (rate(census_sync_records_processed_total{}[1h]))
              )
              > 0
            )
          |||),

          // Finished runs per hour, by exporter, workspace and final status (restart-safe: increase()
          // handles resets). job and instance stay: two exporters may serve workspaces of the same name,
          // and two jobs scraping one exporter must not add up to twice its runs.
          rule('census:sync_runs:increase1h', 'sum by (job, instance, workspace, status) (increase(census_sync_runs_total{}[1h]))'),

          // Records rejected by destinations as a share of records processed, over the last hour, per sync.
          // Only with --census.record-totals=sync: by default the record totals are kept per workspace
          // (above). A sync is (job, instance, workspace, sync_id): sync ids repeat across workspaces, and
          // workspace names across exporters.
          rule('census:sync_records_failed:ratio_rate1h', |||
            sum by (job, instance, workspace, sync_id) (rate(census_sync_records_failed_total{}[1h]))
              /
            (sum by (job, instance, workspace, sync_id) (rate(census_sync_records_processed_total{}[1h])) > 0)
          |||),
        ],
      },
    ],
  },
}
