// The mixin's settings. Override any of them with
//   (import 'census-exporter-mixin/mixin.libsonnet') + { _config+:: { grafanaUrl: 'https://grafana.acme.test' } }
// The defaults render exactly the committed prometheus/*.yaml and grafana/census-sync-runs.json.
{
  _config+:: {
    // PromQL matchers put into every vector selector of the rules, the alerts and the dashboard's queries,
    // e.g. 'job="census-exporter"' or 'cluster="eu-1", job=~"census.*"'. Empty: every census-exporter that
    // Prometheus scrapes, whatever its job name (CensusExporterDown relies on that to find them all).
    censusExporterSelector: '',

    // Base URL of your Grafana (with its sub-path, if any, no trailing slash needed). Empty: the alerts
    // carry no dashboard_url annotation. Set: each alert links to the dashboard, narrowed to the alert's
    // workspace and sync.
    grafanaUrl: '',
    // The dashboard's uid (the alerts' links use it too).
    dashboardUid: 'census-sync-runs',
    dashboardTags: ['census', 'reverse-etl', 'census-exporter'],

    // Where docs/runbook.md lives for your team (an internal wiki or a fork); each alert appends #alertname.
    runbookUrl: 'https://github.com/census-exporter/census-exporter/blob/main/docs/runbook.md',

    // Thresholds; docs/runbook.md explains each alert.
    // CensusSyncNotSucceededRecently: seconds without a successful run (per sync: see docs/runbook.md,
    // census:sync_success_age_threshold_seconds).
    syncNotSucceededSeconds: 86400,
    // CensusSyncRecordsFailing: share (0-1) of the newest run's records rejected by the destination.
    syncRecordsFailedRatio: 0.10,
    // CensusSyncRecordsInvalid: share (0-1) of the newest run's source records that were invalid.
    syncRecordsInvalidRatio: 0.05,
    // CensusSyncStuck: seconds a run may stay queued or working.
    syncStuckSeconds: 21600,
    // CensusExporterDataStale: seconds since the last error-free refresh.
    exporterDataStaleSeconds: 1800,
  },
}
