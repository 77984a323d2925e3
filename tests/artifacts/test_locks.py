"""The lock files a new service starts with (templates/locks/, made by tools/lock.py) hold what
the service's pyproject.toml and the runtime it pins ask for, with a hash for every package,
so that the image, CI and dev.py install with --require-hashes. A dependency added to the
runtime or the template without rerunning tools/lock.py fails here, saying so."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT, answers_of

LOCKS = ROOT / "templates" / "locks"
RERUN = "run .venv/bin/python tools/lock.py and commit templates/locks/"
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\{\{ \w+ \}\}|[^\s;]+)")
# The image's platform: markers are evaluated for it.
IMAGE = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
         "python_full_version": "3.11.14", "platform_machine": "x86_64"}  # fmt: skip


def _blocks(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, its hashes), for the lock's packages whose markers hold in the image."""
    found: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            _, _, marker = line.removesuffix(" \\").partition(" ; ")
            name = ""
            if not marker or Marker(marker).evaluate(IMAGE):
                name = canonicalize_name(match.group(1))
                found[name] = (match.group(2), [])
        elif name and line.strip().startswith("--hash="):
            found[name][1].append(line.strip().removesuffix(" \\"))
    return found


def _runtime_requirements(tracing: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "serving_runtime" / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + (
        project["optional-dependencies"]["tracing"] if tracing else []
    )
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(
    "stem", sorted(p.name.removesuffix(".txt") for p in LOCKS.glob("*.txt") if "-dev" not in p.name)
)
def test_each_lock_holds_the_runtime_dependencies_with_hashes(stem: str) -> None:
    serving = _blocks(LOCKS / f"{stem}.txt")
    dev = _blocks(LOCKS / f"{stem}-dev.txt")
    assert (LOCKS / f"{stem}-dev.txt").read_text().count("-r requirements.txt\n") == 1
    assert not set(serving) & set(dev), "the dev lock repeats the image's packages"
    for name, (version, hashes) in {**serving, **dev}.items():
        assert hashes, f"{stem}: {name}=={version} has no hash"
    assert serving["lls-serving-runtime"] == (
        "{{ runtime_version }}",
        ["--hash=sha256:{{ runtime_sha256 }}"],
    )
    for requirement in _runtime_requirements(tracing=stem.endswith("-tracing")):
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE):
            continue
        pinned = serving.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{stem}: the runtime needs {requirement}, unlocked: {RERUN}"
        assert requirement.specifier.contains(pinned[0], prereleases=True), (
            f"{stem}: the runtime needs {requirement}, locked at {pinned[0]}: {RERUN}"
        )


def test_the_service_locks_hold_its_pyproject(service: Path) -> None:
    """The service's own check (tests/test_lock.py), as its CI runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_lock.py"],
        cwd=service, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    runtime = f"lls-serving-runtime=={answers_of(service)['runtime_version']} \\\n"
    assert runtime in (service / "requirements.txt").read_text()


def test_the_service_check_sees_a_dependency_added_without_a_new_lock(
    service: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "service"
    for name in (
        "pyproject.toml",
        "requirements.txt",
        "requirements-dev.txt",
        "requirements-pod.txt",
        "tests/test_lock.py",
    ):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text((service / name).read_text())
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [\n", 'dependencies = [\n    "polars>=1",\n', 1
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_lock.py"],
        cwd=copy, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "polars>=1 is not locked" in done.stdout
    assert "run python3 dev.py lock" in done.stdout
