"""The chart's objects for the Prometheus Operator and Grafana's dashboard sidecar: none by
default, each rendered by its values flag, and checked against the schemas that will judge
them in a cluster: the operator's own CRDs (crds/, Prometheus Operator v0.93.0, kept as test
data so that nothing is fetched at test time) with unknown fields refused, as
`kubectl apply --validate=strict` refuses them, and Kubernetes's for the ConfigMap."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from .chart import Manifest, one, render_chart
from .conftest import KUBERNETES_VERSIONS, answers_of

CRDS = Path(__file__).with_name("crds")
MONITORING_KINDS = {"PodMonitor", "PrometheusRule"}
ALL_ON = {
    "monitoring": {
        "labels": {"release": "kube-prometheus-stack"},
        "podMonitors": {"enabled": True, "interval": "15s"},
        "rules": {"enabled": True},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Model serving"}},
    }
}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused wherever the CRD does not keep them."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@functools.cache
def _crd_validator(kind: str) -> jsonschema.Draft7Validator:
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            schema = _strict(served["schema"]["openAPIV3Schema"])
            return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def _check(manifest: Manifest) -> None:
    """Raise when a cluster would refuse the object."""
    if manifest["kind"] in MONITORING_KINDS:
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
        _crd_validator(manifest["kind"]).validate(manifest)
        # what Kubernetes checks of every object's metadata
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]},
                version,
                strict=True,
            )
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def _monitoring(manifests: list[Manifest]) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] in MONITORING_KINDS or m["metadata"]["name"].endswith("-dashboard")
    ]


def test_nothing_for_the_operator_unless_asked(service: Path) -> None:
    assert _monitoring(render_chart(service)) == []


def test_every_monitoring_object_passes_its_schema(service: Path) -> None:
    manifests = _monitoring(render_chart(service, ALL_ON))
    assert sorted(m["kind"] for m in manifests) == [
        "ConfigMap",
        "PodMonitor",
        "PodMonitor",
        "PrometheusRule",
    ]
    for manifest in manifests:
        _check(manifest)
        assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_helm_lint_finds_nothing_to_warn_about_with_every_flag_on(render: Any) -> None:
    report = helm.lint(render("default") / "chart", ALL_ON, strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_the_crd_schemas_refuse_what_the_operator_would(render: Any) -> None:
    manifests = render_chart(render("default"), ALL_ON)
    monitor = one(manifests, "PodMonitor", "-runtime")
    _check(monitor)
    typo = copy.deepcopy(monitor)
    typo["spec"]["podMetricEndpoints"] = typo["spec"].pop("podMetricsEndpoints")
    with pytest.raises(jsonschema.ValidationError, match="podMetricEndpoints"):
        _check(typo)
    interval = copy.deepcopy(monitor)
    interval["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        _check(interval)
    rule = copy.deepcopy(one(manifests, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = "up"
    with pytest.raises(jsonschema.ValidationError, match="expression"):
        _check(rule)


def test_the_pod_monitors_scrape_the_runtime_and_envoy_off_the_service(service: Path) -> None:
    manifests = render_chart(service, ALL_ON)
    pod = one(manifests, "Deployment")["spec"]["template"]
    envoy = next(c for c in pod["spec"]["initContainers"] if c["name"] == "envoy")
    paths = {}
    for monitor in (m for m in manifests if m["kind"] == "PodMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["interval"] == "15s"
        assert endpoint["port"] in {p["name"] for p in envoy["ports"]}
        paths[monitor["metadata"]["name"].rsplit("-", 1)[1]] = endpoint["path"]
    assert paths == {"runtime": "/metrics", "envoy": "/stats/prometheus"}
    # the metrics port is the pod's alone: clients reach only the ingress listener
    service_ports = one(manifests, "Service")["spec"]["ports"]
    assert [p["targetPort"] for p in service_ports] == ["http"]


def test_the_rule_object_holds_the_unit_tested_rules(service: Path) -> None:
    rule = one(render_chart(service, ALL_ON), "PrometheusRule")
    shipped = yaml.safe_load((service / "chart" / "files" / "alerts.yaml").read_text())
    assert rule["spec"] == shipped
    assert rule["metadata"]["name"] == answers_of(service)["service_name"]


def test_without_the_autoscaler_its_alert_is_not_deployed(render: Any) -> None:
    service = render("default")
    values = {**ALL_ON, "autoscaling": {"enabled": False}}
    rule = one(render_chart(service, values), "PrometheusRule")
    _check(rule)
    shipped = yaml.safe_load((service / "chart" / "files" / "alerts.yaml").read_text())
    for group in shipped["groups"]:  # no kube_horizontalpodautoscaler_* series: it could not fire
        group["rules"] = [r for r in group["rules"] if r.get("alert") != "AutoscalerAtMaximum"]
    assert rule["spec"] == shipped
    assert "AutoscalerAtMaximum" in (service / "chart" / "files" / "alerts.yaml").read_text()


def test_the_dashboard_configmap_is_what_grafanas_sidecar_loads(service: Path) -> None:
    dashboard = one(render_chart(service, ALL_ON), "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Model serving"}
    ((name, text),) = dashboard["data"].items()
    assert name.endswith(".json")
    shipped = json.loads((service / "chart" / "files" / "dashboard.json").read_text())
    assert json.loads(text) == shipped


BAD_MONITORING_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("misspelt flag", {"monitoring": {"podMonitor": {"enabled": True}}}),
    ("interval in words", {"monitoring": {"podMonitors": {"interval": "half a minute"}}}),
    ("label value too long", {"monitoring": {"labels": {"release": "x" * 64}}}),
    ("label name with a space", {"monitoring": {"labels": {"my release": "a"}}}),
    ("flag as text", {"monitoring": {"rules": {"enabled": "yes"}}}),
]


@pytest.mark.parametrize(
    ("case", "values"), BAD_MONITORING_VALUES, ids=[c for c, _ in BAD_MONITORING_VALUES]
)
def test_values_schema_refuses_bad_monitoring_values(
    render: Any, case: str, values: dict[str, Any]
) -> None:
    with helm.Chart.load(render("default") / "chart") as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
