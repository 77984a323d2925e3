"""The lock files hold what pyproject.toml asks for: a dependency changed there without
`python3 dev.py lock` fails here, with that advice, rather than in the image build or in
production."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _unlocked(requirements: list[str], pins: dict[str, str]) -> list[str]:
    problems = []
    for line in requirements:
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{line} is not locked")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{line} is locked at {pinned}")
    return problems


def test_the_locks_hold_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = _pins("requirements.txt")
    problems = _unlocked(project["dependencies"], serving)
    dev = {**serving, **_pins("requirements-dev.txt")}
    problems += _unlocked(project["optional-dependencies"]["dev"], dev)
    problems += _unlocked(project["optional-dependencies"]["pod"], _pins("requirements-pod.txt"))
    assert not problems, "; ".join(problems) + ": run python3 dev.py lock and commit the locks"
