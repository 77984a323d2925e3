"""`lls check` and `lls diff`: how far a service is from the newest release, and how far it
has moved from its own.

Both compare the service with a fresh render of the release it records, with its recorded
answers: `diff` shows every file the team changed, as a patch; `check` looks only at the files
the platform owns (the chart's templates, the CI workflow, the Dockerfile, the alert rules...),
where a team's change is drift that the next upgrade has to fight.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import _copier, _service
from ._git import git
from ._shipped import Shipped, shipped

# The files a service gets from the platform and should not need to change; the rest (the
# model package, models.yaml, tests, values.yaml, the README...) is the team's.
PLATFORM_OWNED = (
    ".copier-answers.yml",
    ".dockerignore",
    ".github/workflows/*",
    "Dockerfile",
    "chart/.helmignore",
    "chart/Chart.yaml",
    "chart/files/*",
    "chart/templates/*",
    "chart/values.schema.json",
    "dev.py",
    "docs/runbook.md",
    "observability/*",
    "wheels/*",
)
_PIN = re.compile(r"lls-serving-runtime(?:\[[^\]]*\])?\s*==\s*([^\"'\s,;]+)")


@dataclass(frozen=True)
class Status:
    """Where a service stands: its release and runtime against the newest this lls carries."""

    path: Path
    service_name: str
    team: str
    template_version: str
    template_date: str
    newest_version: str
    newest_date: str
    releases_behind: int
    days_behind: int  # from the recorded release's date to the newest release's
    runtime_version: str  # recorded with the answers
    newest_runtime_version: str

    @property
    def current(self) -> bool:
        """No newer release exists."""
        return self.releases_behind == 0


@dataclass(frozen=True)
class Drift:
    """A file the platform owns that differs from what the recorded release renders."""

    path: str
    how: str  # "changed" or "deleted"


@dataclass(frozen=True)
class Check:
    """`lls check`: the status, the runtime pin as pyproject.toml states it, and the drift."""

    status: Status
    pinned_runtime: str | None  # what pyproject.toml pins (None: no pin found)
    drifted: tuple[Drift, ...]


@dataclass(frozen=True)
class Divergence:
    """`lls diff`: every file the team changed from its recorded release, and the patch."""

    path: Path
    template_version: str
    files: tuple[tuple[str, str], ...]  # (A|M|D|R..., path or "old -> new")
    patch: str


def status(service: _service.Service, package: Shipped) -> Status:
    """The service's release and runtime against the newest release `package` carries."""
    newest = package.latest
    return Status(
        path=service.path,
        service_name=service.name,
        team=service.team,
        template_version=service.release.tag,
        template_date=service.release.date,
        newest_version=newest.tag,
        newest_date=newest.date,
        releases_behind=_service.releases_behind(package, service.release),
        days_behind=max(0, (_date(newest.date) - _date(service.release.date)).days),
        runtime_version=service.runtime_version,
        newest_runtime_version=newest.runtime_version,
    )


def check(path: Path, *, drift: bool = True, package: Shipped | None = None) -> Check:
    """Check the service at `path` (or holding it); with `drift`, render its release to compare."""
    package = package or shipped()
    service = _service.load(package, path)
    drifted: tuple[Drift, ...] = ()
    if drift:
        files = _compare(package, service)[0]
        drifted = tuple(
            Drift(name, "deleted" if kind == "D" else "changed")
            for kind, name in files
            if kind in ("M", "D") and _platform_owned(name)
        )
    return Check(status(service, package), _pinned_runtime(service.path), drifted)


def diff(path: Path, *, package: Shipped | None = None) -> Divergence:
    """The team's changes to the service at `path` against its recorded release, as a patch."""
    package = package or shipped()
    service = _service.load(package, path)
    files, patch = _compare(package, service, patch=True)
    return Divergence(service.path, service.release.tag, files, patch)


def _platform_owned(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PLATFORM_OWNED)


def _pinned_runtime(root: Path) -> str | None:
    try:
        found = _PIN.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


def _date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def _compare(
    package: Shipped, service: _service.Service, *, patch: bool = False
) -> tuple[tuple[tuple[str, str], ...], str]:
    """(status, path) of each file that differs from the fresh render, and the patch.

    Both trees are read by git into a repository of its own (the service's own ignore
    rules apply, so .venv and the like are left out), and never written to.
    """
    with tempfile.TemporaryDirectory(prefix="lls-diff-") as tmp:
        work = Path(tmp)
        rendered = _copier.render(package, service.release, service.given(), work / "render")
        store = work / "store.git"
        git(work, "init", "--quiet", "--bare", str(store))
        trees = [_tree(store, rendered), _tree(store, service.path)]
        listed = git(store, "diff-tree", "-r", "-M", "--name-status", "-z", *trees)
        words = [word for word in listed.split("\0") if word]
        files: list[tuple[str, str]] = []
        while words:
            kind = words.pop(0)
            if kind.startswith(("R", "C")):
                old, new = words.pop(0), words.pop(0)
                files.append((kind[0], f"{old} -> {new}"))
            else:
                files.append((kind, words.pop(0)))
        shown = git(store, "diff-tree", "-r", "-M", "--patch", "--stat", *trees) if patch else ""
    return tuple(files), shown


def _tree(store: Path, files: Path) -> str:
    """The git tree of the files under `files`, as `git add --all` there would stage them."""
    env = {"GIT_DIR": str(store), "GIT_WORK_TREE": str(files), "GIT_INDEX_FILE": str(store / "i")}
    git(files, "read-tree", "--empty", env=env)
    git(files, "add", "--all", env=env)
    return git(files, "write-tree", env=env).strip()
