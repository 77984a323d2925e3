"""A fleet of generated services at mixed template releases, built once per session.

Twenty services of four teams, five at each of the releases v0.1.0, v0.7.0, v0.8.0 and v0.9.0
(the newest); some with the edits a team makes (their own values, notes, a docs page), one
(svc-05, at v0.1.0) with an edit the template's newer README conflicts with, one (svc-09) whose
team test fails on a newer runtime. Each has a remote on "GitHub"
(https://github.com/acme/svc-NN.git) that git, told so by the tests' environment
(`url.<base>.insteadOf`), reaches as a local bare repository. Each test works on a copy of the
whole fleet, remotes included.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scaffolder.conftest import Done, Lls, run
from tests.upgrade.conftest import built, git, lls_env, offline_lls

__all__ = ["built", "offline_lls"]  # fixtures, for the tests of this directory

RELEASES = ("v0.1.0", "v0.7.0", "v0.8.0", "v0.9.0")
NEWEST = RELEASES[-1]
SIZE = 20
EDITED = {"svc-02", "svc-03", "svc-06", "svc-11", "svc-14", "svc-19"}
CONFLICTING = "svc-05"
FAILING_TESTS = "svc-09"
README_LINE = (
    "They are recorded in `.copier-answers.yml`; change them with `lls upgrade`, not by hand."
)
TEAM_LINE = "They are recorded in `.copier-answers.yml`; ask our on-call before changing them."
RUNTIME_TEST = """

def test_the_runtime_we_certified() -> None:
    from importlib.metadata import version

    assert version("lls-serving-runtime") == "0.1.0"
"""


@dataclass(frozen=True)
class Service:
    name: str
    release: str
    team: str


SERVICES = tuple(
    Service(f"svc-{n:02d}", RELEASES[(n - 1) % 4], f"team-{'abcd'[(n - 1) // 5]}")
    for n in range(1, SIZE + 1)
)
BY_NAME = {service.name: service for service in SERVICES}


@dataclass(frozen=True)
class Fleet:
    """A copy of the fleet: its services, their remotes, and the environment to reach them."""

    root: Path
    lls: Lls

    @property
    def services(self) -> Path:
        return self.root / "services"

    def service(self, name: str) -> Path:
        return self.services / name

    def remote(self, name: str) -> Path:
        return self.root / "remotes" / f"{name}.git"

    @property
    def env(self) -> dict[str, str]:
        """lls's environment, where https://github.com/acme/ is the local remotes/ folder."""
        env = lls_env()
        index = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
        env.update(
            {
                "GIT_CONFIG_COUNT": str(index + 1),
                f"GIT_CONFIG_KEY_{index}": f"url.{self.root / 'remotes'}/.insteadOf",
                f"GIT_CONFIG_VALUE_{index}": "https://github.com/acme/",
                "XDG_CACHE_HOME": str(self.root / "cache"),
            }
        )
        return env

    def __call__(self, *args: str | Path, env: dict[str, str] | None = None) -> Done:
        return self.lls(*args, cwd=self.root, env={**self.env, **(env or {})})


def _make(lls: Lls, services: Path, remotes: Path, service: Service) -> None:
    made = lls(
        "new", service.name, "--defaults", "--version", service.release,
        "--data", f"team={service.team}", "--data", f"service_name={service.name}",
        "--data", "framework=custom",
        cwd=services, env=lls_env(),
    )  # fmt: skip
    assert made.returncode == 0, made.output
    path = services / service.name
    if service.name in EDITED:
        values = path / "chart" / "values.yaml"
        values.write_text(values.read_text().replace("tmpSizeLimit: 256Mi", "tmpSizeLimit: 1Gi"))
        (path / "docs" / "features.md").write_text(f"# Features of {service.name}\n")
    if service.name == CONFLICTING:
        readme = path / "README.md"
        assert README_LINE in readme.read_text()
        readme.write_text(readme.read_text().replace(README_LINE, TEAM_LINE))
    if service.name == FAILING_TESTS:
        tests = next((path / "tests").glob("test_*.py"))
        tests.write_text(tests.read_text() + RUNTIME_TEST)
    git(path, "add", "--all")
    if git(path, "status", "--porcelain"):
        git(path, "commit", "--quiet", "-m", "Our own changes")
    bare = remotes / f"{service.name}.git"
    git(remotes, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git(path, "push", "--quiet", str(bare), "main")
    git(path, "remote", "add", "origin", f"https://github.com/acme/{service.name}.git")


@pytest.fixture(scope="session")
def fleet_template(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    services, remotes = root / "services", root / "remotes"
    services.mkdir()
    remotes.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda s: _make(offline_lls, services, remotes, s), SERVICES))
    return root


@pytest.fixture
def fleet(fleet_template: Path, offline_lls: Lls, tmp_path: Path) -> Fleet:
    root = tmp_path / "fleet"
    shutil.copytree(fleet_template, root, symlinks=True)
    return Fleet(root, offline_lls)


def refs(repository: Path) -> str:
    """Every ref of a repository and what it points at."""
    return run(["git", "for-each-ref", "--format=%(refname) %(objectname)"], cwd=repository).stdout
