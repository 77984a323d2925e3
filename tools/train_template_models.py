"""Retrain the example model the template ships for each framework, and its canaries.

    .venv/bin/python tools/train_template_models.py [--framework NAME]... [--task NAME]...
        [--baselines-only]

Renders the template for each framework and task, runs the rendered `scripts/train_model.py`
in a venv with that framework's pinned versions (.cache/template-models/<framework>), and
copies the artifact and test_data.json back into templates/service under names that only render
for that framework and task. Then it runs the serving runtime's `drift --update` there and
copies the baseline of the prediction-drift check (drift/<model_id>/baseline.jsonl) back the
same way. Run it after changing a training script, a framework pin or the drift dataset, and
commit the result; `--baselines-only` keeps the shipped artifacts and rewrites the baselines alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

import copier

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "templates" / "service"
FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "onnx", "custom")
TASKS = ("binary", "multiclass", "regression")
ANSWERS = {"team": "demo", "runtime_version": "0.1.0", "runtime_sha256": "0" * 64}


def conditional(framework: str, task: str, name: str) -> str:
    """The template's name of a file that only the service of `framework` and `task` has."""
    return f"{{% if framework == '{framework}' and task == '{task}' %}}{name}{{% endif %}}"


def requirements(service: Path) -> list[str]:
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    return [r for r in wanted if not r.startswith("lls-serving-runtime")]


def python_for(framework: str, service: Path) -> Path:
    env = ROOT / ".cache" / "template-models" / framework
    python = env / "bin" / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements(service)], check=True)
    return python


def retrain(framework: str, task: str, template: Path, *, train: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = Path(tmp) / "service"
        copier.run_copy(
            str(template),
            service,
            data={**ANSWERS, "framework": framework, "task": task},
            defaults=True,
            quiet=True,
            unsafe=True,
        )
        package = service / "demo_model"
        test_data = package / "test_data.json"
        if not test_data.exists():
            test_data.write_text("[]\n")
        (artifact,) = (service / "models.yaml").read_text().split("artifact: ")[1].split()[:1]
        artifact = service / artifact
        python = python_for(framework, service)
        # The runtime of the working tree (train_model.py asks it for the canaries' outputs).
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"{ROOT / 'serving_runtime'}[dataframe]"], check=True)
        if train:
            artifact.unlink(missing_ok=True)
            subprocess.run([str(python), "-m", "scripts.train_model"], check=True, cwd=service)
            shutil.copy(
                artifact, SERVICE / "artifacts" / conditional(framework, task, artifact.name)
            )
            package_dir = SERVICE / "{{ package_name }}"
            shutil.copy(test_data, package_dir / conditional(framework, task, "test_data.json"))
            size = artifact.stat().st_size
            print(f"{framework} {task}: {artifact.name} ({size} bytes), test_data.json")
        drift = [str(python), "-m", "serving_runtime", "drift", "--update"]
        subprocess.run(drift, check=True, cwd=service)
        (baseline,) = (service / "drift").glob("*/baseline.jsonl")
        shutil.copy(
            baseline,
            SERVICE / "drift" / "{{ model_id }}" / conditional(framework, task, baseline.name),
        )
        print(f"{framework} {task}: drift baseline ({len(baseline.read_text().splitlines())} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS)
    parser.add_argument("--task", action="append", choices=TASKS)
    parser.add_argument("--baselines-only", action="store_true", help="keep the artifacts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # A plain copy (not a git repository), so that Copier renders the working tree as is.
        template = Path(tmp) / "template"
        template.mkdir()
        shutil.copy(ROOT / "copier.yml", template)
        shutil.copytree(ROOT / "templates", template / "templates")
        for framework in args.framework or FRAMEWORKS:
            for task in args.task or TASKS:
                retrain(framework, task, template, train=not args.baselines_only)


if __name__ == "__main__":
    sys.exit(main())
