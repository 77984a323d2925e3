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
