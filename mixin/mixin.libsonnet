// census-exporter's monitoring mixin: prometheusRules, prometheusAlerts and grafanaDashboards, set up by
// _config (config.libsonnet). See mixin/README.md.
(import 'config.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
