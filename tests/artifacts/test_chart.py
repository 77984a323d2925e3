"""The Helm chart: linted and rendered by Helm's engine, each object checked against the
Kubernetes schemas, the pod against the restricted Pod Security Standard, values against the
answers, and bad values refused by values.schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving_runtime._cli import _parser
from serving_runtime._config import load_config
from serving_runtime._overrides import check_overrides, parse_overrides

from .chart import one, render_chart
from .conftest import KUBERNETES_VERSIONS, answers_of

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def test_helm_lint_finds_nothing_to_warn_about(service: Path) -> None:
    for kube_version in KUBERNETES_VERSIONS:
        report = helm.lint(service / "chart", strict=True, kube_version=f"v{kube_version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # warning, error
        assert report["errors"] == [], report
        assert problems == [], report


def test_every_object_is_valid_for_kubernetes_strictly(service: Path) -> None:
    manifests = render_chart(service)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler",
         "PodDisruptionBudget", "Service", "ServiceAccount"]
    )  # fmt: skip
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            # Raises ValidationError naming the path of the first wrong field.
            kubernetes_validate.validate(manifest, version, strict=True)


def test_a_wrong_field_is_caught_by_the_kubernetes_schemas(service: Path) -> None:
    deployment = one(render_chart(service), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" (which includes "baseline"), field by field."""
    found: list[str] = []
    pod_sc = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"pod {field}")
    if pod_sc.get("seccompProfile", {}).get("type") not in {"RuntimeDefault", "Localhost"}:
        found.append("pod seccompProfile")
    if pod_sc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    if pod_sc.get("sysctls"):
        found.append("pod sysctls")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {kinds}")
    containers = pod["containers"] + pod.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        profile = sc.get("seccompProfile", {}).get("type")
        if profile not in {None, "RuntimeDefault", "Localhost"}:
            found.append(f"{name}: seccompProfile {profile}")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{name}: hostPort")
        if sc.get("windowsOptions", {}).get("hostProcess"):
            found.append(f"{name}: hostProcess")
    return found


