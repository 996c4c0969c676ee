{{/*
Several workspaces in one exporter: .Values.workspaces rendered into the exporter's workspaces file
(--config.file; keys as in exporter/census_exporter/workspaces.py). Tokens never enter the file: each entry's
token is a file in a projected volume, and the rendered file's token_file points at it.
*/}}

{{- define "census-exporter.workspacesDir" -}}/etc/census-exporter/workspaces{{- end }}

{{- define "census-exporter.workspacesFilePath" -}}
{{- include "census-exporter.workspacesDir" . }}/workspaces.yaml
{{- end }}

{{- define "census-exporter.workspaceTokensDir" -}}/run/secrets/census{{- end }}

{{/* The ConfigMap with the workspaces file, and the Secret with the tokens given as values. */}}
{{- define "census-exporter.workspacesName" -}}
{{- printf "%s-workspaces" (include "census-exporter.fullname" .) }}
{{- end }}

{{/*
The token's file name (and key in the chart-made Secret) of the entry at an index: its name, or
"_auto-<index>" for a discovery entry, which has no name; names start with a letter or digit, so the two
never collide. Call with (list $index $entry).
*/}}
{{- define "census-exporter.workspaceTokenKey" -}}
{{- $index := index . 0 }}
{{- $entry := index . 1 }}
{{- if $entry.auto }}{{ printf "_auto-%d" (int $index) }}{{ else }}{{ $entry.name }}{{ end }}
{{- end }}

{{/* "true" when at least one entry's token is a value, so the chart makes the tokens Secret. */}}
{{- define "census-exporter.workspacesHaveChartTokens" -}}
{{- range .Values.workspaces }}{{ if .token }}true{{ end }}{{ end }}
{{- end }}

{{/*
The workspaces file. Keys in the parser's order of importance; every value goes through toJson, which is
valid YAML and quotes whatever a regex or URL holds.
*/}}
{{- define "census-exporter.workspacesFile" -}}
# Rendered by the census-exporter Helm chart from .Values.workspaces; edit the values, not this file.
workspaces:
{{- range $index, $entry := .Values.workspaces }}
{{- if $entry.auto }}
  - auto: true
{{- else }}
  - name: {{ $entry.name | toJson }}
{{- end }}
    api_version: {{ $entry.api_version | toJson }}
{{- range $key := list "group_id" "api_url" "region" }}
{{- with get $entry $key }}
    {{ $key }}: {{ . | toJson }}
{{- end }}
{{- end }}
    token_file: {{ printf "%s/%s" (include "census-exporter.workspaceTokensDir" $) (include "census-exporter.workspaceTokenKey" (list $index $entry)) | toJson }}
{{- range $key := list "include" "exclude" "relist_interval_seconds" }}
{{- with get $entry $key }}
    {{ $key }}: {{ . | toJson }}
{{- end }}
{{- end }}
{{- if and $.Values.webhooks.enabled $entry.webhookSecrets }}
    webhook_secret_file: {{ splitList "," (include "census-exporter.webhookSecretFiles" (list $ $entry.name $entry.webhookSecrets)) | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What values.schema.json cannot say: unique names, and no single-workspace setting that would be silently
ignored (the exporter itself refuses the single-workspace flags beside --config.file).
*/}}
{{- define "census-exporter.validateWorkspaces" -}}
{{- if .Values.workspaces }}
{{- $seen := dict }}
{{- range $index, $entry := .Values.workspaces }}
{{- if not $entry.auto }}
{{- if hasKey $seen $entry.name }}
{{- fail (printf "workspaces[%d]: the name %q is already used by workspaces[%v]; names must be unique (each is a workspace label and a token file)" (int $index) $entry.name (get $seen $entry.name)) }}
{{- end }}
{{- $_ := set $seen $entry.name $index }}
{{- end }}
{{- end }}
{{- range $key := list "token" "existingSecret" "apiUrl" }}
{{- if get $.Values.census $key }}
{{- fail (printf "census.%s is for one workspace; with workspaces set, give each entry its own (token, existingSecret, api_url) and leave census.%s empty" $key $key) }}
{{- end }}
{{- end }}
{{- range $arg := .Values.extraArgs }}
{{- range $flag := list "--census.api-url" "--census.region" "--census.token-file" "--census.api-version" "--census.group-id" "--census.workspace" }}
{{- if or (eq $arg $flag) (hasPrefix (printf "%s=" $flag) $arg) }}
{{- fail (printf "extraArgs: %s cannot be combined with workspaces (the exporter refuses it beside --config.file); set it per entry" $flag) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
