"""The one lever for which version serves: the chart's `models` value, the runtime's overrides
file. A `helm upgrade` reaches the running pod as the kubelet brings it (a new folder, `..data`
swapped), with no restart; a pod started later serves the same; an experiment's weights split
the callers by routing key; removing it restores models.yaml's primary."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from serving_runtime._traffic import choose

from .conftest import Renders, answers_of, pod_runner
from .test_pod import canary


def versions_answered(url: str, body: dict[str, Any], count: int = 20) -> set[tuple[int, str]]:
    answers = [httpx.post(f"{url}/infer", json=body) for _ in range(count)]
    return {(a.status_code, a.json().get("version", a.text)) for a in answers}


def settled(runtime_url: str, overrides: str) -> bool:
    """The runtime has read the file with this content, every worker serves its plan, and
    every version it declares has arrived (or failed)."""
    listing = httpx.get(f"{runtime_url}/models").json()
    plan = listing["plan"]
    digest = hashlib.sha256(overrides.encode()).hexdigest()
    arriving = [v for m in listing["models"] for v in m["versions"] if v["state"] == "arriving"]
    return bool(plan["overrides"]["digest"] == digest and plan["behind"] == [] and not arriving)


def test_the_models_value_sets_the_version_in_running_pods_and_pods_started_later(
    render: Renders, pod_venv: Path, tmp_path: Path
) -> None:
    service = tmp_path / "service"
    shutil.copytree(render("custom"), service)
    model = answers_of(service)["model_id"]
    models_yaml = yaml.safe_load((service / "models.yaml").read_text())
    versions = models_yaml["models"][model]["versions"]
    versions["v2"] = dict(versions["v1"])  # a second version: the same artifact, its own name
    (service / "models.yaml").write_text(yaml.safe_dump(models_yaml))
    runner = pod_runner(service)
    values = runner.free_ports(service)
    url = f"http://127.0.0.1:{values['envoy']['port']}"
    runtime_url = f"http://127.0.0.1:{values['runtime']['port']}"
    body, _ = canary(service)
    v2 = {"models": {model: {"primary": "v2"}}}

    def overrides(manifests: list[dict[str, Any]]) -> str:
        (found,) = [m for m in manifests if m["metadata"]["name"].endswith("-overrides")]
        text: str = found["data"]["overrides.yaml"]
        return text

    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", values)
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 600, "ready")
        assert versions_answered(url, body) == {(200, "v1")}
        runtime = pod["runtime"].process

        upgraded = runner.render(service, runner.merge(values, v2))  # helm upgrade --set
        pod.update(upgraded)
        pod.wait(lambda: settled(runtime_url, overrides(upgraded)), 120, "serving v2")
        assert versions_answered(url, body) == {(200, "v2")}
        assert pod["runtime"].process is runtime  # the same container: nothing restarted

        later_values = runner.merge(runner.free_ports(service), v2)
        later = runner.service_pod(service, pod_venv, tmp_path / "later", later_values)
        later.start()
        try:
            later.wait(lambda: later.ready, 600, "ready")
            later_url = f"http://127.0.0.1:{later_values['envoy']['port']}"
            assert versions_answered(later_url, body) == {(200, "v2")}
        finally:
            later.delete()

        # An experiment: --set models.M.traffic.v1=50,models.M.traffic.v2=50, through Envoy
        # with a routing key per caller, each reaching the version any process computes.
        half = {"v1": 50, "v2": 50}
        split = runner.render(service, runner.merge(values, {"models": {model: {"traffic": half}}}))
        pod.update(split)
        pod.wait(lambda: settled(runtime_url, overrides(split)), 120, "splitting")
        keys = [f"customer-{n}" for n in range(20)]
        expected = {key: choose(model, half, key) for key in keys}
        assert set(expected.values()) == {"v1", "v2"}
        for key in keys:
            answered = {
                httpx.post(f"{url}/infer", json=body, headers={"x-routing-key": key}).json()[
                    "version"
                ]
                for _ in range(3)
            }
            assert answered == {expected[key]}, key

        removed = runner.render(service, values)  # the value removed: models: {}
        pod.update(removed)
        pod.wait(lambda: settled(runtime_url, overrides(removed)), 120, "serving v1")
        assert versions_answered(url, body) == {(200, "v1")}
        assert pod["runtime"].process is runtime
    finally:
        pod.delete()
    assert not [e for e in pod.events if "restarting" in e.what or "SIGKILL" in e.what]
