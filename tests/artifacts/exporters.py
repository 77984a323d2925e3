"""What the exporters of a cluster produce, for the series the rules and the dashboard read
that no process of this repository can export here: each name with the labels it carries
(kube-state-metrics v2, docs/metrics/workload/*.md; cAdvisor as the kubelet serves it).
The runtime's and Envoy's series are never listed: they come from a real scrape
(observed.py)."""

from __future__ import annotations

import re

_POD = {"namespace", "pod", "uid"}
_CONTAINER = _POD | {"container"}
_HPA = {"namespace", "horizontalpodautoscaler"}
_CADVISOR = {"namespace", "pod", "container", "id", "image", "name"}
CLUSTER_SERIES: dict[str, set[str]] = {
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    "kube_horizontalpodautoscaler_spec_max_replicas": _HPA,
    "kube_horizontalpodautoscaler_status_current_replicas": _HPA,
    "kube_horizontalpodautoscaler_status_desired_replicas": _HPA,
    "kube_pod_container_resource_limits": _CONTAINER | {"node", "resource", "unit"},
    "kube_pod_container_resource_requests": _CONTAINER | {"node", "resource", "unit"},
    "kube_pod_container_status_last_terminated_reason": _CONTAINER | {"reason"},
    "kube_pod_container_status_restarts_total": _CONTAINER,
    "kube_pod_container_status_waiting_reason": _CONTAINER | {"reason"},
    "container_cpu_usage_seconds_total": {
        "namespace",
        "pod",
        "container",
        "cpu",
        "id",
        "image",
        "name",
    },
    "container_memory_working_set_bytes": {"namespace", "pod", "container", "id", "image", "name"},
}

_SERIES = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    """The name and labels of one series as promtool's input_series write it: name{k="v", ...}."""
    match = _SERIES.fullmatch(text)
    assert match, f"not a series: {text!r}"
    labels: dict[str, str] = {}
    rest = match.group(2) or ""
    while rest.strip():
        label = _LABEL.match(rest)
        assert label, f"not a label list: {rest!r}"
        labels[label.group(1)] = label.group(2)
        rest = rest[label.end() :]
    return match.group(1), labels


def envoy_bound(bucket: float) -> str:
    """A bucket bound as Envoy writes it in `le`: 0.5, 100, 3600000."""
    return str(int(bucket)) if float(bucket).is_integer() else str(bucket)
