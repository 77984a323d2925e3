"""The chart with values envoy.enabled false, for a cluster whose service mesh puts its own
proxy beside every pod: rendered by Helm's engine and checked against the Kubernetes and the
Prometheus Operator schemas, its rules (alerts-runtime.yaml) checked and unit-tested by
promtool on series the runtime really exports, and its pod run by the service's own pod runner
(`dev.py pod --set envoy.enabled=false`) as the kubelet would run it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import kubernetes_validate
import pytest
import yaml
from prometheus_client.utils import floatToGoString

from serving_runtime._metrics import latency_buckets
from serving_runtime.testing import free_port

from .chart import one, render_chart
from .conftest import KUBERNETES_VERSIONS, Renders, answers_of
from .observed import Observed
from .promql import metric_names
from .test_monitoring_objects import MONITORING_KINDS, _check
from .test_observability import ALERTS, _exported, _promtool, _unproduced
from .test_pod import canary

OFF: dict[str, Any] = {"envoy": {"enabled": False}}
EVERYTHING_OFF_ENVOY: dict[str, Any] = {
    **OFF,
    "networkPolicy": {"enabled": True, "metricsFrom": [{"podSelector": {}}]},
    "monitoring": {"podMonitors": {"enabled": True}, "rules": {"enabled": True}},
}
ENVOY_ALERTS = {"EnvoyOverflow", "EnvoyTimeouts", "EnvoyStatsAbsent"}


def _files(service: Path) -> Path:
    return service / "chart" / "files"


def _runtime_buckets(service: Path) -> set[str]:
    """The `le` values of the runtime's latency histogram, as it exports them for this service."""
    objective = answers_of(service)["latency_slo_p99_ms"]
    return {floatToGoString(b) for b in latency_buckets(objective)} | {"+Inf"}


