"""A new version without an image build: `helm upgrade --set models.M.versions.v3.artifact=URI,
...sha256=...,traffic...` reaches the running pod as the kubelet brings a ConfigMap; the runtime
fetches v3 from an artifact server, self-tests it and only then gives it its share, with no
restart; a version whose bytes do not match never serves; removing it is the rollback.

The time from the upgrade to v3 serving its share is measured here (printed with `-s`)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serving_runtime._traffic import choose
from tests.model_host import HeldServer, serving

from .conftest import Renders, answers_of, pod_runner
from .test_pod import canary
from .test_pod_overrides import settled


@pytest.fixture
def artifact_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server over a folder, as a model registry's bucket would serve it."""
    folder = tmp_path / "bucket"
    folder.mkdir()
    with serving(folder) as (url, _):
        yield url, folder


def runtime_events(pod: Any, name: str) -> list[dict[str, Any]]:
    """The runtime container's JSON log lines of event `name`."""
    found = []
    for line in (pod.root / "runtime.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def test_a_version_declared_by_helm_upgrade_serves_its_share_in_the_running_pod(
    render: Renders, pod_venv: Path, tmp_path: Path, artifact_server: tuple[str, Path]
) -> None:
    service = tmp_path / "service"
    shutil.copytree(render("custom"), service)
    model = answers_of(service)["model_id"]
    models_yaml = yaml.safe_load((service / "models.yaml").read_text())
    v1 = service / models_yaml["models"][model]["versions"]["v1"]["artifact"]
    url, bucket = artifact_server
    data = v1.read_bytes()  # v3: v1's bytes under a new name, so it passes v1's canaries
    (bucket / f"v3{v1.suffix}").write_bytes(data)
    (bucket / f"corrupt{v1.suffix}").write_bytes(data + b"\n")
    runner = pod_runner(service)
    values = runner.free_ports(service)
    url_envoy = f"http://127.0.0.1:{values['envoy']['port']}"
    runtime_url = f"http://127.0.0.1:{values['runtime']['port']}"
    body, _ = canary(service)
    sha = hashlib.sha256(data).hexdigest()
    weights = {"v1": 90, "v3": 10}

    def overrides(manifests: list[dict[str, Any]]) -> str:
        (found,) = [m for m in manifests if m["metadata"]["name"].endswith("-overrides")]
        text: str = found["data"]["overrides.yaml"]
        return text

    def declare(artifact: str, digest: str, **more: Any) -> dict[str, Any]:
        v3 = {"artifact": artifact, "sha256": digest}
        return {"models": {model: {"versions": {"v3": v3}, **more}}}

    def version_for(key: str) -> str:
        answer = httpx.post(f"{url_envoy}/infer", json=body, headers={"x-routing-key": key})
        assert answer.status_code == 200, answer.text
        version: str = answer.json()["version"]
        return version

    def states() -> dict[str, dict[str, Any]]:
        listing = httpx.get(f"{runtime_url}/models").json()["models"]
        (found,) = [m for m in listing if m["model_id"] == model]
        return {v["version"]: v for v in found["versions"]}

    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", values)
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 600, "ready")
        runtime = pod["runtime"].process

        # helm upgrade --reuse-values --set models.M.versions.v3.artifact=...,sha256=...,
        # models.M.traffic.v1=90,models.M.traffic.v3=10
        asked = runner.render(
            service, runner.merge(values, declare(f"{url}/v3{v1.suffix}", sha, traffic=weights))
        )
        started = time.monotonic()
        pod.update(asked)
        pod.wait(lambda: settled(runtime_url, overrides(asked)), 120, "serving v3's share")
        took = time.monotonic() - started
        print(f"\nfrom the ConfigMap change to v3 serving its share: {took:.2f} s")
        assert states()["v3"]["state"] == "serving"
        assert [e["version"] for e in runtime_events(pod, "version_delivered")] == ["v3"]
        keys = [f"customer-{n}" for n in range(60)]
        expected = {key: choose(model, weights, key) for key in keys}
        assert set(expected.values()) == {"v1", "v3"}
        assert {key: version_for(key) for key in keys} == expected

        promoted = runner.render(
            service, runner.merge(values, declare(f"{url}/v3{v1.suffix}", sha, primary="v3"))
        )
        pod.update(promoted)
        pod.wait(lambda: settled(runtime_url, overrides(promoted)), 120, "serving v3")
        assert {version_for(key) for key in keys[:10]} == {"v3"}

        # Other bytes than the sha256 given: v3 is never served, and the pod says why.
        corrupt = runner.render(
            service,
            runner.merge(values, declare(f"{url}/corrupt{v1.suffix}", sha, traffic=weights)),
        )
        pod.update(corrupt)
        pod.wait(lambda: settled(runtime_url, overrides(corrupt)), 120, "refusing v3")
        assert states()["v3"]["state"] == "failed"
        assert "sha256" in states()["v3"]["problem"]
        assert {version_for(key) for key in keys} == {"v1"}
        assert len(runtime_events(pod, "version_delivery_failed")) == 1

        rolled_back = runner.render(service, values)  # the value removed: models: {}
        pod.update(rolled_back)
        pod.wait(lambda: settled(runtime_url, overrides(rolled_back)), 120, "serving v1")
        assert "v3" not in states()
        assert {version_for(key) for key in keys[:10]} == {"v1"}
        assert pod["runtime"].process is runtime  # the same container: nothing restarted
    finally:
        pod.delete()
    assert not [e for e in pod.events if "restarting" in e.what or "SIGKILL" in e.what]


