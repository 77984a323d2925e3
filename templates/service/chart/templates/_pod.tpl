{{/*
The pod's time limits and capacity, each derived from one value so that they cannot disagree
(docs: "The pod's life"). Every request has at most runtime.requestTimeoutMs, end to end:
- Envoy's route timeout is that (then a 504), and the runtime is told the rest of it per
  request (Envoy's x-envoy-expected-rq-timeout-ms);
- a worker is killed only when silent for twice as long (at least 30 s): never mid-request;
- on SIGTERM, in-flight requests get all of it (and a second) to finish;
- the pod's grace covers the drain, that, and Envoy's own exit.
*/}}

{{- define "pod.requestTimeoutSeconds" -}}
{{ div (add .Values.runtime.requestTimeoutMs 999) 1000 }}
{{- end }}

{{- define "pod.workerTimeoutSeconds" -}}
{{ max 30 (mul 2 (include "pod.requestTimeoutSeconds" . | int)) }}
{{- end }}

{{- define "pod.gracefulSeconds" -}}
{{ add1 (include "pod.requestTimeoutSeconds" . | int) }}
{{- end }}

{{- define "pod.terminationGraceSeconds" -}}
{{ add .Values.runtime.drainSeconds (include "pod.gracefulSeconds" . | int) 5 }}
{{- end }}

{{/*
Predicts the runtime runs at once: `threads` per worker process (off its event loop, which
keeps answering probes). Envoy lets each of them have two
requests in the runtime (one predicted, one waiting, so a worker never idles between requests)
and two more queued in Envoy; past that, a 503 at once, rather than a 504 a timeout later.
*/}}
{{- define "pod.concurrency" -}}
{{ mul .Values.runtime.workers .Values.runtime.threads }}
{{- end }}

{{/*
Envoy closes an idle connection to the runtime before the runtime would (its keep-alive is
75 s): a request is never sent on a connection the runtime is closing at that moment.
*/}}
{{- define "pod.upstreamOptions" -}}
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {idle_timeout: 60s}
    explicit_http_config: {http_protocol_options: {}}
{{- end }}
