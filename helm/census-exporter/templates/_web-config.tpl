{{/* The Secret holding web.yml (the --web.config.file). */}}
{{- define "census-exporter.webConfigSecretName" -}}
{{- default (printf "%s-web-config" (include "census-exporter.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/* "true" when the web config turns TLS on: set explicitly, or an inline tls_server_config. */}}
{{- define "census-exporter.webConfigTLS" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.tls (hasKey .Values.webConfig.config "tls_server_config")) }}true{{ end }}
{{- end }}

{{/* "true" when the web config turns basic auth on: set explicitly, or inline basic_auth_users. */}}
{{- define "census-exporter.webConfigBasicAuth" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.basicAuth (hasKey .Values.webConfig.config "basic_auth_users")) }}true{{ end }}
{{- end }}

{{/*
A probe from values, adjusted to the web config: kubelet cannot send credentials (short of putting them in
the pod spec), so with basic auth an httpGet probe becomes a tcpSocket probe on the same port; with TLS it
speaks HTTPS (kubelet does not verify the certificate). Call with (dict "probe" ... "root" $).
*/}}
{{- define "census-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if hasKey $probe "httpGet" }}
{{- if include "census-exporter.webConfigBasicAuth" .root }}
{{- $port := get $probe.httpGet "port" }}
{{- $_ := unset $probe "httpGet" }}
{{- $_ := set $probe "tcpSocket" (dict "port" $port) }}
{{- else if include "census-exporter.webConfigTLS" .root }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