def test_a_new_pod_whose_registry_stalls_starts_ready_within_its_startup_budget(
    render: Renders, pod_venv: Path, tmp_path: Path
) -> None:
    """The chart's pod, started with a version declared on a registry that answers nothing:
    it becomes ready serving v1 (v3 listed arriving), is never restarted by its startup probe,
    and serves v3's share once the registry lets the bytes go."""
    service = tmp_path / "service"
    shutil.copytree(render("custom"), service)
    model = answers_of(service)["model_id"]
    models_yaml = yaml.safe_load((service / "models.yaml").read_text())
    v1 = service / models_yaml["models"][model]["versions"]["v1"]["artifact"]
    data = v1.read_bytes()
    registry = HeldServer(data)  # v3: v1's bytes, held until released
    runner = pod_runner(service)
    weights = {"v1": 50, "v3": 50}
    v3 = {"artifact": f"{registry.url}/v3{v1.suffix}", "sha256": hashlib.sha256(data).hexdigest()}
    declared = {"models": {model: {"versions": {"v3": v3}, "traffic": weights}}}
    startup = {"runtime": {"startupSeconds": 120}}  # the fetch's budget: 60 s
    values = runner.merge(runner.merge(runner.free_ports(service), startup), declared)
    runtime_url = f"http://127.0.0.1:{values['runtime']['port']}"
    url_envoy = f"http://127.0.0.1:{values['envoy']['port']}"
    body, _ = canary(service)

    def versions() -> dict[str, str]:
        listing = httpx.get(f"{runtime_url}/models").json()["models"]
        (found,) = [m for m in listing if m["model_id"] == model]
        return {v["version"]: v["state"] for v in found["versions"]}

    def version_for(key: str) -> str:
        answer = httpx.post(f"{url_envoy}/infer", json=body, headers={"x-routing-key": key})
        assert answer.status_code == 200, answer.text
        version: str = answer.json()["version"]
        return version

    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", values)
    pod.start()
    try:
        try:
            pod.wait(lambda: pod.ready, 600, "ready")
            assert registry.connected.is_set()
            assert versions()["v3"] == "arriving"
            assert versions()["v1"] == "serving"
            keys = [f"customer-{n}" for n in range(40)]
            assert {version_for(key) for key in keys} == {"v1"}
            assert [e["version"] for e in runtime_events(pod, "version_delivery_deferred")] == [
                "v3"
            ]
        finally:
            registry.release.set()

        def every_worker_serves_v3() -> bool:
            # v3 serving in one worker means the plan that holds it is out; then every worker
            # is on it once none is behind (each is replaced by one that loaded v3). In this
            # order: a worker may answer "none behind" just before the plan changes.
            if versions()["v3"] != "serving":
                return False
            return httpx.get(f"{runtime_url}/models").json()["plan"]["behind"] == []

        pod.wait(every_worker_serves_v3, 120, "every worker serving v3")
        expected = {key: choose(model, weights, key) for key in keys}
        assert {key: version_for(key) for key in keys} == expected
        assert not runtime_events(pod, "version_delivery_failed")
    finally:
        pod.delete()
        registry.close()
    assert not [e for e in pod.events if "restarting" in e.what or "SIGKILL" in e.what]
