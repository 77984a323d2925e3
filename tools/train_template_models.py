"""Retrain the example model the template ships for each framework, and its canaries.

    .venv/bin/python tools/train_template_models.py [--framework NAME]...

Renders the template for each framework, runs the rendered `scripts/train_model.py` in a venv
with that framework's pinned versions (.cache/template-models/<framework>), and copies the
artifact and test_data.json back into templates/service under names that only render for that
framework. Run it after changing a training script or a framework pin, and commit the result.
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
ANSWERS = {"team": "demo", "runtime_version": "0.1.0"}


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


def retrain(framework: str, template: Path) -> None:
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
        artifact.unlink()
        python = python_for(framework, service)
        subprocess.run([str(python), "-m", "scripts.train_model"], check=True, cwd=service)
        shutil.copy(artifact, SERVICE / "artifacts" / conditional(framework, artifact.name))
        package_dir = SERVICE / "{{ package_name }}"
        shutil.copy(test_data, package_dir / conditional(framework, "test_data.json"))
        print(f"{framework}: {artifact.name} ({artifact.stat().st_size} bytes), test_data.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", action="append", choices=FRAMEWORKS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # A plain copy (not a git repository), so that Copier renders the working tree as is.
        template = Path(tmp) / "template"
        template.mkdir()
        shutil.copy(ROOT / "copier.yml", template)
        shutil.copytree(ROOT / "templates", template / "templates")
        for framework in args.framework or FRAMEWORKS:
            retrain(framework, template)


if __name__ == "__main__":
    sys.exit(main())