def test_the_pod_meets_the_restricted_pod_security_standard(service: Path) -> None:
    pod = one(render_chart(service), "Deployment")["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    # and the checker itself sees a violation when there is one
    pod["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(_restricted_violations(pod)) == 2


def test_read_only_root_writes_only_to_a_tmp_emptydir_and_no_token(service: Path) -> None:
    manifests = render_chart(service)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    tmp = next(m for m in runtime["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    assert pod["automountServiceAccountToken"] is False
    account = one(manifests, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_resources_replicas_and_workers_come_from_the_answers(service: Path) -> None:
    answers = answers_of(service)
    manifests = render_chart(service)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    assert runtime["resources"] == {
        "requests": {"cpu": answers["cpu_request"], "memory": answers["memory_request"]},
        "limits": {"cpu": answers["cpu_limit"], "memory": answers["memory_limit"]},
    }
    hpa = one(manifests, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        answers["min_replicas"],
        answers["max_replicas"],
    )
    (metric,) = hpa["metrics"]
    assert metric["type"] == "ContainerResource"  # the runtime's CPU, not Envoy's beside it
    assert metric["containerResource"]["container"] == "runtime"
    target = metric["containerResource"]["target"]
    assert target["averageUtilization"] == answers["autoscaling_cpu_target"]
    assert "replicas" not in one(manifests, "Deployment")["spec"]  # the autoscaler owns it
    settings = one(manifests, "ConfigMap", "-runtime")["data"]
    assert settings["SERVING_RUNTIME_WORKERS"] == str(answers["workers"])
    pdb = one(manifests, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1  # never blocks a drain, even with one replica
    assert pdb["selector"]["matchLabels"] == one(manifests, "Service")["spec"]["selector"]


def test_runtime_settings_are_flags_the_runtime_reads(service: Path) -> None:
    """Each SERVING_RUNTIME_* of the ConfigMap names a flag of `serving-runtime serve`."""
    settings = one(render_chart(service), "ConfigMap", "-runtime")["data"]
    serve = _parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {a.dest.upper() for a in serve._actions} | {"CONFIG"}
    names = {k.removeprefix("SERVING_RUNTIME_") for k in settings if k.startswith("SERVING_")}
    assert names
    assert names <= flags, names - flags
    assert settings["SERVING_RUNTIME_BIND"].startswith("127.0.0.1:")


def test_probes_reach_the_runtime_endpoints_through_envoy(service: Path) -> None:
    manifests = render_chart(service)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    envoy = pod["initContainers"][0]
    assert envoy["name"] == "envoy"
    assert envoy["restartPolicy"] == "Always"
    envoy_port = next(p["containerPort"] for p in envoy["ports"] if p["name"] == "http")
    probes = {k: runtime[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {k: (p["path"], p["port"]) for k, p in probes.items()} == {
        "startupProbe": ("/readyz", envoy_port),
        "readinessProbe": ("/readyz", envoy_port),
        "livenessProbe": ("/livez", envoy_port),
    }
    # generous start: models load and self-test first
    startup = runtime["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    service_ports = one(manifests, "Service")["spec"]["ports"]
    assert [p["targetPort"] for p in service_ports] == ["http"]


URI = {"artifact": "https://models.example.com/fraud/v3.json"}
SHA = "0123456789abcdef" * 4
BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("zero cpu", {"runtime": {"resources": {"requests": {"cpu": "0"}}}}),
    ("memory in MB", {"runtime": {"resources": {"limits": {"memory": "512MB"}}}}),
    ("no replicas", {"autoscaling": {"minReplicas": 0}}),
    ("target over 100%", {"autoscaling": {"targetCPUUtilizationPercentage": 150}}),
    ("port as text", {"envoy": {"port": "http"}}),
    ("privileged port", {"runtime": {"port": 80}}),
    ("unknown key", {"replicaCount": 3}),
    ("misspelt nested key", {"envoy": {"routeTimeout": 100}}),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}),
    ("model version with a space", {"models": {"fraud": {"primary": "v 2"}}}),
    ("digest without its algorithm", {"image": {"digest": "0a" * 32}}),
    ("pull secret as a string", {"imagePullSecrets": "regcred"}),
    ("misspelt service account key", {"serviceAccount": {"annotation": {"a": "b"}}}),
    ("name not a DNS label", {"fullnameOverride": "Fraud_Score"}),
    ("variable without a name", {"runtime": {"extraEnv": [{"value": "1"}]}}),
    ("network policy as a flag", {"networkPolicy": True}),
    ("misspelt primary", {"models": {"fraud": {"primay": "v2"}}}),
    ("model without a version", {"models": {"fraud": {}}}),
    ("negative traffic weight", {"models": {"fraud": {"traffic": {"v1": 90, "v2": -10}}}}),
    ("traffic weight as text", {"models": {"fraud": {"traffic": {"v2": "10%"}}}}),
    ("declared version without its sha256", {"models": {"fraud": {"versions": {"v3": URI}}}}),
    (
        "declared version from a file",
        {"models": {"fraud": {"versions": {"v3": {**URI, "artifact": "artifacts/v3.json"}}}}},
    ),
    (
        "declared version with a short sha256",
        {"models": {"fraud": {"versions": {"v3": {**URI, "sha256": "0a1b"}}}}},
    ),
    ("delivery without a bound", {"delivery": {"maxBytes": 0}}),
]


@pytest.mark.parametrize(("case", "values"), BAD_VALUES, ids=[c for c, _ in BAD_VALUES])
def test_values_schema_refuses_bad_values(render: Any, case: str, values: dict[str, Any]) -> None:
    chart_dir = render("default") / "chart"
    with helm.Chart.load(chart_dir) as chart:
        chart.validate_schema(chart.merge_values({}))  # the defaults pass
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(chart.merge_values(values))
        with pytest.raises(helm.HelmError):
            chart.render(values, name="x", namespace="y")


def test_more_min_than_max_replicas_is_refused(render: Any) -> None:
    with pytest.raises(helm.HelmError, match="minReplicas"):
        render_chart(render("default"), {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}})


def test_without_autoscaling_the_deployment_holds_the_replicas(render: Any) -> None:
    manifests = render_chart(render("default"), {"autoscaling": {"enabled": False}})
    assert (
        one(manifests, "Deployment")["spec"]["replicas"]
        == answers_of(render("default"))["min_replicas"]
    )
    assert not [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]


def test_traffic_in_the_models_value_is_an_experiment_the_runtime_reads(render: Any) -> None:
    service = render("default")
    model = answers_of(service)["model_id"]
    # As `helm upgrade --set models.M.traffic.v1=90,models.M.traffic.v2=10` gives them.
    values = {"models": {model: {"traffic": {"v1": 90, "v2": 10}}}}
    overrides = one(render_chart(service, values), "ConfigMap", "-overrides")["data"]
    parsed = parse_overrides(overrides["overrides.yaml"], "overrides.yaml")
    assert parsed.models[model].traffic == {"v1": 90, "v2": 10}
    assert parsed.models[model].primary is None
    # As the runbook ends it: --set models.M.primary=v2,models.M.traffic=null drops the weights.
    ended = {"models": {model: {"primary": "v2", "traffic": None}}}
    overrides = one(render_chart(service, ended), "ConfigMap", "-overrides")["data"]
    parsed = parse_overrides(overrides["overrides.yaml"], "overrides.yaml")
    assert (parsed.models[model].primary, parsed.models[model].traffic) == ("v2", None)


def test_traffic_null_passes_the_schema_alone_and_the_runtime_reads_it_as_none(
    render: Any,
) -> None:
    """What Helm's engine may keep or drop, the schema (as any validator reads it) and the
    runtime each take: `traffic: null` and `versions: null` mean models.yaml's."""
    service = render("default")
    model = answers_of(service)["model_id"]
    schema = json.loads((service / "chart" / "values.schema.json").read_text())
    with helm.Chart.load(service / "chart") as chart:
        values = dict(chart.merge_values({}))
    values["models"] = {model: {"primary": "v2", "traffic": None, "versions": None}}
    jsonschema.validate(values, schema)
    parsed = parse_overrides(yaml.safe_dump({"models": values["models"]}), "overrides.yaml")
    assert (parsed.models[model].traffic, parsed.models[model].versions) == (None, {})


def test_a_version_declared_in_the_models_value_reaches_the_runtime_with_a_cache(
    render: Any,
) -> None:
    service = render("default")
    model = answers_of(service)["model_id"]
    # helm upgrade --set models.M.versions.v3.artifact=URI,models.M.versions.v3.sha256=SHA,
    # models.M.traffic.v1=90,models.M.traffic.v3=10
    declared = {"versions": {"v3": {**URI, "sha256": SHA}}, "traffic": {"v1": 90, "v3": 10}}
    manifests = render_chart(service, {"models": {model: declared}, "delivery": {"maxBytes": 5}})
    overrides = one(manifests, "ConfigMap", "-overrides")["data"]["overrides.yaml"]
    config = load_config(service / "models.yaml")
    assert check_overrides(config, overrides, "overrides.yaml") == {}
    assert parse_overrides(overrides, "overrides.yaml").models[model].versions["v3"].sha256 == SHA
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSIONS[-1], strict=True)
    settings = one(manifests, "ConfigMap", "-runtime")["data"]
    assert settings["SERVING_RUNTIME_DELIVERY_MAX_BYTES"] == "5"
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    mount = next(
        m
        for m in runtime["volumeMounts"]
        if m["mountPath"] == settings["SERVING_RUNTIME_DELIVERY_CACHE"]
    )
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["sizeLimit"] == "2Gi"
    # A release installed from an older chart, upgraded with --reuse-values, has no
    # `delivery` value: the defaults apply.
    older = render_chart(service, {"delivery": None})
    assert one(older, "ConfigMap", "-runtime")["data"]["SERVING_RUNTIME_DELIVERY_TIMEOUT"] == "300"


def test_a_starting_pod_fetches_within_half_its_startup_probe_budget(render: Any) -> None:
    """The runtime stops waiting for declared versions well before the startup probe would
    restart the container, and becomes ready with what it serves."""
    service = render("default")
    for startup, budget in ((300, "150"), (61, "30"), (1, "1")):
        manifests = render_chart(service, {"runtime": {"startupSeconds": startup}})
        settings = one(manifests, "ConfigMap", "-runtime")["data"]
        assert settings["SERVING_RUNTIME_DELIVERY_STARTUP_BUDGET"] == budget
        pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
        runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
        probe = runtime["startupProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] == startup


def test_the_models_value_is_the_runtimes_watched_overrides_file(render: Any) -> None:
    service = render("default")
    model = answers_of(service)["model_id"]
    before = render_chart(service)
    after = render_chart(service, {"models": {model: {"primary": "v2"}}})
    overrides = one(after, "ConfigMap", "-overrides")["data"]["overrides.yaml"]
    assert yaml.safe_load(overrides) == {"models": {model: {"primary": "v2"}}}
    assert yaml.safe_load(one(before, "ConfigMap", "-overrides")["data"]["overrides.yaml"]) == {
        "models": {}
    }
    for manifest in after:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSIONS[-1], strict=True)
    # the runtime reads it from a folder mount (a subPath would never be updated)
    pod = one(after, "Deployment")["spec"]["template"]["spec"]
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    settings = one(after, "ConfigMap", "-runtime")["data"]
    volume = next(
        v for v in pod["volumes"] if v.get("configMap", {}).get("name", "").endswith("-overrides")
    )
    mount = next(m for m in runtime["volumeMounts"] if m["name"] == volume["name"])
    assert "subPath" not in mount
    assert settings["SERVING_RUNTIME_OVERRIDES"] == f"{mount['mountPath']}/overrides.yaml"
    # watched, so a change does not restart the pods; a change of the settings does
    annotations = [
        one(m, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        for m in (before, after, render_chart(service, {"runtime": {"threads": 2}}))
    ]
    assert annotations[0] == annotations[1]
    assert annotations[0]["checksum/config"] != annotations[2]["checksum/config"]


EVERY_KNOB: dict[str, Any] = {
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {
        "name": "fraud-scorer",
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/fraud"},
    },
    "podLabels": {"azure.workload.identity/use": "true"},
    "podAnnotations": {"example.com/owner": "pay"},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ml"]}]}
                ]
            }
        }
    },
    "priorityClassName": "serving-high",
    "adminTokenSecret": "admin-token",
    "runtime": {
        "extraEnv": [
            {
                "name": "FEATURE_STORE_URL",
                "valueFrom": {"secretKeyRef": {"name": "fs", "key": "url"}},
            }
        ],
        "extraEnvFrom": [{"secretRef": {"name": "feature-store"}}],
        "extraVolumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": True}],
    },
    "extraVolumes": [{"name": "certs", "secret": {"secretName": "fraud-certs"}}],
    "service": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
    "networkPolicy": {
        "enabled": True,
        "from": [{"podSelector": {"matchLabels": {"app": "checkout"}}}],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
}


