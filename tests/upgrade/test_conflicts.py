"""A conflict is left as git leaves an unfinished merge, for the team's own tools: `git status`
and `git diff` show it, `git mergetool` resolves it from the index's three stages, then
`lls upgrade --continue` commits with lls's message, or `lls upgrade --abort` undoes it all."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import Lls, run

from .conftest import (
    BRANCH,
    MODEL_EDIT,
    NEW,
    NEW_RUNTIME,
    OLD,
    OLD_RUNTIME,
    PACKAGE,
    SERVICE,
    Origin,
    git,
    snapshot,
    upgrade,
)

pytestmark = pytest.mark.slow

TEMPLATE_LINE = (
    "They are recorded in `.copier-answers.yml`; change them with `lls upgrade`, not by hand."
)
TEAM_LINE = "They are recorded in `.copier-answers.yml`; ask #demo before changing them."
NEW_LINE = "`lls versions` lists the template releases and what each changed."
TEAM_COMMIT = "README: our own rule for the settings"
# A merge tool as git runs one: it is given the three stages and the file to write.
RESOLVER = """\
import json, sys
base, local, remote, merged = sys.argv[1:5]
seen = {name: open(path).read() for name, path in
        (("base", base), ("local", local), ("remote", remote))}
json.dump(seen, open(sys.argv[5], "w"))
team = [l for l in seen["local"].splitlines(True) if "ask #demo" in l][0]
open(merged, "w").write(seen["remote"].replace(
    "change them with `lls upgrade`, not by hand.\\n", team.split("; ", 1)[1]))
"""


@pytest.fixture
def before_upgrade(origin: Origin, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A clone of the team's service whose README changes a line the template changes too."""
    service = origin.clone(tmp_path / SERVICE)
    readme = service / "README.md"
    readme.write_text(readme.read_text().replace(TEMPLATE_LINE, TEAM_LINE))
    git(service, "commit", "--quiet", "--all", "-m", TEAM_COMMIT)
    return service, snapshot(service)


@pytest.fixture
def conflicted(offline_lls: Lls, before_upgrade: tuple[Path, dict[str, str]]) -> Path:
    service, _ = before_upgrade
    done = upgrade(offline_lls, service, "--defaults")
    assert done.returncode == 1, done.output
    assert "  README.md\n" in done.stderr
    return service


def test_git_sees_the_conflict_as_an_unfinished_merge(conflicted: Path) -> None:
    service = conflicted
    assert git(service, "branch", "--show-current").strip() == BRANCH
    assert git(service, "diff", "--name-only", "--diff-filter=U") == "README.md\n"
    status = git(service, "status", "--porcelain").splitlines()
    assert "UU README.md" in status
    assert "M  chart/values.yaml" in status  # the rest of the upgrade: staged
    stages = {}
    for line in git(service, "ls-files", "--unmerged", "README.md").splitlines():
        number = line.split("\t")[0].split()[2]
        stages[number] = git(service, "show", f":{number}:README.md")
    assert TEMPLATE_LINE in stages["1"]  # the old release, as it rendered this service
    assert TEAM_LINE in stages["2"]
    assert NEW_LINE in stages["3"]
    assert TEMPLATE_LINE in stages["3"]
    text = (service / "README.md").read_text()
    assert f"<<<<<<< yours\n{TEAM_LINE}\n||||||| template {OLD}\n{TEMPLATE_LINE}\n=======\n" in text
    assert f"{NEW_LINE}\n>>>>>>> template {NEW}\n" in text
    assert MODEL_EDIT in (service / PACKAGE / "model.py").read_text()
    staged = git(service, "show", ":.copier-answers.yml")
    assert yaml.safe_load(staged)["_commit"] == NEW
    # Nothing is committed until the conflict is resolved.
    assert (
        git(service, "log", "--format=%s", "-1").strip() == "README: our own rule for the settings"
    )


def test_resolved_with_git_mergetool_then_continued(
    offline_lls: Lls, conflicted: Path, tmp_path: Path
) -> None:
    service = conflicted
    resolver, seen = tmp_path / "resolve.py", tmp_path / "seen.json"
    resolver.write_text(RESOLVER)
    tool = f'{sys.executable} {resolver} "$BASE" "$LOCAL" "$REMOTE" "$MERGED" {seen}'
    merged = run(
        ["git", "-c", f"mergetool.team.cmd={tool}", "-c", "mergetool.team.trustExitCode=true",
         "-c", "mergetool.keepBackup=false", "mergetool", "--tool=team", "--no-prompt"],
        cwd=service,
    )  # fmt: skip
    assert merged.returncode == 0, merged.output
    given = json.loads(seen.read_text())
    assert TEMPLATE_LINE in given["base"]
    assert NEW_LINE not in given["base"]
    assert TEAM_LINE in given["local"]
    assert NEW_LINE in given["remote"]
    assert git(service, "diff", "--name-only", "--diff-filter=U") == ""

    done = upgrade(offline_lls, service, "--continue")
    assert done.returncode == 0, done.output
    assert f"Committed the upgrade on {BRANCH}" in done.stdout
    assert git(service, "status", "--porcelain") == ""
    log = git(service, "log", "--format=%s", "main..HEAD").splitlines()
    assert log == [f"Upgrade {SERVICE} to the lls service template {NEW} (from {OLD})"]
    body = git(service, "log", "-1", "--format=%b")
    assert f"Serving runtime {OLD_RUNTIME} -> {NEW_RUNTIME}." in body
    readme = (service / "README.md").read_text()
    assert TEAM_LINE in readme
    assert NEW_LINE in readme
    assert "<<<<<<<" not in readme
    assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == NEW


def test_continue_refuses_until_every_conflict_is_resolved(
    offline_lls: Lls, conflicted: Path
) -> None:
    service = conflicted
    early = upgrade(offline_lls, service, "--continue")
    assert early.returncode == 2
    assert "1 file(s) still conflicted: README.md" in early.stderr
    git(service, "add", "README.md")  # markers and all
    marked = upgrade(offline_lls, service, "--continue")
    assert marked.returncode == 2
    assert "README.md still hold(s) conflict markers" in marked.stderr
    assert (
        git(service, "log", "--format=%s", "-1").strip() == "README: our own rule for the settings"
    )
    again = upgrade(offline_lls, service, "--defaults")
    assert again.returncode == 2
    assert "an upgrade with conflicts is in progress" in again.stderr


def test_abort_returns_to_exactly_where_the_team_was(
    offline_lls: Lls, before_upgrade: tuple[Path, dict[str, str]], conflicted: Path
) -> None:
    service, before = before_upgrade
    done = upgrade(offline_lls, service, "--abort", "--json")
    assert done.returncode == 0, done.output
    result = json.loads(done.stdout)
    assert (result["exit_status"], result["branch"]) == (0, "main")
    assert snapshot(service) == before
    assert git(service, "branch", "--list", "lls-upgrade/**") == ""
    nothing = upgrade(offline_lls, service, "--abort")
    assert nothing.returncode == 2
    assert f"no upgrade with conflicts is in progress in {service}" in nothing.stderr


def test_a_conflict_the_team_commits_itself_is_finished(offline_lls: Lls, conflicted: Path) -> None:
    service = conflicted
    resolved = git(service, "show", ":3:README.md")
    (service / "README.md").write_text(resolved)
    git(service, "add", "README.md")
    git(service, "commit", "--quiet", "-m", "Upgrade, our way")
    done = upgrade(offline_lls, service, "--defaults")
    assert (done.returncode, done.stdout.strip()) == (
        0,
        f"{service} is already at template {NEW}; nothing to do.",
    ), done.output