def test_without_envoy_the_runtime_alone_is_the_pods_way_in(service: Path) -> None:
    manifests = render_chart(service, EVERYTHING_OFF_ENVOY)
    for manifest in manifests:
        if manifest["kind"] in MONITORING_KINDS:
            _check(manifest)  # the operator's CRD schemas, unknown fields refused
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    port, metrics_port = values["envoy"]["port"], values["envoy"]["statsPort"]
    assert not [m for m in manifests if m["kind"] == "ConfigMap" and "envoy" in str(m["data"])]
    template = one(manifests, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert "initContainers" not in pod
    (runtime,) = pod["containers"]
    assert runtime["name"] == "runtime"
    claimed = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert claimed <= {m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"}
    named = {p["name"]: p["containerPort"] for p in runtime["ports"]}
    assert named == {"http": port, "metrics": metrics_port}
    settings = one(manifests, "ConfigMap", "-runtime")["data"]
    assert settings["SERVING_RUNTIME_BIND"] == f"0.0.0.0:{port},0.0.0.0:{metrics_port}"
    assert settings["SERVING_RUNTIME_METRICS_PORT"] == str(metrics_port)  # scrapes only there
    probes = {k: runtime[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {k: (p["path"], p["port"]) for k, p in probes.items()} == {
        "startupProbe": ("/readyz", port),
        "readinessProbe": ("/readyz", port),
        "livenessProbe": ("/livez", port),
    }
    # the runtime's own drain: it keeps serving while the endpoint goes, then SIGTERM; no
    # Envoy admin call (nothing listens there) and no postStart to undo one
    assert set(runtime["lifecycle"]) == {"preStop"}
    stop = " ".join(runtime["lifecycle"]["preStop"]["exec"]["command"])
    assert f"sleep({values['runtime']['drainSeconds']})" in stop
    assert "healthcheck" not in stop
    # the grace period covers the drain and every request in flight
    graceful = int(settings["SERVING_RUNTIME_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > values["runtime"]["drainSeconds"] + graceful
    assert [p["targetPort"] for p in one(manifests, "Service")["spec"]["ports"]] == ["http"]
    policy = one(manifests, "NetworkPolicy")["spec"]
    assert {r["ports"][0]["port"] for r in policy["ingress"]} == {"http", "metrics"} == set(named)
    annotations = template["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (
        str(metrics_port),
        "/metrics",
    )
    monitors = [m for m in manifests if m["kind"] == "PodMonitor"]
    assert [m["metadata"]["name"].rsplit("-", 1)[1] for m in monitors] == ["runtime"]
    assert monitors[0]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    rules = one(manifests, "PrometheusRule")["spec"]
    assert rules == yaml.safe_load((_files(service) / "alerts-runtime.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert not [e for e in exprs if "envoy" in e]
    # helm lint sees nothing to warn about either
    report = helm.lint(service / "chart", strict=True, values=OFF)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_envoy_is_on_unless_turned_off(service: Path) -> None:
    default = render_chart(service)
    assert default == render_chart(service, {"envoy": {"enabled": True}})
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["envoy"]


def test_a_misspelt_or_mistyped_enabled_is_refused(render: Renders) -> None:
    with helm.Chart.load(render("default") / "chart") as chart:
        for bad in ({"envoy": {"enable": False}}, {"envoy": {"enabled": "no"}}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(chart.merge_values(bad))


def test_the_runtime_rules_pass_promtool_and_measure_the_runtimes_series(service: Path) -> None:
    checked = _promtool("check", "rules", "alerts-runtime.yaml", cwd=_files(service))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts-runtime.test.yaml", cwd=_files(service))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    answers = answers_of(service)
    groups = yaml.safe_load((_files(service) / "alerts-runtime.yaml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = {r["alert"] for r in rules if "alert" in r}
    expected = ALERTS - ENVOY_ALERTS
    if answers["max_replicas"] == answers["min_replicas"]:
        expected -= {"AutoscalerAtMaximum"}
    assert alerts == expected
    used = set().union(*(metric_names(r["expr"]) for r in rules))
    assert not [name for name in used if name.startswith("envoy_")]
    recorded = {r["record"]: r["expr"] for r in rules if "record" in r}
    assert metric_names(recorded["lls:request_errors:ratio_rate5m"]) == {"lls_requests_total"}
    slow = recorded["lls:request_slow:ratio_rate5m"]
    assert metric_names(slow) == {"lls_request_duration_seconds_bucket"}
    # read at a bound of the runtime's histogram (the objective), never interpolated
    bounds = set(re.findall(r'le="([^"]+)"', slow))
    assert bounds == {floatToGoString(answers["latency_slo_p99_ms"] / 1000), "+Inf"}
    assert bounds <= _runtime_buckets(service)


def test_the_runtime_rule_tests_catch_a_broken_objective(render: Renders, tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    service = render("default")
    for name in ("alerts-runtime.yaml", "alerts-runtime.test.yaml"):
        (files / name).write_text((_files(service) / name).read_text())
    rules = (files / "alerts-runtime.yaml").read_text()
    (files / "alerts-runtime.yaml").write_text(rules.replace('status=~"5.."', 'status=~"4.."'))
    tested = _promtool("test", "rules", "alerts-runtime.test.yaml", cwd=files)
    assert tested.returncode != 0
    assert "ErrorBudgetBurnFast" in tested.stdout + tested.stderr


def test_the_runtime_rule_tests_feed_only_series_the_runtime_exports(
    service: Path, observed: Observed
) -> None:
    exported = _exported(observed)
    # the histogram's bounds as computed here are the ones a real scrape stored
    assert exported["lls_request_duration_seconds_bucket"]["le"] == _runtime_buckets(
        observed.service
    )
    manifests = render_chart(service, {**OFF, "monitoring": {"podMonitors": {"enabled": True}}})
    namespace = answers_of(service)["namespace"]
    jobs = {f"{namespace}/{m['metadata']['name']}" for m in manifests if m["kind"] == "PodMonitor"}
    test_file = _files(service) / "alerts-runtime.test.yaml"
    envoy_exported = {k: v for k, v in exported.items() if not k.startswith("envoy_")}
    assert _unproduced(test_file, envoy_exported, _runtime_buckets(service), jobs) == []


def test_the_pod_without_envoy_runs_serves_and_stops_clean(render: Renders, pod_venv: Path) -> None:
    """`dev.py pod --set envoy.enabled=false`, as a user runs it: the runtime alone answers
    the probes, /infer on the pod's port and /metrics on its metrics port; SIGTERM stops it."""
    service = render("default")
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, service / "scripts" / "pod.py", "--venv", pod_venv, "--free-ports",
        "--set", "envoy.enabled=false", "--set", f"envoy.port={port}",
        "--set", f"envoy.statsPort={metrics_port}",
    ]  # fmt: skip
    pod = subprocess.Popen(command, cwd=service, stderr=subprocess.PIPE, text=True)
    assert pod.stderr is not None
    lines: list[str] = []
    try:
        for line in pod.stderr:  # until the pod is ready, or the runner gives up
            lines.append(line)
            if "is the pod's" in line:
                break
        assert f"http://127.0.0.1:{port} is the pod's runtime" in lines[-1], "".join(lines)
        body, expected = canary(service)
        answer = httpx.post(f"http://127.0.0.1:{port}/infer", json=body)
        assert answer.status_code == 200, answer.text
        assert "server" not in answer.headers or answer.headers["server"] != "envoy"
        assert answer.json()["output"] == pytest.approx(expected, abs=1e-6)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.status_code == 200
        assert 'lls_requests_total{model_id="' in metrics.text
        # the scrape is not the callers': no /metrics through the Service's port
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        pod.send_signal(signal.SIGTERM)
        lines.extend(pod.stderr)
    finally:
        if pod.poll() is None:
            pod.kill()
        status = pod.wait()
        pod.stderr.close()
    log = "".join(lines)
    assert status == 0, log
    started = re.findall(r"^ *[0-9.]+s (\w+): started \(", log, re.MULTILINE)
    assert started == ["runtime"], log  # no Envoy in this pod
    steps = re.findall(
        r"^ *[0-9.]+s (\w+): "
        r"(terminating|preStop hook ran|SIGTERM|SIGKILL|exited with status -?\d+)",
        log,
        re.MULTILINE,
    )
    assert steps == [
        ("pod", "terminating"),
        ("runtime", "preStop hook ran"),
        ("runtime", "SIGTERM"),
        ("runtime", "exited with status 0"),
    ], log
    assert "restarting" not in log
