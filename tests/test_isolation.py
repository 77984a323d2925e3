"""The runtime is installed alone in every service: it must not drag the scaffolder in."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires

import pytest

SCAFFOLDER_ONLY = {"copier", "typer", "questionary", "jinja2", "gitpython", "ruamel-yaml", "lls"}


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(distribution: str) -> set[str]:
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(_name(requirement))
    return seen


def test_installing_the_runtime_pulls_in_nothing_of_the_scaffolder() -> None:
    closure = _closure("lls-serving-runtime")
    assert {"gunicorn", "orjson", "prometheus-client", "pydantic", "pyyaml"} <= closure
    assert closure.isdisjoint(SCAFFOLDER_ONLY), closure & SCAFFOLDER_ONLY


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("serving_runtime", ["copier", "typer", "questionary", "jinja2", "git", "lls"]),
        ("serving_runtime._server", ["copier", "typer", "questionary", "jinja2", "git", "lls"]),
        ("lls", ["serving_runtime"]),
    ],
)
def test_the_two_packages_never_import_each_other(package: str, forbidden: list[str]) -> None:
    code = f"import sys, {package}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
