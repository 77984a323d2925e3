"""Two services in one repository (a monorepo): `lls new` commits each into it, and each is
upgraded on a branch of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import Lls

from .conftest import NEW, OLD, git, lls_env, upgrade

pytestmark = pytest.mark.slow


def test_two_services_of_one_repository_upgrade_on_their_own_branches(
    offline_lls: Lls, tmp_path: Path
) -> None:
    mono = tmp_path / "mono"
    mono.mkdir()
    git(mono, "init", "--quiet", "--initial-branch=main")
    (mono / "README.md").write_text("# Our models\n")
    git(mono, "add", "README.md")
    git(mono, "commit", "--quiet", "-m", "Start")
    for name in ("fraud-score", "churn-score"):
        made = offline_lls(
            "new", f"services/{name}", "--defaults", "--version", OLD,
            "--data", f"service_name={name}", cwd=mono, env=lls_env(),
        )  # fmt: skip
        assert made.returncode == 0, made.output
        assert f"is inside the git repository {mono}: the service is committed there" in (
            made.stdout
        )
        assert not (mono / "services" / name / ".git").exists()
    log = git(mono, "log", "--format=%s").splitlines()
    assert log == [
        f"Generate churn-score from the lls service template {OLD}",
        f"Generate fraud-score from the lls service template {OLD}",
        "Start",
    ]
    assert git(mono, "status", "--porcelain") == ""

    fraud = upgrade(offline_lls, mono / "services" / "fraud-score", "--defaults")
    assert fraud.returncode == 0, fraud.output
    git(mono, "switch", "--quiet", "main")
    churn = upgrade(offline_lls, mono / "services" / "churn-score", "--defaults")
    assert churn.returncode == 0, churn.output
    branches = git(mono, "branch", "--format=%(refname:short)").split()
    assert sorted(branches) == [
        f"lls-upgrade/churn-score/{NEW}",
        f"lls-upgrade/fraud-score/{NEW}",
        "main",
    ]
    changed = git(mono, "diff", "--name-only", "main", f"lls-upgrade/fraud-score/{NEW}")
    assert {path.split("/")[1] for path in changed.split()} == {"fraud-score"}
    answers = git(
        mono, "show", f"lls-upgrade/churn-score/{NEW}:services/churn-score/.copier-answers.yml"
    )
    assert yaml.safe_load(answers)["_commit"] == NEW
