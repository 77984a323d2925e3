"""The CI workflow: actionlint and GitHub's workflow schema accept it, and the commands and
paths its steps use exist in the generated repository."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .conftest import VENV_BIN


def _workflow(service: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((service / ".github/workflows/ci.yml").read_text())
    return loaded


def test_actionlint_accepts_the_workflow(service: Path) -> None:
    done = subprocess.run(
        [VENV_BIN / "actionlint", "-no-color", ".github/workflows/ci.yml"],
        cwd=service,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_github_workflow_schema_accepts_it(service: Path) -> None:
    done = subprocess.run(
        [VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows",
         service / ".github/workflows/ci.yml"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_pull_requests_are_checked_and_production_waits_for_staging(service: Path) -> None:
    workflow = _workflow(service)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert jobs["deploy-production"]["environment"] == "production"
    assert "deploy-staging" in jobs["deploy-production"]["needs"]
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert {"test", "chart"} <= set(jobs["image"]["needs"])
    for name in ("deploy-staging", "deploy-production"):
        assert jobs[name]["if"] == "github.event_name == 'push'"


def test_the_commands_and_paths_of_its_steps_exist(service: Path) -> None:
    runs = [
        (step.get("if", ""), step["run"])
        for job in _workflow(service)["jobs"].values()
        for step in job["steps"]
        if "run" in step
    ]
    assert any(run == "python3 dev.py test" for _, run in runs)
    dev = subprocess.run(
        ["python3", "dev.py", "nonsense"], cwd=service, capture_output=True, text=True, check=False
    )
    assert "python3 dev.py test" in dev.stderr  # dev.py documents the job it is asked for
    for condition, run in runs:
        for line in run.splitlines():
            words = shlex.split(line.strip().rstrip("\\"))
            if words[:1] == [".venv/bin/serving-runtime"]:
                sub = words[1]
                if condition.startswith("hashFiles("):
                    # waits for the baseline file its condition names (issue 7 brings both)
                    assert re.fullmatch(r"hashFiles\('[\w/.]+'\) != ''", condition)
                    continue
                done = subprocess.run(
                    [VENV_BIN / "serving-runtime", sub, "--help"],
                    capture_output=True,
                    check=False,
                )
                assert done.returncode == 0, f"serving-runtime has no {sub!r} command"
            if words[:2] == ["helm", "lint"] or words[:1] == ["helm"]:
                assert (service / "chart" / "Chart.yaml").is_file()
    chart_job = _workflow(service)["jobs"]["chart"]["steps"]
    promtool = next(s["run"] for s in chart_job if "promtool" in s.get("run", ""))
    rules_file = re.search(r"/rules/(\S+)", promtool)
    assert rules_file
    assert (service / "observability" / rules_file.group(1)).is_file()
    image = _workflow(service)["jobs"]["image"]["steps"]
    lint = next(s for s in image if str(s.get("uses", "")).startswith("hadolint/"))
    assert (service / lint["with"]["dockerfile"]).is_file()
