{{/* Names and labels shared by every object of the chart. */}}

{{/* The app's name (app.kubernetes.io/name): the chart's, or values nameOverride. */}}
{{- define "service.name" -}}
{{ .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Objects' names: the release's, qualified by the app's name unless it holds it already (CI
installs the release named as the chart: the names are the chart's); values fullnameOverride sets it.
Two releases in one namespace never share a name.
*/}}
{{- define "service.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "service.name" .) .Release.Name -}}
{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}
{{ printf "%s-%s" .Release.Name (include "service.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* On every object: the selector's, Helm's, and values `labels` (the owning team's). */}}
{{- define "service.labels" -}}
{{ include "service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "service.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "service.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "service.imageTag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The runtime's image: by digest when one is given (what CI pushed), else by tag. */}}
{{- define "service.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ include "service.imageTag" . }}
{{- end }}
{{- end }}

{{/* The Envoy configuration, rendered from files/envoy.yaml with these values. */}}
{{- define "service.envoyConfig" -}}
{{ tpl (.Files.Get "files/envoy.yaml") . }}
{{- end }}
