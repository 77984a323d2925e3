"""Services rendered once per session, from this checkout's template, for every artifact check.

Rendering goes through Copier's Python API on a copy of copier.yml and templates/ (the working
tree, not a git commit): what is checked is exactly what the next `lls new` would ship, and
Copier has no dirty-repository warning to give. `wheels/` is created as `lls new` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

from serving_runtime import __version__ as RUNTIME_VERSION
from serving_runtime.testing import stop

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
# The Kubernetes versions every manifest is validated against: the chart's floor (native
# sidecars, Chart.yaml kubeVersion) and a current release.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")

# Answer sets: the defaults, each framework, and the edges of what the questions accept.
ANSWER_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "xgboost": {"framework": "xgboost"},
    "lightgbm": {"framework": "lightgbm"},
    "onnx": {"framework": "onnx"},
    "custom": {"framework": "custom"},
    "one-replica": {
        "framework": "custom",
        "team": "pay",
        "service_name": "fraud-score",
        "model_id": "fraud",
        "namespace": "ml-serving",
        "repository_url": "https://git.example.com/pay-ml/fraud-score",
        "cpu_request": "100m",
        "memory_request": "64Mi",
        "min_replicas": 1,
        "max_replicas": 1,
        "workers": 1,
        "latency_slo_p99_ms": 1,
        "availability_slo": 99.999,
        "package_index_url": "https://pypi.example.com/simple",
        "record_outputs": True,
        "record_sample": 0.25,
        "tracing_endpoint": "http://otel-collector.observability:4318",
    },
    "large": {
        "framework": "onnx",
        "cpu_request": "32",
        "cpu_limit": "64",
        "memory_request": "128Gi",
        "memory_limit": "256Gi",
        "min_replicas": 50,
        "max_replicas": 1000,
        "autoscaling_cpu_target": 100,
        "workers": 64,
        "latency_slo_p99_ms": 60000,
        "availability_slo": 95.0,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Renders:
    """Renders each answer set on first use, then hands out the same directory."""

    def __init__(self, source: Path, parent: Path, runtime_wheel: Path) -> None:
        self._source = source
        self._parent = parent
        self._done: dict[str, Path] = {}
        self.runtime_wheel = runtime_wheel

    def __call__(self, name: str, answers: Mapping[str, Any] | None = None) -> Path:
        """The service of answer set `name`, or of `answers` (the defaults and these) so named."""
        if name not in self._done:
            dest = self._parent / name
            copier.run_copy(
                str(self._source),
                dest,
                data={
                    **(ANSWER_SETS[name] if answers is None else answers),
                    "runtime_version": RUNTIME_VERSION,
                    "runtime_sha256": hashlib.sha256(self.runtime_wheel.read_bytes()).hexdigest(),
                },
                defaults=True,
                unsafe=True,  # the template loads lls.ChecksExtension
                quiet=True,
            )
            (dest / "wheels").mkdir(exist_ok=True)  # lls new puts the runtime wheel there
            shutil.copy2(self.runtime_wheel, dest / "wheels" / self.runtime_wheel.name)
            self._done[name] = dest
        return self._done[name]


@pytest.fixture(scope="session")
def runtime_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime as lls ships it in a service's wheels/ (its hash is in requirements.txt)."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels,
         ROOT / "serving_runtime"],
        check=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("lls_serving_runtime-*.whl")
    return wheel


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory, runtime_wheel: Path) -> Renders:
    source = tmp_path_factory.mktemp("template")
    shutil.copy2(ROOT / "copier.yml", source / "copier.yml")
    shutil.copytree(ROOT / "templates", source / "templates")
    return Renders(source, tmp_path_factory.mktemp("services"), runtime_wheel)


def answers_of(service: Path) -> Mapping[str, Any]:
    """The answers a service was rendered with, as recorded by Copier."""
    recorded: Mapping[str, Any] = yaml.safe_load((service / ".copier-answers.yml").read_text())
    return recorded


@pytest.fixture(params=sorted(ANSWER_SETS))
def service(request: pytest.FixtureRequest, render: Renders) -> Path:
    """A rendered service, once for each answer set."""
    name: str = request.param
    return render(name)


@dataclass(frozen=True)
class Served:
    """The `custom` service running as in its pod: serving-runtime behind the real Envoy."""

    path: Path
    envoy_url: str  # the ingress listener, as the Service sees it
    stats_url: str  # the pod's metrics port: the runtime's /metrics, Envoy's stats
    runtime_url: str  # the runtime itself, 127.0.0.1 only
    runtime_log: Path
    envoy_log: Path


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: process exited\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {seconds}s\n{log.read_text()}")


@pytest.fixture(scope="session")
def served(render: Renders, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Ports are rewritten through the chart's own values; everything else is as rendered."""
    from .chart import envoy_config, one, render_chart

    service = render("custom")
    ports = {name: free_port() for name in ("runtime", "envoy", "stats", "admin")}
    manifests = render_chart(
        service,
        {
            "runtime": {"port": ports["runtime"]},
            "envoy": {
                "port": ports["envoy"],
                "statsPort": ports["stats"],
                "adminPort": ports["admin"],
                "healthCheckIntervalSeconds": 1,
            },
        },
    )
    logs = tmp_path_factory.mktemp("served")
    config = logs / "envoy.yaml"
    config.write_text(envoy_config(manifests))
    # The runtime's environment is the pod's: the chart's ConfigMap, then the image's ENV.
    env = {**os.environ, **one(manifests, "ConfigMap", "-runtime")["data"]}
    env["SERVING_RUNTIME_WORKERS"] = "1"  # two cores in CI; the rest is the answers'
    runtime_log, envoy_log = logs / "runtime.log", logs / "envoy.log"
    with runtime_log.open("wb") as out:
        runtime = subprocess.Popen(
            [VENV_BIN / "serving-runtime", "serve"], cwd=service, env=env, stdout=out, stderr=out
        )
    try:
        _wait_for(f"http://127.0.0.1:{ports['runtime']}/readyz", runtime, runtime_log, 60)
        # Envoy runs with the sidecar's own arguments, but the path of its configuration.
        pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
        sidecar = next(c for c in pod["initContainers"] if c["name"] == "envoy")
        mounted = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}["envoy-config"]
        args = [str(config) if a == f"{mounted}/envoy.yaml" else a for a in sidecar["args"]]
        assert str(config) in args, sidecar["args"]
        with envoy_log.open("wb") as out:
            envoy = subprocess.Popen([VENV_BIN / "envoy", *args], stdout=out, stderr=out)
        try:
            # Ready once Envoy's own health check has seen the runtime's /readyz answer 200.
            envoy_url = f"http://127.0.0.1:{ports['envoy']}"
            _wait_for(f"{envoy_url}/models", envoy, envoy_log, 30)
            yield Served(
                path=service,
                envoy_url=envoy_url,
                stats_url=f"http://127.0.0.1:{ports['stats']}",
                runtime_url=f"http://127.0.0.1:{ports['runtime']}",
                runtime_log=runtime_log,
                envoy_log=envoy_log,
            )
        finally:
            stop(envoy)
    finally:
        stop(runtime)


@pytest.fixture(scope="session")
def observed(render: Renders, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What a real Prometheus saw of a service's pod through its failures (see observed.py)."""
    from .observed import observe

    return observe(render, tmp_path_factory.mktemp("observed"))
