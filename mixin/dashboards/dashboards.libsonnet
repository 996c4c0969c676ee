// The Census sync runs dashboard. Its panels are built by grafana/generate.py (grafana-foundation-sdk,
// typed Python), which writes census-sync-runs.json beside this file: edit the generator, not the JSON.
// This file applies _config to it: uid, tags, and the selector put into every query.
local utils = import '../lib/utils.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    // Every query of the generated dashboard matches workspace=~"$workspace" (tests/test_mixin.py checks
    // it), except the workspace variable's own label_values(census_up, workspace): the selector goes in
    // beside them.
    local workspace = 'workspace=~"$workspace"',
    local withSelector(query) =
      if c.censusExporterSelector == '' then query
      else std.strReplace(
        std.strReplace(query, workspace, c.censusExporterSelector + ', ' + workspace),
        'label_values(census_up, workspace)',
        'label_values(census_up{%s}, workspace)' % c.censusExporterSelector
      ),
    local queriesWithSelector(value) =
      if std.isObject(value) then {
        [key]:
          if std.member(['expr', 'query'], key) && std.isString(value[key]) then withSelector(value[key])
          else queriesWithSelector(value[key])
        for key in std.objectFields(value)
      }
      else if std.isArray(value) then std.map(queriesWithSelector, value)
      else value,

    'census-sync-runs.json':
      queriesWithSelector(import 'census-sync-runs.json') + {
        uid: c.dashboardUid,
        tags: c.dashboardTags,
      },
  },
}
