"""Alert rules and dashboard: promtool checks and unit-tests the rules (tests shipped in the
service), the dashboard's queries parse, and every series the rules, the dashboard and the
rules' unit tests read is one a real scrape produced (observed.py), one of the cluster's own
exporters (exporters.py), or recorded by the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import envoy_config, render_chart
from .conftest import answers_of
from .exporters import CLUSTER_SERIES, envoy_bound, parse_series
from .observed import Observed
from .promql import metric_names

PROMTOOL = shutil.which("promtool") or "promtool"
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "text", "row"}
ALERTS = {
    "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow", "LatencyBudgetBurnFast",
    "LatencyBudgetBurnSlow", "ModelSelfTestFailed", "ModelNotReady", "ShadowDisagreement",
    "OffloadDropping", "NoReadyPods", "PodCrashLooping", "ContainerOOMKilled",
    "AutoscalerAtMaximum", "EnvoyOverflow", "EnvoyTimeouts", "MetricsScrapeFailing",
    "RuntimeMetricsAbsent", "EnvoyStatsAbsent",
}  # fmt: skip
# Labels whose values name a fixed part of what is exported (a histogram's bound, Envoy's
# virtual host): a test fed another value would test a series that never exists.
FIXED_VALUES = {
    "le", "envoy_virtual_host", "envoy_virtual_cluster", "envoy_cluster_name",
    "envoy_response_code_class",
}  # fmt: skip


def _promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )


def _files(service: Path) -> Path:
    return service / "chart" / "files"


def _rules(service: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((_files(service) / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard(service: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((_files(service) / "dashboard.json").read_text())
    return dashboard


def _dashboard_exprs(service: Path) -> list[str]:
    return [t["expr"] for p in _dashboard(service)["panels"] for t in p.get("targets", [])]


def _latency_buckets(service: Path) -> set[str]:
    """The bounds of Envoy's latency histogram as the service's chart configures it."""
    config = yaml.safe_load(envoy_config(render_chart(service)))
    (setting,) = config["stats_config"]["histogram_bucket_settings"]
    return {envoy_bound(b) for b in setting["buckets"]} | {"+Inf"}


def test_promtool_checks_the_rules_and_passes_their_unit_tests(service: Path) -> None:
    checked = _promtool("check", "rules", "alerts.yaml", cwd=_files(service))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts.test.yaml", cwd=_files(service))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_catch_a_broken_threshold(service: Path, tmp_path: Path) -> None:
    files = tmp_path / "files"
    shutil.copytree(_files(service), files)
    rules = (files / "alerts.yaml").read_text()
    (files / "alerts.yaml").write_text(rules.replace("for: 2m", "for: 1h"))
    tested = _promtool("test", "rules", "alerts.test.yaml", cwd=files)
    assert tested.returncode != 0
    assert "ErrorBudgetBurnFast" in tested.stdout + tested.stderr


def test_alerts_follow_the_objectives_and_link_to_the_runbook(service: Path) -> None:
    answers = answers_of(service)
    alerts = {r["alert"]: r for r in _rules(service) if "alert" in r}
    if answers["max_replicas"] > answers["min_replicas"]:
        assert set(alerts) == ALERTS
    else:  # an autoscaler pinned to one size is always at its maximum
        assert set(alerts) == ALERTS - {"AutoscalerAtMaximum"}
    budget = round((100 - answers["availability_slo"]) / 100, 8)
    fast = [float(x) for x in re.findall(r">= ([0-9.e-]+)", alerts["ErrorBudgetBurnFast"]["expr"])]
    assert fast[0] == pytest.approx(min(14.4 * budget, 1.0))
    slow = [
        float(x) for x in re.findall(r">= ([0-9.e-]+)", alerts["LatencyBudgetBurnFast"]["expr"])
    ]
    assert slow == pytest.approx([0.144, 0.144, 0.06, 0.06])
    # The latency objective is read at a bound of Envoy's histogram, never interpolated.
    recorded = {r["record"]: r["expr"] for r in _rules(service) if "record" in r}
    bounds = set(re.findall(r'le="([^"]+)"', recorded["lls:request_slow:ratio_rate5m"]))
    assert bounds == {str(answers["latency_slo_p99_ms"]), "+Inf"}
    assert bounds <= _latency_buckets(service)
    runbook = (service / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, re.MULTILINE)
    }
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["labels"]["oncall"] == answers["oncall_channel"]
        # Absolute: the link must work from Alertmanager, a chat message or a pager.
        page, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert page == f"{answers['repository_url']}/blob/main/docs/runbook.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, name


def test_dashboard_is_a_well_formed_grafana_dashboard(service: Path) -> None:
    dashboard = _dashboard(service)
    assert dashboard["uid"]
    assert len(dashboard["uid"]) <= 40
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h"))
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"]
    # panels do not overlap
    cells = [
        (x, y)
        for p in dashboard["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))


def test_dashboard_queries_parse(service: Path, tmp_path: Path) -> None:
    """promtool parses each query, with Grafana's variables given example values."""
    variables = {"$__rate_interval": "5m", "$namespace": "ns", "$model_id": ".*"}
    rules = []
    for i, query in enumerate(_dashboard_exprs(service)):
        expr = query
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    checked = _promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_shows_what_the_issue_asks_for(service: Path) -> None:
    used = set().union(*(metric_names(e) for e in _dashboard_exprs(service)))
    assert {
        "lls_requests_total", "lls_request_duration_seconds_bucket", "lls_request_errors_total",
        "lls_shadow_comparisons_total", "lls_model_selftest_passed",
        "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
        "kube_deployment_status_replicas_available",
        # what the alerts watch: the objectives as Envoy sees them, its refusals and cut-offs,
        # restarts and OOM kills, the autoscaler, scrapes, offload drops
        "envoy_vhost_vcluster_upstream_rq_xx", "lls:request_errors:ratio_rate1h",
        "lls:request_slow:ratio_rate1h", "envoy_cluster_upstream_rq_pending_overflow",
        "envoy_vhost_vcluster_upstream_rq_timeout", "kube_pod_container_status_restarts_total",
        "kube_pod_container_status_last_terminated_reason",
        "kube_horizontalpodautoscaler_status_current_replicas", "up",
        "lls_offload_dropped_total", "lls_offload_restarts_total",
    } <= used  # fmt: skip
    quantiles = re.findall(r"histogram_quantile\((0\.\d+)", " ".join(_dashboard_exprs(service)))
    assert sorted(set(quantiles)) == ["0.5", "0.95", "0.99"]
    # An experiment's arms side by side: traffic share, error ratio and p95, by version.
    experiment = {
        p["title"]: p["targets"][0]["expr"]
        for p in _dashboard(service)["panels"]
        if p["title"].startswith("Experiment: ")
    }
    assert len(experiment) == 3, experiment
    for expr in experiment.values():
        assert "by (model_id, version" in expr


