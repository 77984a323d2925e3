"""The Dockerfile: hadolint finds nothing, and its steps match the repository: what it copies
exists, its install step really installs the service, and the command it runs exists and
self-tests the models from the image's layout, away from the source tree."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import VENV_BIN, Renders, answers_of
from .dockerfile import parse


def _hadolint(dockerfile: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [VENV_BIN / "hadolint", "--format", "json", "--failure-threshold", "style", dockerfile],
        capture_output=True,
        text=True,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 0) == (findings == []), done.stderr
    return findings


def test_hadolint_has_nothing_to_say(service: Path) -> None:
    assert _hadolint(service / "Dockerfile") == []


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    codes = {finding["code"] for finding in _hadolint(bad)}
    assert {"DL3007", "DL3013"} <= codes


def test_image_is_slim_pinned_multistage_and_non_root(service: Path) -> None:
    stages = parse(service / "Dockerfile")
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", stage.base)
    final = stages[-1]
    (user,) = final.all("USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)  # numeric: runAsNonRoot can check it
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith("/tmp")  # nothing else is writable in the pod
    assert final.exec_form("ENTRYPOINT") + final.exec_form("CMD") == ["serving-runtime", "serve"]
    # registries link the image to its repository
    (label,) = final.all("LABEL")
    assert shlex.split(label) == [
        f"org.opencontainers.image.source={answers_of(service)['repository_url']}"
    ]


def test_everything_it_copies_is_in_the_repository(service: Path) -> None:
    for stage in parse(service / "Dockerfile"):
        for sources, _, from_stage in stage.copies():
            if from_stage is None:
                for source in sources:
                    assert (service / source).exists(), source


def test_the_locked_dependencies_are_installed_before_the_code_is_copied(service: Path) -> None:
    """A change to the model's code reuses the layer that installed numpy & co.; that layer
    takes only hash-checked wheels from the lock."""
    build, final = parse(service / "Dockerfile")[0], parse(service / "Dockerfile")[-1]
    install, fetch = build.all("RUN")[1:]
    words = install.split()
    assert words[:3] == ["/opt/venv/bin/pip", "install", "--require-hashes"]
    assert "--only-binary :all:" in install
    assert words[-2:] == ["-r", "requirements.txt"]
    steps = build.instructions
    before = steps[: steps.index(("RUN", install))]
    copied = [args for keyword, args in before if keyword == "COPY"]
    assert copied == ["requirements.txt ./", "wheels/ wheels/"]  # nothing of the service's code
    # then the artifacts named by URI, fetched and checked once, into artifacts/.fetched
    assert fetch == "/opt/venv/bin/serving-runtime fetch"
    assert (["/src/artifacts/"], "artifacts/", "build") in final.copies()
    package = str(answers_of(service)["service_name"]).replace("-", "_")
    assert [f"{package}/"] in [sources for sources, _, _ in final.copies()]
    for stage in parse(service / "Dockerfile"):
        assert re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", stage.base), stage.base


def _copy(service: Path, sources: list[str], dest: str, root: Path) -> None:
    """COPY sources dest, with `root` as the image's WORKDIR."""
    for source in sources:
        if (service / source).is_dir():
            shutil.copytree(service / source, root / dest, dirs_exist_ok=True)
        else:
            shutil.copy2(service / source, root / dest if not dest.endswith("/") else root)


def test_the_build_steps_install_and_run_the_service(render: Renders, tmp_path: Path) -> None:
    """The steps of the Dockerfile, played with a venv and directories instead of layers."""
    service = render("custom")
    stages = parse(service / "Dockerfile")
    build, final = stages[0], stages[-1]
    # build stage: a context holding only what it copies (and the runtime wheel lls puts in
    # wheels/), then its RUN steps, with /opt/venv where it is here
    context = tmp_path / "src"
    context.mkdir()
    for sources, dest, _ in build.copies():
        _copy(service, sources, dest, context)
    opt_venv = tmp_path / "opt-venv"
    for step in build.all("RUN"):
        command = step.replace("python -m venv", f"{sys.executable} -m venv")
        done = subprocess.run(
            command.replace("/opt/venv", str(opt_venv)),
            shell=True,
            cwd=context,
            env={**os.environ, **build.env()},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # final stage: only its own copies, its ENV, and the command of ENTRYPOINT + CMD
    (workdir_path,) = final.all("WORKDIR")
    workdir = tmp_path / "srv"
    workdir.mkdir()
    for sources, dest, from_stage in final.copies():
        if from_stage is None:
            _copy(service, sources, dest, workdir)
        elif from_stage == "build" and sources != ["/opt/venv"]:  # what the build fetched
            from_build = [source.removeprefix("/src/") for source in sources]
            _copy(context, from_build, dest, workdir)
    image_env = final.env()
    config_dir, _, config_name = image_env["SERVING_RUNTIME_CONFIG"].rpartition("/")
    assert config_dir == workdir_path
    run_env = {
        **{k: v for k, v in image_env.items() if k not in {"PATH", "HOME"}},
        "PATH": f"{opt_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "SERVING_RUNTIME_CONFIG": str(workdir / config_name),
    }
    entrypoint = final.exec_form("ENTRYPOINT")
    executable = opt_venv / "bin" / entrypoint[0]
    assert executable.exists(), f"{entrypoint[0]} is not installed by the build stage"
    commands = [["check"], ["selftest"], [*final.exec_form("CMD"), "--help"]]
    for arguments in commands:
        done = subprocess.run(
            [executable, *arguments],
            cwd=workdir,
            env=run_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
