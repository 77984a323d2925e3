"""Isolate every test from the developer's machine: home, caches and git identity; and share
the suite between pytest-xdist's workers (`python3 dev.py test` runs two)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Test folders whose session fixtures are costly, each kept on one worker: the pods' venv, pod
# and Prometheus run for tests/artifacts; the build into dist/ (one per session: two workers
# building there at once would race) and lls's venv for the others. Any other file is a unit
# of its own (its module fixtures are set up once), run by whichever worker is free.
GROUPS = {
    "artifacts": "pods",
    "docs": "lls",
    "fleet": "lls",
    "scaffolder": "lls",
    "upgrade": "lls",
}


def group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its folder's group, else its file."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return GROUPS.get(parts[1], path) if len(parts) > 2 and parts[0] == "tests" else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope, with `group_of` as the scope."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The two groups first, so that each worker starts with one and the files fill in."""
    first = {"pods": 0, "lls": 1}
    items.sort(key=lambda item: first.get(group_of(item.nodeid), 2))


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    # pip's cache is kept between runs: it is what makes the generated services' set-up fast.
    os.environ.setdefault("PIP_CACHE_DIR", str(ROOT / ".cache" / "pip"))
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "author@example.com",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    # xdist's workers set an 80x24 terminal; the programs under test size their output by the
    # terminal they are given (pexpect's), not by this one.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)
