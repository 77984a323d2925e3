"""Shared by the upgrade tests: lls installed away from this repository, and services made by it.

lls is installed from a copy of its wheel into a fresh venv, and run with an environment
that names nothing in this repository, from temporary directories: it works from the
template history and runtime wheels inside the wheel, as it would on a team's machine.
One service is generated at v0.1.0 and given the edits a team makes; each test works on its
own clone of it, and the full upgrade (with the service's own tests after it) runs once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scaffolder.conftest import (
    ROOT,
    Built,
    Done,
    Lls,
    build_once,
    run,
)

OLD, NEW = "v0.1.0", "v0.9.0"
OLD_RUNTIME, NEW_RUNTIME = "0.1.0", "0.9.0"
SERVICE = "demo-model"
BRANCH = f"lls-upgrade/{SERVICE}/{NEW}"
PACKAGE = "demo_model"
# The edits a team makes to its service; each is checked after the upgrade, word for word.
MODEL_EDIT = "        z = max(-30.0, min(30.0, z))  # team: no overflow on extreme rows\n"
EXTRA_CANARY = "    [1.5, 0.5, -0.5, 1.0],  # team: a row from the incident of March\n"
README_EDIT = "## Team notes\n\nOwned by the demo squad; ask in #demo before changing the SLO.\n\n"
NEW_FILE = ("docs/features.md", "# Features\n\nf0 to f3 come from the demo feature store.\n")
SELFTEST_EDIT = "\n\ndef test_team_canary_count() -> None:\n    assert len(MODEL.test_data) == 4\n"
DASHBOARD_EDIT = ('  "refresh": "30s",\n', '  "refresh": "1m",\n')


def lls_env() -> dict[str, str]:
    """The test environment without anything that points into this repository."""
    env = {k: v for k, v in os.environ.items() if str(ROOT) not in v}
    # dev.py puts .venv/bin first on PATH: drop that entry, keep the rest (git, python3).
    env["PATH"] = os.pathsep.join(
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if str(ROOT) not in entry
    )
    return env


@pytest.fixture(scope="session")
def built() -> Built:
    """The wheels, from the session's one build (shared with tests/scaffolder)."""
    return build_once()


@pytest.fixture(scope="session")
def offline_lls(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Lls:
    """lls from a copy of its wheel, in a fresh venv outside this repository."""
    place = tmp_path_factory.mktemp("installed")
    wheel = Path(shutil.copy2(built.lls_wheel, place / built.lls_wheel.name))
    venv.create(place / "venv", with_pip=True)
    done = run([place / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheel], place)
    assert done.returncode == 0, done.output
    return Lls(place / "venv" / "bin" / "lls")


def upgrade(lls: Lls, service: Path, *args: str) -> Done:
    return lls("upgrade", *args, cwd=service, env=lls_env())


def git(repo: Path, *args: str) -> str:
    done = run(["git", *args], cwd=repo)
    assert done.returncode == 0, done.output
    return done.stdout


def make_team_edits(service: Path) -> None:
    """Model code, an extra canary (test row) the team's way, chart values, README, a new file,
    the dashboard's refresh."""
    model = service / PACKAGE / "model.py"
    text = model.read_text()
    anchor = "        z = self.bias + sum(w * x for w, x in zip(self.weights, row, strict=True))\n"
    assert anchor in text
    model.write_text(text.replace(anchor, anchor + MODEL_EDIT))

    train = service / "scripts" / "train_model.py"
    text = train.read_text()
    anchor = "    [0.0, 0.0, 0.0, 0.0],\n"
    train.write_text(text.replace(anchor, anchor + EXTRA_CANARY))
    # The custom model trains with the standard library: test_data.json gets the new row.
    done = run([sys.executable, "-m", "scripts.train_model"], cwd=service)
    assert done.returncode == 0, done.output

    values = service / "chart" / "values.yaml"
    values.write_text(values.read_text().replace("tmpSizeLimit: 256Mi", "tmpSizeLimit: 1Gi"))

    readme = service / "README.md"
    readme.write_text(
        readme.read_text().replace("## What is where", README_EDIT + "## What is where")
    )

    (service / NEW_FILE[0]).write_text(NEW_FILE[1])

    dashboard = service / "observability" / "dashboard.json"
    assert DASHBOARD_EDIT[0] in dashboard.read_text()
    dashboard.write_text(dashboard.read_text().replace(*DASHBOARD_EDIT))

    selftests = service / "tests" / "test_selftests.py"
    text = selftests.read_text().replace(
        "from serving_runtime.testing import check_selftests\n",
        f"from serving_runtime.testing import check_selftests\n\nfrom {PACKAGE}.model import "
        "DemoModel as MODEL\n",
    )
    selftests.write_text(text + SELFTEST_EDIT)
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Team edits: clamp, a canary, tmp size, notes")


@dataclass(frozen=True)
class Origin:
    """The team's service at v0.1.0, with their edits committed; tests work on clones of it."""

    path: Path
    generated: Done

    def clone(self, into: Path) -> Path:
        git(into.parent, "clone", "--quiet", str(self.path), str(into))
        return into


@pytest.fixture(scope="session")
def origin(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> Origin:
    parent = tmp_path_factory.mktemp("origin")
    generated = offline_lls(
        "new", "--defaults", "--version", OLD, "--data", "framework=custom",
        cwd=parent, env=lls_env(),
    )  # fmt: skip
    assert generated.returncode == 0, generated.output
    make_team_edits(parent / SERVICE)
    return Origin(parent / SERVICE, generated)


@dataclass(frozen=True)
class Upgraded:
    """A clone of the origin after `lls upgrade --defaults`, then its own `dev.py test`."""

    path: Path
    upgraded: Done
    tested: Done


@pytest.fixture(scope="session")
def upgraded(
    offline_lls: Lls, origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Upgraded:
    service = origin.clone(tmp_path_factory.mktemp("upgraded") / SERVICE)
    done = upgrade(offline_lls, service, "--defaults")
    if done.returncode != 0:
        return Upgraded(service, done, done)
    tested = run([sys.executable, "dev.py", "test"], cwd=service)
    return Upgraded(service, done, tested)


def snapshot(repo: Path) -> dict[str, str]:
    """Everything a command could change: refs, HEAD, status, and every file's content."""
    state = {
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": git(repo, "rev-parse", "--symbolic-full-name", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored"),
        "stash": run(["git", "stash", "list"], cwd=repo).stdout,
    }
    for file in sorted(repo.rglob("*")):
        if file.is_file() and ".git" not in file.relative_to(repo).parts[:1]:
            state[file.relative_to(repo).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return state
