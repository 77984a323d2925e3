"""End to end, as a user: install lls, `lls new`, then the service's own set-up, tests, server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from lls import InvalidAnswer, check_answer
from lls._questions import load_questions
from serving_runtime.testing import free_port

from .conftest import FRAMEWORKS, LATEST, ROOT, Built, Lls, Service, run, wait_ready

pytestmark = pytest.mark.slow
each_framework = pytest.mark.parametrize("service", FRAMEWORKS, indirect=True)
default_service = pytest.mark.parametrize("service", ["sklearn"], indirect=True)


@each_framework
def test_the_service_passes_its_own_test_command(service: Service) -> None:
    assert service.generated.returncode == 0, service.generated.output
    assert service.tested.returncode == 0, service.tested.output
    tests = sum(f.read_text().count("\ndef test_") for f in (service.path / "tests").glob("*.py"))
    assert re.search(rf"\b{tests} passed\b", service.tested.stdout), service.tested.stdout


@each_framework
def test_ruff_format_leaves_the_repository_clean(service: Service) -> None:
    assert service.tested.returncode == 0, service.tested.output
    assert run([service.bin / "ruff", "check", "."], cwd=service.path).returncode == 0
    run([service.bin / "ruff", "format", "."], cwd=service.path)
    status = run(["git", "status", "--porcelain"], cwd=service.path)
    assert status.stdout == ""


@default_service
def test_the_repository_is_committed_with_its_answers_and_runtime(
    service: Service, built: Built
) -> None:
    log = run(["git", "log", "--format=%an <%ae>|%s"], cwd=service.path).stdout.splitlines()
    message = f"Generate demo-model from the lls service template {LATEST}"
    assert log == [f"Test Author <author@example.com>|{message}"]
    answers = yaml.safe_load((service.path / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == "https://git.example.invalid/lls/service-template.git"
    assert answers["_commit"] == LATEST
    assert answers["runtime_version"] == built.runtime_version
    assert answers["framework"] == "sklearn"
    assert (service.path / "wheels" / built.runtime_wheel.name).read_bytes() == (
        built.runtime_wheel.read_bytes()
    )
    assert answers["task"] == "binary"
    # the scikit-learn Pipeline takes a data frame: the runtime's dataframe extra (pandas)
    pin = f'"lls-serving-runtime[dataframe]=={built.runtime_version}"'
    assert pin in (service.path / "pyproject.toml").read_text()
    assert "* @example/demo" in (service.path / ".github" / "CODEOWNERS").read_text()


def _readme_request(readme: str) -> dict[str, Any]:
    """The JSON body of the README's example curl."""
    match = re.search(r"curl .*?-d '(\{.*?\})'", readme, re.DOTALL)
    assert match, readme
    body: dict[str, Any] = json.loads(match.group(1))
    return body


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


@each_framework
def test_no_service_name_shadows_what_a_service_installs(service: Service) -> None:
    assert service.tested.returncode == 0, service.tested.output
    listed = run(
        [service.bin / "python", "-c",
         "import importlib.metadata as m; print(*m.packages_distributions())"],
        cwd=service.path,
    )  # fmt: skip
    own = {"demo_model"}
    installed = {name for name in listed.stdout.split() if not name.startswith("_")} - own
    assert {"serving_runtime", "pytest", "numpy"} & installed
    for package in sorted(installed):
        with pytest.raises(InvalidAnswer, match="shadows"):
            check_answer("service_name", package.replace("_", "-"), {})


@default_service
def test_the_readme_serve_command_answers_the_readme_curl(service: Service) -> None:
    readme = (service.path / "README.md").read_text()
    commands = re.findall(r"^(python3 dev\.py \w+)", readme, re.MULTILINE)
    assert commands[:2] == ["python3 dev.py serve", "python3 dev.py test"]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "dev.py", "serve", "--bind", f"127.0.0.1:{port}"], cwd=service.path
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server)
        answer = _post(f"http://127.0.0.1:{port}/infer", _readme_request(readme))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    canary = json.loads((service.path / "demo_model" / "test_data.json").read_text())[0]
    assert answer["model_id"] == "demo-model"
    assert answer["version"] == "v1"
    assert answer["output"] == pytest.approx(canary["expected"], abs=1e-6)


