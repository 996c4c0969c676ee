// Alerts. Load the recording rules too: the records alerts use their ratios, and every per-sync alert joins
// the sync's name on through census:sync_info:latest.
//
// CensusSyncFailed reads census_sync_last_finished_run_failed, a failing streak: true through retries that
// are queued, working or skipped, false only once a run completes, so a retry that starts does not resolve
// it. CensusSyncRunFailed catches a failure that a success replaced before any refresh saw it as the newest
// outcome. CensusSyncNotSucceededRecently also fires for a sync with no known success (from the oldest run
// seen). docs/runbook.md says when each fires and resolves, episode by episode.
// Paused syncs never page: every per-sync alert ends with "unless ... census_sync_paused == 1".
// One exporter may serve several workspaces, and sync ids repeat across them: every join is on
// (job, instance, workspace, sync_id), and the exporter alerts fire once per workspace, so one workspace's
// census_up 0 neither silences nor raises another's alerts.
// Only CensusSyncRunFailed reads a counter, through increase(), which an exporter restart (counters back
// to 0) cannot raise.
// Every vector selector is written with braces (`{}` when empty): see withSelector in lib/utils.libsonnet.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local thresholds = {
      syncNotSucceededSeconds: utils.number(c.syncNotSucceededSeconds),
      syncRecordsFailedRatio: utils.number(c.syncRecordsFailedRatio),
      syncRecordsInvalidRatio: utils.number(c.syncRecordsInvalidRatio),
      syncStuckSeconds: utils.number(c.syncStuckSeconds),
      exporterDataStaleSeconds: utils.number(c.exporterDataStaleSeconds),
    },
    // A folded description: the text block's lines joined by spaces.
    local fold(text) = std.rstripChars(std.strReplace(text, '\n', ' '), ' '),
    // scope: 'sync' (the link picks the alert's workspace and sync), 'workspace' or 'none'.
    local dashboardLink(scope) =
      local base = '%s/d/%s/census-sync-runs' % [std.rstripChars(c.grafanaUrl, '/'), c.dashboardUid];
      local workspace = 'var-workspace={{ $labels.workspace | urlquery }}';
      local query = {
        sync: '?' + workspace + '&var-sync={{ $labels.label | urlquery }}',
        workspace: '?' + workspace,
        none: '',
      }[scope];
      if c.grafanaUrl == '' then {} else { dashboard_url: base + query },
    local alert(name, expr, severity, for_, summary, description, scope) = {
      alert: name,
      expr: utils.withSelector(expr % thresholds, c.censusExporterSelector),
      'for': for_,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: fold(description),
        runbook_url: '%s#%s' % [c.runbookUrl, std.asciiLower(name)],
      } + dashboardLink(scope),
    },

    local keepFiring = { keep_firing_for: c.syncAlertKeepFiringFor },

    groups+: [
      {
        name: 'census-syncs',
        rules: [
          // A failing streak: the newest finished run failed. It stays through retries that are queued,
          // working or skipped and resolves only when a run completes (or the sync is paused). error_code is
          // that of the run that began the streak, so one streak is one alert. topk keeps the newest series
          // of a sync: after a Prometheus restart the streak's series can linger beside the one that ended
          // it.
          alert(
            'CensusSyncFailed',
            |||
              (
                census_sync_last_finished_run_failed{} == 1
                and on (job, instance, workspace, sync_id, error_code)
                  topk by (job, instance, workspace, sync_id) (1, timestamp(census_sync_last_finished_run_failed{}))
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'critical',
            '0m',
            'A Census sync is failing.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }} is failing: its newest finished run failed, and no run has completed
              since. The streak began with error code "{{ $labels.error_code }}".
            |||,
            'sync',
          ) + keepFiring,

          // A run failed in the last 15 minutes that no evaluation of CensusSyncFailed saw. Three ways:
          // * the exporter read a later completed run with it (census_sync_superseded_failed_runs_total:
          //   it was never the newest outcome, so an earlier streak in the window hides nothing);
          // * the exporter did show it as the streak, but not to this Prometheus's rules: a read of the
          //   failure alone and a read of its successful retry both fell between two scrapes (webhooks) or
          //   two rule evaluations (evaluated less often than scraped), or only another scraper saw it.
          //   The exporter cannot know what was evaluated, so the rule decides: a failed run counted while
          //   this Prometheus's CensusSyncFailed did not fire for the sync within 15 minutes;
          // * the same after a CensusSyncFailed page in the window: more failed runs are counted now than
          //   at any time that alert was firing, and it is not firing now. The subquery's 30 s step must
          //   stay well under keep_firing_for (2m), or a page shorter than a step would look unseen.
          // CensusSyncFailed stays before this rule in the group, so its ALERTS of this evaluation are
          // visible here. increase() handles an exporter restart (both counters exist at 0).
          alert(
            'CensusSyncRunFailed',
            |||
              (
                (
                  increase(census_sync_superseded_failed_runs_total{}[15m]) > 0
                  or
                  (
                    max without (status) (increase(census_sync_runs_total{status="failed"}[15m])) > 0
                    unless on (job, instance, workspace, sync_id)
                      max_over_time(ALERTS{alertname="CensusSyncFailed", alertstate="firing"}[15m])
                  )
                  or
                  (
                    max without (status) (census_sync_runs_total{status="failed"})
                    > on (job, instance, workspace, sync_id)
                      max_over_time(
                        (
                          max without (status) (census_sync_runs_total{status="failed"})
                          and on (job, instance, workspace, sync_id)
                            ALERTS{alertname="CensusSyncFailed", alertstate="firing"}
                        )[15m:30s]
                      )
                    unless on (job, instance, workspace, sync_id)
                      ALERTS{alertname="CensusSyncFailed", alertstate="firing"}
                  )
                )
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'warning',
            '0m',
            'A run of a Census sync failed, and a later run has already succeeded.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }} had a failed run in the last 15 minutes that a successful run replaced
              before this Prometheus's CensusSyncFailed saw it as the newest outcome, so that alert did not
              fire for it. The exporter's log has the run's error.
            |||,
            'sync',
          ) + keepFiring,

          // The age of the last success, or, for a sync with no known success, of the oldest run seen (the
          // first read pages back up to 25 hours, 300 runs, for it), so a sync that never succeeded pages too.
          // census:sync_success_age_threshold_seconds is yours to record (docs/runbook.md): it carries no
          // selector, and joins on (workspace, sync_id) only.
          alert(
            'CensusSyncNotSucceededRecently',
            |||
              (
                (
                  time()
                  - (
                    census_sync_last_success_timestamp_seconds{}
                    or on (job, instance, workspace, sync_id)
                    census_sync_no_success_since_timestamp_seconds{}
                  )
                )
                  > on (workspace, sync_id) group_left ()
                (
                  max by (workspace, sync_id) (census:sync_success_age_threshold_seconds)
                  or on (workspace, sync_id)
                  max by (workspace, sync_id) (
                    (
                      census_sync_last_success_timestamp_seconds{}
                      or on (job, instance, workspace, sync_id)
                      census_sync_no_success_since_timestamp_seconds{}
                    ) * 0 + %(syncNotSucceededSeconds)s)
                )
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'warning',
            '15m',
            'A Census sync has not completed successfully for too long.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }} has not succeeded for {{ $value | humanizeDuration }} (at least, when no
              success is known).
            |||,
            'sync',
          ) + keepFiring,

          alert(
            'CensusSyncRecordsFailing',
            |||
              (
                census:sync_last_run_records_failed:ratio{} > %(syncRecordsFailedRatio)s
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'warning',
            '0m',
            'A Census destination rejected too many records of a sync.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }}: the destination rejected {{ $value | humanizePercentage }} of the records
              of the latest run.
            |||,
            'sync',
          ),

          alert(
            'CensusSyncRecordsInvalid',
            |||
              (
                census:sync_last_run_records_invalid:ratio{} > %(syncRecordsInvalidRatio)s
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'info',
            '0m',
            'Census skipped many source records of a sync as invalid.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }}: {{ $value | humanizePercentage }} of the source records of the latest run
              were invalid and not sent.
            |||,
            'sync',
          ),

          alert(
            'CensusSyncStuck',
            |||
              (
                (time() - census_sync_oldest_unfinished_run_created_timestamp_seconds{}) > %(syncStuckSeconds)s
                unless on (job, instance, workspace, sync_id) census_sync_paused{} == 1
              )
              * on (job, instance, workspace, sync_id) group_left (label, destination) census:sync_info:latest{}
            |||,
            'warning',
            '0m',
            'A Census sync run has been queued or working for too long.',
            |||
              Sync "{{ $labels.label }}" (id {{ $labels.sync_id }}, to {{ $labels.destination }}) in workspace
              {{ $labels.workspace }} has had a run queued or working for {{ $value | humanizeDuration }}.
            |||,
            'sync',
          ),
        ],
      },
      {
        name: 'census-exporter',
        rules: [
          alert(
            'CensusExporterApiDown',
            'census_up{} == 0',
            'warning',
            '10m',
            'census-exporter cannot read the Census API for workspace {{ $labels.workspace }}.',
            |||
              census-exporter {{ $labels.instance }} has not completed an error-free refresh of workspace
              {{ $labels.workspace }} for 10 minutes; sync alerts for it are working from old data.
            |||,
            'workspace',
          ),

          alert(
            'CensusExporterDataStale',
            'time() - census_last_refresh_timestamp_seconds{} > %(exporterDataStaleSeconds)s',
            'warning',
            '5m',
            "census-exporter's Census data of workspace {{ $labels.workspace }} is stale.",
            |||
              The last error-free refresh of workspace {{ $labels.workspace }} by census-exporter
              {{ $labels.instance }} was {{ $value | humanizeDuration }} ago.
            |||,
            'workspace',
          ),

          // With the default empty selector, independent of the scrape job's name: a target is an exporter
          // if it exported census metrics in the last day. The absent() part fires only when no such target
          // is configured at all, so a single down exporter pages once. See
          // docs/runbook.md#censusexporterdown.
          alert(
            'CensusExporterDown',
            |||
              up{} == 0 and on (job, instance) max_over_time(census_exporter_build_info{}[1d])
              or
              absent(up{} and on (job, instance) max_over_time(census_exporter_build_info{}[1d]))
            |||,
            'critical',
            '5m',
            'census-exporter is down or not scraped.',
            |||
              Prometheus cannot scrape census-exporter {{ with $labels.instance }}{{ . }}{{ else }}(no target
              found){{ end }}: Census syncs are not being monitored.
            |||,
            'none',
          ),

          // A bound of the exporter (docs/sizing.md) leaves syncs or discovered workspaces unwatched: what is
          // beyond it is not monitored at all, so no other census alert can fire for it. See
          // docs/runbook.md#censusexportertruncated.
          alert(
            'CensusExporterTruncated',
            |||
              census_syncs_left_out{} > 0
              or
              census_discovery_workspaces_left_out{} > 0
            |||,
            'warning',
            '15m',
            'census-exporter leaves Census syncs or workspaces unwatched (a bound is reached).',
            |||
              census-exporter {{ $labels.instance }} does not watch {{ $value }}
              {{ with $labels.workspace }}syncs of workspace {{ . }} (--census.max-syncs-per-workspace or
              --census.max-syncs){{ else }}workspaces found by discovery {{ $labels.discovery }}
              (--census.max-workspaces-per-discovery or --census.max-workspaces){{ end }}: they are not
              monitored.
            |||,
            'workspace',
          ),
        ],
      },
      {
        name: 'census-webhooks',
        rules: [
          // Silent: polling found finished runs that no webhook announced within the grace (5 minutes); the
          // workspace is back on full polling (census_webhook_polling_fallback) for one reconcile interval.
          // The window stays an hour: the exporter has no signal that deliveries are whole again (verified
          // deliveries arrive beside lost ones, and the fallback lasts a reconcile interval after the last
          // unannounced run whatever arrives), so a shorter window would resolve between two unannounced runs
          // and fire again. See docs/runbook.md#censuswebhookssilent.
          alert(
            'CensusWebhooksSilent',
            |||
              sum by (job, instance, workspace) (increase(census_webhook_unannounced_runs_total{}[1h])) > 0
            |||,
            'warning',
            '10m',
            'Census webhooks of workspace {{ $labels.workspace }} left runs unannounced.',
            |||
              {{ $value | printf "%.0f" }} times in the last hour, census-exporter {{ $labels.instance }}
              found new runs of a sync of workspace {{ $labels.workspace }} that no webhook announced within
              5 minutes: their deliveries were lost or refused. The workspace is polled in full for one
              reconcile interval after each; before that, a failure showed only when polling read its sync,
              up to the reconcile interval late.
            |||,
            'workspace',
          ),

          // Rejected: deliveries to a configured workspace failed verification or could not be taken (not
          // rate_limited: Census delivers those again; not unknown_workspace: the path names no workspace, a
          // scanner's) in every 5 minutes for 10 minutes, while none verified in 15 minutes: a stray or
          // hostile request beside Census's verified deliveries does not page. See
          // docs/runbook.md#censuswebhooksrejected.
          alert(
            'CensusWebhooksRejected',
            |||
              sum by (job, instance, workspace) (
                increase(census_webhook_requests_total{workspace!="",result=~"bad_signature|malformed|wrong_workspace|unsupported_media_type|too_large|length_required|queue_full"}[5m])
              ) > 0
              unless on (job, instance, workspace)
              sum by (job, instance, workspace) (
                increase(census_webhook_requests_total{result=~"accepted|unknown_sync|duplicate"}[15m])
              ) > 0
            |||,
            'warning',
            '10m',
            'Census webhooks of workspace {{ $labels.workspace }} are rejected.',
            |||
              census-exporter {{ $labels.instance }} has refused webhook requests to workspace
              {{ $labels.workspace }} in every 5 minutes for 10 minutes and verified none in the last 15
              ({{ $value | printf "%.0f" }} refused in the last 5 minutes): until the exporter falls back to
              full polling, a failure shows up only when polling reads its sync, up to the reconcile
              interval late.
            |||,
            'workspace',
          ),
        ],
      },
    ],
  },
}
