{{/* Names and labels shared by every object of the chart. */}}

{{- define "service.name" -}}
{{ .Chart.Name }}
{{- end }}

{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "service.labels" -}}
{{ include "service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "service.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "service.imageTag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The Envoy configuration, rendered from files/envoy.yaml with these values. */}}
{{- define "service.envoyConfig" -}}
{{ tpl (.Files.Get "files/envoy.yaml") . }}
{{- end }}
