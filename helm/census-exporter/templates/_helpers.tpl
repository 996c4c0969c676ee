{{/* Chart name, truncated for DNS-1123 labels. */}}
{{- define "census-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "census-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "census-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "census-exporter.labels" -}}
helm.sh/chart: {{ include "census-exporter.chart" . }}
{{ include "census-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: census-exporter
{{- end }}

{{- define "census-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "census-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "census-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "census-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The pod's annotations, one a line ("" when there are none). */}}
{{- define "census-exporter.podAnnotations" -}}
{{- if .Values.workspaces }}
# Roll the pod when the workspaces file or a chart-made token changes.
checksum/workspaces: {{ print (include (print $.Template.BasePath "/workspaces-configmap.yaml") .) (include (print $.Template.BasePath "/workspaces-secret.yaml") .) | sha256sum }}
{{- else if and .Values.census.token (not .Values.census.existingSecret) }}
# Roll the pod when the chart-made token changes (a mounted existingSecret is re-read live).
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The Secret that holds the API token. Both set would leave the token unused without a word. */}}
{{- define "census-exporter.secretName" -}}
{{- if and .Values.census.token .Values.census.existingSecret }}
{{- fail "census.token and census.existingSecret are both set: the chart would use the existing Secret and ignore census.token; set one of them" }}
{{- end }}
{{- default (include "census-exporter.fullname" .) .Values.census.existingSecret }}
{{- end }}

{{- define "census-exporter.secretKey" -}}
{{- if .Values.census.existingSecret }}{{ .Values.census.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "census-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The PersistentVolumeClaim holding --storage.path, or nothing when the storage is an emptyDir (or off). */}}
{{- define "census-exporter.storageClaim" -}}
{{- if and .Values.storage.enabled (eq .Values.storage.type "persistentVolumeClaim") }}
{{- default (printf "%s-storage" (include "census-exporter.fullname" .)) .Values.storage.persistentVolumeClaim.existingClaim }}
{{- end }}
{{- end }}
