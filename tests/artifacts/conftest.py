"""Services rendered once per session, from this checkout's template, for every artifact check.

Rendering goes through Copier's Python API on a copy of copier.yml and templates/ (the working
tree, not a git commit): what is checked is exactly what the next `lls new` would ship, and
Copier has no dirty-repository warning to give. `wheels/` is created as `lls new` does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import copier
import pytest
import yaml

from serving_runtime import __version__ as RUNTIME_VERSION

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


@functools.cache
def pod_runner(service: Path) -> ModuleType:
    """The pod runner a service ships (scripts/pod.py), loaded from that service."""
    path = service / "scripts" / "pod.py"
    spec = importlib.util.spec_from_file_location(f"pod_runner_{service.name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pod_venv(render: Renders, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv every answer set's pod runs in: what each service's pyproject asks for, with
    the runtime of this checkout (the one the template pins) in place of the pinned wheel."""
    requirements: set[str] = set()
    extras: set[str] = set()
    for name in ANSWER_SETS:
        project = tomllib.loads((render(name) / "pyproject.toml").read_text())["project"]
        for requirement in project["dependencies"]:
            if requirement.startswith("lls-serving-runtime"):
                wanted = requirement.partition("[")[2].partition("]")[0]
                extras.update(e for e in wanted.split(",") if e)
            else:
                requirements.add(requirement)
    path = tmp_path_factory.mktemp("pod-venv")
    venv.create(path, with_pip=True)
    runtime = f"{ROOT / 'serving_runtime'}[{','.join(sorted(extras))}]"
    pip = [path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, runtime, *sorted(requirements)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return path


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
    # runs a command in the runtime container, as `kubectl exec` would (its env, its folder)
    kubectl_exec: Callable[[list[str]], subprocess.CompletedProcess[str]]


def _exec(container: Any, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        container.resolve(command),
        env=container.env,
        cwd=container.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def served(
    render: Renders, pod_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The `custom` service's pod, run by its own pod runner with every port moved."""
    service = render("custom")
    runner = pod_runner(service)
    values = runner.free_ports(service)
    pod = runner.service_pod(service, pod_venv, tmp_path_factory.mktemp("served"), values)
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 120, "ready")
        yield Served(
            path=service,
            envoy_url=f"http://127.0.0.1:{values['envoy']['port']}",
            stats_url=f"http://127.0.0.1:{values['envoy']['statsPort']}",
            runtime_url=f"http://127.0.0.1:{values['runtime']['port']}",
            runtime_log=pod.root / "runtime.log",
            envoy_log=pod.root / "envoy.log",
            kubectl_exec=partial(_exec, pod["runtime"]),
        )
    finally:
        pod.delete()


@pytest.fixture(scope="session")
def observed(render: Renders, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What a real Prometheus saw of a service's pod through its failures (see observed.py)."""
    from .observed import observe

    return observe(render, tmp_path_factory.mktemp("observed"))
