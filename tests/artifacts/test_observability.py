"""Alert rules and dashboard: promtool checks and unit-tests the rules (tests shipped in the
service), the dashboard's queries parse, and every metric either is exported by a running
generated service, comes from cAdvisor/kube-state-metrics, or is recorded by the rules."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Served, answers_of
from .promql import metric_names

PROMTOOL = shutil.which("promtool") or "promtool"
# What the cluster's own exporters provide, by the names the rules and dashboard use.
CLUSTER_METRICS = {
    "container_cpu_usage_seconds_total",  # cAdvisor (kubelet)
    "container_memory_working_set_bytes",  # cAdvisor (kubelet)
    "kube_deployment_status_replicas_available",  # kube-state-metrics
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_pod_container_resource_requests",
    "kube_pod_container_resource_limits",
}
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "text", "row"}


def _promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )


def _rules(service: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((service / "observability" / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard(service: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(
        (service / "observability" / "dashboard.json").read_text()
    )
    return dashboard


def _dashboard_exprs(service: Path) -> list[str]:
    return [t["expr"] for p in _dashboard(service)["panels"] for t in p.get("targets", [])]


def test_promtool_checks_the_rules_and_passes_their_unit_tests(service: Path) -> None:
    observability = service / "observability"
    checked = _promtool("check", "rules", "alerts.yaml", cwd=observability)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts.test.yaml", cwd=observability)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_catch_a_broken_threshold(service: Path, tmp_path: Path) -> None:
    observability = tmp_path / "observability"
    shutil.copytree(service / "observability", observability)
    rules = (observability / "alerts.yaml").read_text()
    (observability / "alerts.yaml").write_text(rules.replace("for: 10m", "for: 1h"))
    tested = _promtool("test", "rules", "alerts.test.yaml", cwd=observability)
    assert tested.returncode != 0
    assert "LatencyObjectiveMissed" in tested.stdout + tested.stderr


def test_alerts_follow_the_objectives_and_link_to_the_runbook(service: Path) -> None:
    answers = answers_of(service)
    alerts = {r["alert"]: r for r in _rules(service) if "alert" in r}
    assert set(alerts) == {
        "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow", "LatencyObjectiveMissed",
        "ModelSelfTestFailed", "ModelNotReady", "NoReadyPods",
    }  # fmt: skip
    budget = round((100 - answers["availability_slo"]) / 100, 8)
    fast = [float(x) for x in re.findall(r">= ([0-9.e-]+)", alerts["ErrorBudgetBurnFast"]["expr"])]
    assert fast[0] == pytest.approx(min(14.4 * budget, 1.0))
    latency = float(alerts["LatencyObjectiveMissed"]["expr"].rsplit(">", 1)[1])
    assert latency == pytest.approx(answers["latency_slo_p99_ms"] / 1000)
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
    } <= used  # fmt: skip
    quantiles = re.findall(r"histogram_quantile\((0\.\d+)", " ".join(_dashboard_exprs(service)))
    assert sorted(set(quantiles)) == ["0.5", "0.95", "0.99"]


def _scrape_after_traffic(served: Served) -> set[str]:
    """Names in /metrics (on the pod's metrics port) after answers, errors and shadow
    comparisons."""
    model = answers_of(served.path)["model_id"]
    test_data = json.loads((served.path / "demo_model" / "test_data.json").read_text())
    # A shadow of the primary, loaded at run time from inside the pod, as an operator would.
    load = urllib.request.Request(
        f"{served.runtime_url}/admin/models/{model}/load",
        data=json.dumps(
            {"version": "v1-shadow", "artifact": str(served.path / "artifacts" / "model-v1.json"),
             "shadow": True}
        ).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(load, timeout=30) as answer:
        assert answer.status == 200
    bodies = [{"model_id": model, "features": test_data[0]["features"]}, {"model_id": "nope"}]
    for body in bodies * 3:
        request = urllib.request.Request(
            f"{served.envoy_url}/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10).close()
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{served.stats_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        names = {
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        # shadow comparisons run off the request path: give them a moment
        if "lls_shadow_comparisons_total" in names or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def test_every_metric_of_rules_and_dashboard_is_really_exported(
    served: Served, render: Any
) -> None:
    exported = _scrape_after_traffic(served)
    service = served.path
    recorded = {r["record"] for r in _rules(service) if "record" in r}
    used: set[str] = set()
    for expr in [r["expr"] for r in _rules(service)] + _dashboard_exprs(service):
        used |= metric_names(expr)
    unknown = sorted(used - exported - CLUSTER_METRICS - recorded)
    assert unknown == [], f"not exported by the service: {unknown}"
    assert {n for n in used if n.startswith("lls_")} <= exported
