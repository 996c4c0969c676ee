{{/*
The Census webhook receiver (docs/webhooks.md): its own port, the secrets as files in one projected
volume (one file per Secret key: read again when rotated, never in args or the environment).
*/}}

{{- define "census-exporter.webhookSecretsDir" -}}/run/secrets/census-webhooks{{- end }}

{{- define "census-exporter.webhooksName" -}}
{{- printf "%s-webhooks" (include "census-exporter.fullname" .) }}
{{- end }}

{{/*
The secret files of one workspace, comma-separated: "<dir>/<prefix>-<n>" per entry of a list of
{name, key}. Call with (list $root $prefix $secrets).
*/}}
{{- define "census-exporter.webhookSecretFiles" -}}
{{- $root := index . 0 }}
{{- $prefix := index . 1 }}
{{- $files := list }}
{{- range $n, $secret := index . 2 }}
{{- $files = append $files (printf "%s/%s-%d" (include "census-exporter.webhookSecretsDir" $root) $prefix (int $n)) }}
{{- end }}
{{- join "," $files }}
{{- end }}

{{/* The projected volume's sources: every webhook Secret key, at the file name its workspace reads. */}}
{{- define "census-exporter.webhookSecretSources" -}}
{{- if .Values.workspaces }}
{{- range $entry := .Values.workspaces }}
{{- range $n, $secret := $entry.webhookSecrets }}
- secret:
    name: {{ $secret.name }}
    items:
      - key: {{ $secret.key | quote }}
        path: {{ printf "%s-%d" $entry.name (int $n) | quote }}
{{- end }}
{{- end }}
{{- else }}
{{- range $n, $secret := .Values.webhooks.existingSecrets }}
- secret:
    name: {{ $secret.name }}
    items:
      - key: {{ $secret.key | quote }}
        path: {{ printf "default-%d" (int $n) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The exporter refuses to start a receiver without any secret: say so at install time instead. */}}
{{- define "census-exporter.validateWebhooks" -}}
{{- if .Values.webhooks.enabled }}
{{- if not (trim (include "census-exporter.webhookSecretSources" .)) }}
{{- if .Values.workspaces }}
{{- fail "webhooks.enabled: no workspaces entry has webhookSecrets (the receiver needs at least one workspace's secret)" }}
{{- else }}
{{- fail "webhooks.enabled: set webhooks.existingSecrets to the Secret(s) holding the Census webhook secret" }}
{{- end }}
{{- end }}
{{- if and .Values.workspaces .Values.webhooks.existingSecrets }}
{{- fail "webhooks.existingSecrets is for one workspace; with workspaces set, give each entry webhookSecrets" }}
{{- end }}
{{- end }}
{{- if and .Values.webhooks.ingress.enabled (not .Values.webhooks.enabled) }}
{{- fail "webhooks.ingress.enabled needs webhooks.enabled (the Ingress routes to the webhook listener)" }}
{{- end }}
{{- end }}