def _exported(observed: Observed) -> dict[str, dict[str, set[str]]]:
    """Name -> label -> values, of every series Prometheus stored from the real scrapes."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for series in observed.series:
        for label, value in series.items():
            if label != "__name__":
                found[series["__name__"]][label].add(value)
    return found


def test_every_metric_of_rules_and_dashboard_is_really_exported(observed: Observed) -> None:
    service = observed.service
    exported = _exported(observed)
    recorded = {r["record"] for r in _rules(service) if "record" in r}
    used: set[str] = set()
    for expr in [r["expr"] for r in _rules(service)] + _dashboard_exprs(service):
        used |= metric_names(expr)
    unknown = sorted(used - set(exported) - set(CLUSTER_SERIES) - recorded)
    assert unknown == [], f"no exporter produces {unknown}"


def test_envoy_exports_exactly_the_configured_latency_buckets(observed: Observed) -> None:
    exported = _exported(observed)["envoy_vhost_vcluster_upstream_rq_time_bucket"]["le"]
    assert exported == _latency_buckets(observed.service)
    assert "8000" in exported  # the objective of the observed service


def _unproduced(
    test_file: Path, exported: dict[str, dict[str, set[str]]], buckets: set[str], jobs: set[str]
) -> list[str]:
    """Each series of a promtool test file that no exporter produces, and why."""
    tests = yaml.safe_load(test_file.read_text())["tests"]
    fed = [parse_series(s["series"]) for t in tests for s in t["input_series"]]
    problems = [] if fed else ["no series at all"]
    for name, labels in fed:
        if name in CLUSTER_SERIES:
            if not set(labels) <= CLUSTER_SERIES[name]:
                problems.append(f"{name} has no label {set(labels) - CLUSTER_SERIES[name]}")
            continue
        if name not in exported:
            problems.append(f"{name}: neither the runtime nor Envoy exports it")
            continue
        if unknown := set(labels) - set(exported[name]):
            problems.append(f"{name} has no label {sorted(unknown)}")
        for label in sorted(FIXED_VALUES & set(labels)):
            allowed = buckets if label == "le" else exported[name][label]
            if labels[label] not in allowed:
                problems.append(f'{name}: {label}="{labels[label]}" is not exported')
        if name == "up" and labels.get("job") not in jobs:
            problems.append(f"up: job {labels.get('job')!r} is none of the PodMonitors' {jobs}")
    return problems


def _jobs(service: Path) -> set[str]:
    """Prometheus's job of each target: namespace/name of the chart's PodMonitors."""
    manifests = render_chart(service, {"monitoring": {"podMonitors": {"enabled": True}}})
    namespace = answers_of(service)["namespace"]
    return {f"{namespace}/{m['metadata']['name']}" for m in manifests if m["kind"] == "PodMonitor"}


def test_the_rule_tests_feed_only_series_the_exporters_produce(
    service: Path, observed: Observed
) -> None:
    test_file = _files(service) / "alerts.test.yaml"
    found = _unproduced(test_file, _exported(observed), _latency_buckets(service), _jobs(service))
    assert found == []


def test_the_series_check_catches_what_no_exporter_produces(
    observed: Observed, tmp_path: Path
) -> None:
    service = observed.service
    tests = yaml.safe_load((_files(service) / "alerts.test.yaml").read_text())
    pod = 'namespace="ml-risk", pod="loan-score-5d9c7b8f6c-x2x4z"'
    infer = f'{pod}, envoy_virtual_host="runtime", envoy_virtual_cluster="infer"'
    tests["tests"].append(
        {
            "interval": "1m",
            "input_series": [
                # the buckets the tests of template v0.3.0 fed, which the runtime never had
                {"series": f'envoy_vhost_vcluster_upstream_rq_time_bucket{{{infer}, le="8"}}'},
                {"series": f'lls_request_latency_seconds_count{{{pod}, model_id="loan"}}'},
                {"series": f'lls_model_ready{{{pod}, model="loan"}}'},
                {"series": f'up{{{pod}, job="kubernetes-pods"}}'},
                {"series": f'kube_pod_container_status_restarts_total{{{pod}, reason="x"}}'},
            ],
        }
    )
    test_file = tmp_path / "alerts.test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    found = _unproduced(test_file, _exported(observed), _latency_buckets(service), _jobs(service))
    assert found == [
        'envoy_vhost_vcluster_upstream_rq_time_bucket: le="8" is not exported',
        "lls_request_latency_seconds_count: neither the runtime nor Envoy exports it",
        "lls_model_ready has no label ['model']",
        f"up: job 'kubernetes-pods' is none of the PodMonitors' {_jobs(service)}",
        "kube_pod_container_status_restarts_total has no label {'reason'}",
    ]
