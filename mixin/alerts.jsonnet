// jsonnet -S alerts.jsonnet > alerts.yaml
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusAlerts, indent_array_in_object=true, quote_keys=false)
