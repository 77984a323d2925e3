"""Retrain the example model the template ships for each framework, and its canaries.

    .venv/bin/python tools/train_template_models.py [--framework NAME]... [--baselines-only]

Renders the template for each framework, runs the rendered `scripts/train_model.py` in a venv
with that framework's pinned versions (.cache/template-models/<framework>), and copies the
artifact and test_data.json back into templates/service under names that only render for that
framework. Then it runs the serving runtime's `drift --update` there and copies the baseline of
the prediction-drift check (drift/<model_id>/baseline.jsonl) back the same way. Run it after
changing a training script, a framework pin or the drift dataset, and commit the result;
`--baselines-only` keeps the shipped artifacts and rewrites the baselines alone.
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
ANSWERS = {"team": "demo", "runtime_version": "0.1.0", "runtime_sha256": "0" * 64}


def conditional(framework: str, name: str) -> str:
    return f"{{% if framework == '{framework}' %}}{name}{{% endif %}}"


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


def retrain(framework: str, template: Path, *, train: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = Path(tmp) / "service"
        copier.run_copy(
            str(template),
            service,
            data={**ANSWERS, "framework": framework},
            defaults=True,
            quiet=True,
            unsafe=True,
        )
        package = service / "demo_model"
        test_data = package / "test_data.json"
        if not test_data.exists():
            test_data.write_text("[]\n")
        artifact = next(p for p in (service / "artifacts").iterdir() if p.name != ".gitkeep")
        python = python_for(framework, service)
        if train:
            artifact.unlink()
            subprocess.run([str(python), "-m", "scripts.train_model"], check=True, cwd=service)
            shutil.copy(artifact, SERVICE / "artifacts" / conditional(framework, artifact.name))
            package_dir = SERVICE / "{{ package_name }}"
            shutil.copy(test_data, package_dir / conditional(framework, "test_data.json"))
            print(f"{framework}: {artifact.name} ({artifact.stat().st_size} bytes), test_data.json")
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, str(ROOT / "serving_runtime")], check=True)
        drift = [str(python), "-m", "serving_runtime", "drift", "--update"]
        subprocess.run(drift, check=True, cwd=service)
        (baseline,) = (service / "drift").glob("*/baseline.jsonl")
        shutil.copy(
            baseline, SERVICE / "drift" / "{{ model_id }}" / conditional(framework, baseline.name)
        )
        print(f"{framework}: drift baseline ({len(baseline.read_text().splitlines())} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS)
    parser.add_argument("--baselines-only", action="store_true", help="keep the artifacts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # A plain copy (not a git repository), so that Copier renders the working tree as is.
        template = Path(tmp) / "template"
        template.mkdir()
        shutil.copy(ROOT / "copier.yml", template)
        shutil.copytree(ROOT / "templates", template / "templates")
        for framework in args.framework or FRAMEWORKS:
            retrain(framework, template, train=not args.baselines_only)


if __name__ == "__main__":
    sys.exit(main())
