"""The generated workflow's `lls check` job, run as GitHub's runner would run its steps: lls
installed from what LLS_PACKAGE says, then `lls check` in the checkout, exiting as documented
(0 current, 3 behind) with annotations; a warning unless LLS_CHECK_REQUIRED is "true"."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scaffolder.conftest import Built, Lls

from .conftest import NEW, OLD, lls_env

pytestmark = pytest.mark.slow


def _job(service: Path) -> dict[str, Any]:
    workflow = yaml.safe_load((service / ".github" / "workflows" / "ci.yml").read_text())
    job: dict[str, Any] = workflow["jobs"]["template"]
    return job


def _run_step(
    step: dict[str, Any], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    step_env = {
        k: v.replace("${{ vars.LLS_PACKAGE }}", env["LLS_PACKAGE"])
        for k, v in step.get("env", {}).items()
    }
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=cwd, env={**env, **step_env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_check_job_exits_as_documented_in_a_service_ci(
    offline_lls: Lls, built: Built, tmp_path: Path
) -> None:
    for version in (OLD, NEW):
        made = offline_lls("new", version, "--defaults", "-q", "--version", version,
                           cwd=tmp_path, env=lls_env())  # fmt: skip
        assert made.returncode == 0, made.output
    current, behind = tmp_path / NEW, tmp_path / OLD
    job = _job(current)
    assert job["if"] == "vars.LLS_PACKAGE != ''"
    assert job["continue-on-error"] == "${{ vars.LLS_CHECK_REQUIRED != 'true' }}"
    assert job["permissions"] == {"contents": "read"}
    install, check = (step for step in job["steps"] if "run" in step)
    assert check["run"].strip() == "lls check"

    runner = tmp_path / "runner"  # what actions/setup-python leaves: a python3 on PATH
    venv.create(runner, with_pip=True)
    env = {
        **lls_env(),
        "PATH": f"{runner / 'bin'}{os.pathsep}{lls_env()['PATH']}",
        "GITHUB_ACTIONS": "true",
        "LLS_PACKAGE": str(built.lls_wheel),
    }
    installed = _run_step(install, current, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (runner / "bin" / "lls").is_file()

    ok = _run_step(check, current, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.endswith("Current.\n")
    # The same step in a checkout a newer release has left behind (as v0.9.0 will be):
    late = _run_step(check, behind, env)
    assert late.returncode == 3, late.stdout + late.stderr
    warning = f"::warning title=lls check::demo-model is 8 template release(s) behind ({OLD} ->"
    assert warning in late.stdout
