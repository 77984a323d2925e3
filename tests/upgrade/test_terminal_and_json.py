"""`lls upgrade` in a real terminal (each step shown; Ctrl-C, at a question or while Copier
works, leaves the repository byte for byte as it was) and for a script (--json describes what
the repository now holds, --quiet says nothing but errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import Lls, documented_keys, run
from tests.scaffolder.terminal import (
    COPIER_AT_WORK,
    INTERRUPTED,
    blocked_in_copier,
    done_line,
    finish,
    spawn,
    visible,
)

from .conftest import (
    BRANCH,
    NEW,
    NEW_RUNTIME,
    OLD,
    OLD_RUNTIME,
    SERVICE,
    Origin,
    git,
    lls_env,
    snapshot,
    upgrade,
)

pytestmark = pytest.mark.slow

UPDATING = f"Updating from template {OLD} to {NEW} with Copier"


@pytest.fixture
def service(origin: Origin, tmp_path: Path) -> Path:
    """A clone of the team's service at v0.1.0, for this test alone."""
    return origin.clone(tmp_path / SERVICE)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The temporary directory lls is given (TMPDIR) in a terminal test."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def _assert_untouched(service: Path, before: dict[str, str], scratch: Path) -> None:
    assert snapshot(service) == before
    assert git(service, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(service, "branch", "--list", "lls-upgrade/**") == ""
    assert list(scratch.iterdir()) == []  # the temporary clone and Copier's copies are gone


def test_each_step_is_shown_in_a_terminal(offline_lls: Lls, service: Path, scratch: Path) -> None:
    env = {**lls_env(), "TMPDIR": str(scratch)}
    child = spawn(offline_lls.executable, ["upgrade", "--defaults"], service, env)
    shown = finish(child)
    assert child.exitstatus == 0, shown
    text = visible(shown)
    steps = [
        f"Checking {service} and its recorded answers",
        f"Cloning {service} into a temporary directory",
        UPDATING,
        "Checking for conflicts",
        f"Committing, and bringing the result into {service} as the new branch {BRANCH}",
    ]
    ends = []
    for step in steps:
        found = done_line(step).search(text)
        assert found, (step, text)
        ends.append(found.start())
    assert ends == sorted(ends)
    assert text.index(f"Committed on the new branch {BRANCH}") > ends[-1]
    assert f"{UPDATING} (three-way merge, migrations) 0:00:0" in text  # while it ran
    assert list(scratch.iterdir()) == []


def test_ctrl_c_at_a_new_question_leaves_the_repository_as_it_was(
    offline_lls: Lls, service: Path, scratch: Path
) -> None:
    before = snapshot(service)
    env = {**lls_env(), "TMPDIR": str(scratch)}
    child = spawn(offline_lls.executable, ["upgrade"], service, env)
    child.expect_exact("repository_url:")  # the first question v0.1.0 did not ask
    child.sendintr()
    shown = finish(child)
    assert child.exitstatus == 130, shown
    assert visible(shown).rstrip().endswith(INTERRUPTED)
    _assert_untouched(service, before, scratch)


def test_ctrl_c_while_copier_updates_leaves_the_repository_as_it_was(
    offline_lls: Lls, service: Path, scratch: Path, tmp_path: Path
) -> None:
    before = snapshot(service)
    head = git(service, "rev-parse", "HEAD")
    place = tmp_path / "git"
    place.mkdir()
    env = {**lls_env(), "TMPDIR": str(scratch), **blocked_in_copier(place)}
    child = spawn(offline_lls.executable, ["upgrade", "--defaults"], service, env)
    child.expect_exact(UPDATING)
    child.expect_exact(COPIER_AT_WORK)  # Copier is checking a release out, and waits
    child.sendintr()
    shown = finish(child)
    assert child.exitstatus == 130, shown
    text = visible(shown)
    assert text.rstrip().endswith(INTERRUPTED)
    assert not done_line(UPDATING).search(text), "Copier had finished before Ctrl-C reached it"
    assert git(service, "rev-parse", "HEAD") == head
    assert git(service, "branch", "--show-current").strip() == "main"
    _assert_untouched(service, before, scratch)


def test_json_describes_what_the_repository_now_holds(offline_lls: Lls, service: Path) -> None:
    done = upgrade(offline_lls, service, "--defaults", "--json")
    assert done.returncode == 0, done.output
    assert done.stderr == ""
    result = json.loads(done.stdout)
    assert (result["command"], result["exit_status"], result["error"]) == ("upgrade", 0, None)
    assert result["path"] == str(service)
    assert (result["from_version"], result["to_version"]) == (OLD, NEW)
    assert (result["from_runtime_version"], result["to_runtime_version"]) == (
        OLD_RUNTIME,
        NEW_RUNTIME,
    )
    assert (result["dry_run"], result["staged"], result["conflicts"]) == (False, False, [])
    assert result["branch"] == git(service, "branch", "--show-current").strip() == BRANCH
    assert result["commit"] == git(service, "rev-parse", "HEAD").strip()
    assert git(service, "status", "--porcelain") == ""
    recorded = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert recorded["_commit"] == NEW
    assert result["new_answers"] == {k: recorded[k] for k in result["new_answers"]}
    assert "spread_across_zones" in result["new_answers"]
    kinds: dict[str, list[object]] = {"A": [], "M": [], "D": [], "R": []}
    for line in git(service, "diff", "--name-status", "-M", "main", "HEAD").splitlines():
        kind, *paths = line.split("\t")
        kinds[kind[0]].append({"from": paths[0], "to": paths[1]} if kind[0] == "R" else paths[0])
    # What the releases' migrations moved is renamed, even where git's similarity misses it.
    for name in ("alerts.yaml", "alerts.test.yaml", "dashboard.json"):
        source, target = f"observability/{name}", f"chart/files/{name}"
        if source in kinds["D"] and target in kinds["A"]:
            kinds["D"].remove(source)
            kinds["A"].remove(target)
            kinds["R"].append({"from": source, "to": target})
    assert result["added"] == kinds["A"]
    assert result["changed"] == kinds["M"]
    assert result["removed"] == kinds["D"]
    assert sorted(result["renamed"], key=str) == sorted(kinds["R"], key=str)
    assert {"from": "observability/dashboard.json", "to": "chart/files/dashboard.json"} in kinds[
        "R"
    ]
    assert {"from": "tests/test_selftests.py", "to": "tests/test_canaries.py"} in kinds["R"]
    assert "+  zones: true" in result["diff"]
    keys = documented_keys(offline_lls, service, "upgrade")
    assert set(result) <= keys
    assert keys - set(result) == {"question", "from", "to"}  # the examples inside the lists


def test_json_with_conflicts_lists_them_and_exits_1(offline_lls: Lls, service: Path) -> None:
    readme = service / "README.md"
    readme.write_text(
        readme.read_text().replace(
            "change them with `lls upgrade`, not by hand.", "ask #demo before changing them."
        )
    )
    git(service, "commit", "--quiet", "--all", "-m", "README: our own rule for the settings")
    done = upgrade(offline_lls, service, "--defaults", "--json")
    assert done.returncode == 1, done.output
    result = json.loads(done.stdout)
    assert result["exit_status"] == 1
    assert result["error"] == "1 conflicted file(s): README.md"
    assert result["conflicts"] == ["README.md"]
    assert (result["branch"], result["commit"]) == (BRANCH, None)
    assert git(service, "branch", "--show-current").strip() == BRANCH
    assert "<<<<<<< yours" in readme.read_text()
    assert git(service, "diff", "--name-only", "--diff-filter=U") == "README.md\n"
    assert "conflicted file(s)" in done.stderr  # for the person reading the CI log


def test_json_dry_run_and_a_refusal_change_nothing(offline_lls: Lls, service: Path) -> None:
    before = snapshot(service)
    dry = upgrade(offline_lls, service, "--defaults", "--json", "--dry-run")
    assert dry.returncode == 0, dry.output
    result = json.loads(dry.stdout)
    assert (result["dry_run"], result["branch"], result["commit"]) == (True, None, None)
    assert "rename to tests/test_canaries.py" in result["diff"]
    assert snapshot(service) == before

    quiet = upgrade(offline_lls, service, "--defaults", "--quiet", "--dry-run")
    assert quiet.returncode == 0, quiet.output
    assert quiet.stdout == result["diff"] + "\n"  # the diff alone: no summary, no chatter
    assert quiet.stderr == ""

    (service / "scratch.txt").write_text("new\n")
    before = snapshot(service)
    refused = upgrade(offline_lls, service, "--defaults", "--json")
    assert refused.returncode == 2, refused.output
    error = json.loads(refused.stdout)
    assert set(error) == {"command", "exit_status", "error"}
    assert (error["command"], error["exit_status"]) == ("upgrade", 2)
    assert "has uncommitted changes" in error["error"]
    assert refused.stderr == f"lls: error: {error['error']}\n"
    assert snapshot(service) == before


def test_json_never_asks_even_in_a_terminal(offline_lls: Lls, service: Path, scratch: Path) -> None:
    before = snapshot(service)
    env = {**lls_env(), "TMPDIR": str(scratch)}
    child = spawn(offline_lls.executable, ["upgrade", "--json"], service, env)
    shown = finish(child)
    assert child.exitstatus == 2, shown
    error, message = shown.split("\n", 1)  # stderr's line first, then the object on stdout
    assert error.startswith("lls: error: repository_url: not answered, and --json never")
    assert json.loads(message)["error"] == error.removeprefix("lls: error: ").rstrip("\r")
    _assert_untouched(service, before, scratch)


def test_quiet_says_nothing_and_upgrades(offline_lls: Lls, service: Path) -> None:
    done = upgrade(offline_lls, service, "--defaults", "-q")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert git(service, "branch", "--show-current").strip() == BRANCH
    assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == NEW
    assert run(["git", "status", "--porcelain"], cwd=service).stdout == ""