@default_service
def test_dev_py_pod_serves_the_readme_curl_through_envoy_and_stops_as_the_kubelet_would(
    service: Service,
) -> None:
    readme = (service.path / "README.md").read_text()
    assert re.search(r"^python3 dev\.py pod\b", readme, re.MULTILINE), readme
    said: list[str] = []
    with subprocess.Popen(
        [sys.executable, "dev.py", "pod", "--free-ports"],
        cwd=service.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as pod:
        assert pod.stderr is not None
        try:
            for line in pod.stderr:  # its events, until the pod is ready
                said.append(line)
                if line.startswith("http://") and "is the pod's Envoy" in line:
                    url = line.split()[0]
                    break
            else:
                raise AssertionError("".join(said))
            request = urllib.request.Request(
                f"{url}/infer",
                json.dumps(_readme_request(readme)).encode(),
                {"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.headers["server"] == "envoy"
                answer = json.load(response)
            pod.send_signal(signal.SIGINT)  # Ctrl-C
            said += pod.stderr.readlines()
            assert pod.wait(timeout=120) == 0, "".join(said)
        finally:
            if pod.poll() is None:
                pod.kill()
    assert answer["version"] == "v1"
    events = [m[1] for m in (re.match(r" *[0-9.]+s (\w+: .*)", x) for x in said) if m]
    stops = [e for e in events if e.endswith("SIGTERM") or ": exited" in e]
    assert stops == [
        "runtime: SIGTERM",
        "runtime: exited with status 0",
        "envoy: SIGTERM",
        "envoy: exited with status 0",
    ], "".join(said)


def test_version_names_lls_template_and_runtime(lls: Lls, built: Built, tmp_path: Path) -> None:
    done = lls("--version", cwd=tmp_path)
    assert done.returncode == 0, done.output
    expected = f"lls 0.1.0 (template {LATEST}, serving runtime {built.runtime_version})"
    assert done.stdout.strip() == expected


def test_help_reads_like_documentation(lls: Lls, tmp_path: Path) -> None:
    top = lls("--help", cwd=tmp_path)
    assert top.returncode == 0
    assert "Scaffold" in top.stdout
    assert "new" in top.stdout
    new = lls("new", "--help", cwd=tmp_path)
    assert new.returncode == 0
    for words in ("--defaults", "--data", "--data-file", "--force", "Examples", "KEY=VALUE"):
        assert words in new.stdout
    listed = new.stdout[new.stdout.index(f"Questions of template {LATEST}") :]
    set_by_lls = {"runtime_version", "runtime_sha256"}
    asked = [q for q in load_questions((ROOT / "copier.yml").read_text()) if not q.computed]
    for question in asked:
        if question.name not in set_by_lls:
            assert re.search(rf"^  {question.name}\b", listed, re.MULTILINE), question.name
    text = " ".join(listed.split())
    assert "one of sklearn, xgboost, lightgbm, onnx, custom" in text
    assert "Set by lls, never given: runtime_version, runtime_sha256" in text
    assert "computed from the answers:" in text
    assert "package_name" in text.split("computed from the answers:")[1]


def test_without_a_git_identity_a_fallback_author_is_used_and_said(
    lls: Lls, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    identity = ("GIT_AUTHOR", "GIT_COMMITTER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(identity)}
    env.update({"HOME": str(home), "GIT_CONFIG_GLOBAL": str(home / ".gitconfig")})
    done = lls("new", "svc", "--defaults", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.output
    assert "No git identity is configured" in done.stdout
    author = run(["git", "log", "--format=%an <%ae>"], cwd=tmp_path / "svc").stdout.strip()
    assert author == "lls <lls@localhost>"


def test_the_examples_in_the_help_work(lls: Lls, tmp_path: Path) -> None:
    shown = lls("new", "--help", cwd=tmp_path).stdout
    examples = [
        line.split("#")[0].split()
        for line in shown.splitlines()
        if line.strip().startswith("lls new ")
    ]
    non_interactive = [argv for argv in examples if "--defaults" in argv]
    assert len(non_interactive) >= 2, shown  # the interactive one is test_interactive's
    for number, argv in enumerate(non_interactive):
        cwd = tmp_path / f"example-{number}"
        cwd.mkdir()
        (cwd / "answers.yml").write_text("team: risk\nframework: custom\n")
        done = lls(*argv[1:], cwd=cwd)
        assert done.returncode == 0, (argv, done.output)
        assert (Path(done.stdout.split()[3]) / "models.yaml").is_file(), done.stdout
