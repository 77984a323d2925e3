"""Isolate every test from the developer's machine: home, caches and git identity; and share
the suite between pytest-xdist's workers (`python3 dev.py test` runs two)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Test folders whose session fixtures are costly, each kept on one worker (xdist's loadgroup):
# the pods' venv, pod and Prometheus run for tests/artifacts; the build into dist/ (one per
# session: two workers building there at once would race) and lls's venv for the others.
GROUPS = {
    "artifacts": "pods",
    "docs": "lls",
    "fleet": "lls",
    "scaffolder": "lls",
    "upgrade": "lls",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test goes to the worker of its group; the rest, file by file (module fixtures are
    set up once), to whichever worker is free. The two groups come first, so that each worker
    starts with one and the files fill in around them."""
    order = {"pods": 0, "lls": 1}
    for item in items:
        folder, *_ = item.path.relative_to(ROOT / "tests").parts
        group = GROUPS.get(folder, str(item.path.relative_to(ROOT)))
        item.add_marker(pytest.mark.xdist_group(group))
        item.stash[_GROUP] = order.get(group, 2)
    items.sort(key=lambda item: item.stash[_GROUP])


_GROUP = pytest.StashKey[int]()


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
    yield
    os.environ.clear()
    os.environ.update(saved)