def test_every_knob_a_platform_sets_is_accepted_and_lands_where_kubernetes_reads_it(
    render: Any,
) -> None:
    manifests = render_chart(render("default"), EVERY_KNOB)
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
    template = one(manifests, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    account = one(manifests, "ServiceAccount")
    assert account["metadata"]["name"] == pod["serviceAccountName"] == "fraud-scorer"
    assert account["metadata"]["annotations"] == EVERY_KNOB["serviceAccount"]["annotations"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["metadata"]["annotations"]["example.com/owner"] == "pay"
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == EVERY_KNOB[key]
    runtime = next(c for c in pod["containers"] if c["name"] == "runtime")
    names = [v["name"] for v in runtime["env"]]
    assert names == ["SERVING_RUNTIME_ADMIN_TOKEN", "FEATURE_STORE_URL"]
    assert runtime["envFrom"][1:] == [{"secretRef": {"name": "feature-store"}}]
    assert runtime["volumeMounts"][-1] == EVERY_KNOB["runtime"]["extraVolumeMounts"][0]
    assert pod["volumes"][-1] == EVERY_KNOB["extraVolumes"][0]
    assert _restricted_violations(pod) == []
    service = one(manifests, "Service")
    assert service["metadata"]["annotations"] == EVERY_KNOB["service"]["annotations"]
    policy = one(manifests, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    named_ports = {p["name"] for c in pod["initContainers"] for p in c.get("ports", [])}
    rules = {r["ports"][0]["port"]: r["from"] for r in policy["ingress"]}
    assert rules == {
        "http": EVERY_KNOB["networkPolicy"]["from"],
        "metrics": EVERY_KNOB["networkPolicy"]["metricsFrom"],
    }
    assert set(rules) <= named_ports
    assert service["spec"]["ports"][0]["targetPort"] in rules  # callers reach the Service


def test_a_service_account_of_the_platforms_is_used_as_it_is(render: Any) -> None:
    manifests = render_chart(render("default"), {"serviceAccount": {"create": False, "name": "ml"}})
    assert not [m for m in manifests if m["kind"] == "ServiceAccount"]
    assert one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ml"


def test_two_releases_share_a_namespace_without_a_clash(render: Any) -> None:
    service = render("default")
    answers = answers_of(service)

    def release(name: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with helm.Chart.load(service / "chart") as chart:
            files = chart.render(values, name=name, namespace="ml", is_install=True)
        texts = [t for n, t in files.items() if n.endswith(".yaml")]
        return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]

    first, second = release("canary"), release("stable")
    names = [{(m["kind"], m["metadata"]["name"]) for m in r} for r in (first, second)]
    assert not names[0] & names[1]
    assert ("Service", f"canary-{answers['service_name']}") in names[0]
    selectors = [one(r, "Service")["spec"]["selector"] for r in (first, second)]
    assert selectors[0] != selectors[1]  # neither Service reaches the other's pods
    pod = one(first, "Deployment")["spec"]["template"]["spec"]
    claimed = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert claimed <= {n for k, n in names[0] if k == "ConfigMap"}
    # the release CI installs keeps the names the alert rules and the dashboard select
    default = {(m["kind"], m["metadata"]["name"]) for m in release(answers["service_name"])}
    assert ("Deployment", answers["service_name"]) in default
    assert ("HorizontalPodAutoscaler", answers["service_name"]) in default
    overridden = {m["metadata"]["name"] for m in release("x", {"fullnameOverride": "fraud"})}
    assert {"fraud", "fraud-runtime"} <= overridden


def test_the_team_label_is_on_every_object_and_pod(service: Path) -> None:
    team = answers_of(service)["team"]
    values = {"monitoring": {"podMonitors": {"enabled": True}, "rules": {"enabled": True}}}
    manifests = render_chart(service, {**values, "networkPolicy": {"enabled": True}})
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["team"] == team, manifest["kind"]
    template = one(manifests, "Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == team


def test_disruptions_and_spread_suit_rollouts_and_broken_pods(service: Path) -> None:
    manifests = render_chart(service)
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # never blocks a node drain
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
