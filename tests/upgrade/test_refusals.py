"""Conflicts are shown and never hidden; bad cases are refused with a clear message and change
nothing; a dry run writes nothing; an interrupted upgrade leaves the repository as it was."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
import yaml

import lls
from lls import _copier
from tests.scaffolder.conftest import Built, Lls

from .conftest import (
    BRANCH,
    NEW,
    OLD,
    SERVICE,
    Origin,
    git,
    lls_env,
    snapshot,
    upgrade,
)

pytestmark = pytest.mark.slow

TEMPLATE_LINE = (
    "They are recorded in `.copier-answers.yml`; change them with `lls upgrade`, not by hand."
)
TEAM_LINE = "They are recorded in `.copier-answers.yml`; ask #demo before changing them."


@pytest.fixture
def service(origin: Origin, tmp_path: Path) -> Path:
    """A clone of the team's service at v0.1.0, for this test alone."""
    return origin.clone(tmp_path / SERVICE)


def _commit_all(service: Path, message: str) -> None:
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", message)


@pytest.mark.parametrize(
    "dirty",
    [
        pytest.param(lambda s: (s / "README.md").write_text("changed\n"), id="modified"),
        pytest.param(lambda s: (s / "scratch.txt").write_text("new\n"), id="untracked"),
        pytest.param(
            lambda s: ((s / "x.txt").write_text("x\n"), git(s, "add", "x.txt")), id="staged"
        ),
    ],
)
def test_a_dirty_tree_is_refused(
    offline_lls: Lls, service: Path, dirty: Callable[[Path], object]
) -> None:
    dirty(service)
    before = snapshot(service)
    done = upgrade(offline_lls, service, "--defaults")
    assert done.returncode == 2, done.output
    assert "has uncommitted changes" in done.stderr
    assert "commit or stash them first" in done.stderr
    assert snapshot(service) == before


def test_a_dry_run_shows_the_diff_and_writes_nothing(offline_lls: Lls, service: Path) -> None:
    before = snapshot(service)
    done = upgrade(offline_lls, service, "--defaults", "--dry-run")
    assert done.returncode == 0, done.output
    assert "+  zones: true" in done.stdout
    assert "rename to tests/test_canaries.py" in done.stdout
    assert "Dry run: nothing was written." in done.stdout
    assert snapshot(service) == before


def test_a_dry_run_works_on_a_dirty_tree_and_leaves_it_dirty(
    offline_lls: Lls, service: Path
) -> None:
    (service / "README.md").write_text("work in progress\n")
    (service / "scratch.txt").write_text("new\n")
    before = snapshot(service)
    done = upgrade(offline_lls, service, "--defaults", "--dry-run")
    assert done.returncode == 0, done.output
    assert "+  zones: true" in done.stdout
    assert snapshot(service) == before


def test_answers_can_be_changed_on_the_way(offline_lls: Lls, service: Path) -> None:
    args = ["--data", "min_replicas=3", "--data", "spread_across_zones=no"]
    done = upgrade(offline_lls, service, "--defaults", "--dry-run", *args)
    assert done.returncode == 0, done.output
    assert "+  minReplicas: 3" in done.stdout
    assert "+  zones: false" in done.stdout
    assert "New question spread_across_zones: False" in done.stdout


def test_the_examples_in_the_help_work(offline_lls: Lls, origin: Origin, tmp_path: Path) -> None:
    shown = offline_lls("upgrade", "--help", cwd=tmp_path, env=lls_env()).stdout
    examples = [
        line.split("#")[0].split()
        for line in shown.splitlines()
        if line.strip().startswith("lls upgrade")
    ]
    non_interactive = [argv for argv in examples if "--defaults" in argv]
    assert len(examples) == 4
    assert len(non_interactive) == 2, shown  # the prompting ones: the terminal test's
    for number, argv in enumerate(non_interactive):
        service = origin.clone(tmp_path / f"example-{number}")
        done = offline_lls(*argv[1:], cwd=service, env=lls_env())
        assert done.returncode == 0, (argv, done.output)
        wanted = argv[argv.index("--to") + 1] if "--to" in argv else NEW
        assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == wanted


def test_stage_leaves_the_upgrade_staged_on_the_current_branch(
    offline_lls: Lls, service: Path
) -> None:
    head = git(service, "rev-parse", "HEAD")
    done = upgrade(offline_lls, service, "--defaults", "--stage")
    assert done.returncode == 0, done.output
    assert git(service, "rev-parse", "HEAD") == head
    assert git(service, "branch", "--show-current").strip() == "main"
    assert BRANCH not in git(service, "branch", "--list")
    staged = git(service, "diff", "--cached", "--name-status").splitlines()
    assert "M\tchart/values.yaml" in staged
    assert git(service, "diff", "--name-only") == ""  # all of it staged, nothing else


def _remove_answers(service: Path) -> None:
    git(service, "rm", "--quiet", ".copier-answers.yml")
    _commit_all(service, "remove the answers")


def _edit_answers(text: str) -> Callable[[Path], None]:
    def edit(service: Path) -> None:
        answers = service / ".copier-answers.yml"
        answers.write_text(answers.read_text().replace(*text.split("|")))
        _commit_all(service, "edit the answers")

    return edit


def _not_a_repository(service: Path) -> None:
    shutil.rmtree(service / ".git")


BAD_CASES = [
    pytest.param(_not_a_repository, [], "is not in a git repository", id="not-git"),
    pytest.param(_remove_answers, [], "has no .copier-answers.yml", id="no-answers"),
    pytest.param(
        _edit_answers("min_replicas: 2|min_replicas: lots"),
        [],
        "min_replicas: 'lots' is not a whole number",
        id="nonsense-answer",
    ),
    pytest.param(
        _edit_answers("_commit: v0.1.0|_commit: [v0.1.0"),
        [],
        "cannot be read as YAML",
        id="broken-yaml",
    ),
    pytest.param(
        _edit_answers(f"_commit: {OLD}|_commit: v9.9.9"),
        [],
        "records template version 'v9.9.9', which this lls does not know",
        id="unknown-recorded-version",
    ),
    pytest.param(
        _edit_answers("_src_path: https://git.example.invalid|_src_path: gh:someone/else"),
        [],
        "this service was not made by `lls new`",
        id="other-template",
    ),
    pytest.param(
        _edit_answers("workers: 2|"),
        [],
        "has no answer to 'workers'",
        id="missing-answer",
    ),
    pytest.param(None, ["--to", "v9.9.9"], "no template version 'v9.9.9'", id="unknown-version"),
    pytest.param(None, ["--data", "min_replicas=0"], "min_replicas: 0 must be", id="bad-data"),
    pytest.param(None, ["--data", "colour=blue"], "colour: no such question", id="no-question"),
]


@pytest.mark.parametrize(("spoil", "args", "words"), BAD_CASES)
def test_a_bad_case_is_refused_clearly_and_changes_nothing(
    offline_lls: Lls,
    service: Path,
    spoil: Callable[[Path], None] | None,
    args: list[str],
    words: str,
) -> None:
    if spoil:
        spoil(service)
    before = snapshot(service) if (service / ".git").exists() else None
    files = sorted(p.name for p in service.iterdir())
    done = upgrade(offline_lls, service, "--defaults", *args)
    assert done.returncode == 2, done.output
    assert words in done.stderr, done.stderr
    assert done.stderr.startswith("lls: error: ")
    assert sorted(p.name for p in service.iterdir()) == files
    if before is not None:
        assert snapshot(service) == before


def test_a_service_already_current_is_a_success_and_going_back_is_refused(
    offline_lls: Lls, service: Path
) -> None:
    same = upgrade(offline_lls, service, "--defaults", "--to", OLD)
    assert (same.returncode, same.stderr) == (0, "")
    assert same.stdout == f"{service} is already at template {OLD}; nothing to do.\n"
    assert upgrade(offline_lls, service, "--defaults").returncode == 0
    (service / "scratch.txt").write_text("a dirty tree does not matter: nothing is done\n")
    before = snapshot(service)
    current = upgrade(offline_lls, service, "--defaults")
    assert (current.returncode, current.stderr) == (0, "")
    assert current.stdout == f"{service} is already at template {NEW}; nothing to do.\n"
    back = upgrade(offline_lls, service, "--defaults", "--to", OLD)
    assert back.returncode == 2
    assert "is a downgrade" in back.stderr
    assert snapshot(service) == before


def test_run_from_a_subdirectory_it_upgrades_the_service_around_it(
    offline_lls: Lls, service: Path
) -> None:
    done = upgrade(offline_lls, service / "chart" / "templates", "--defaults")
    assert done.returncode == 0, done.output
    assert f"Upgrade {service} from template {OLD} to {NEW}" in done.stdout
    assert git(service, "branch", "--show-current").strip() == BRANCH
    assert yaml.safe_load((service / ".copier-answers.yml").read_text())["_commit"] == NEW


def test_a_file_the_team_deleted_stays_deleted_when_a_release_renames_it(
    offline_lls: Lls, service: Path
) -> None:
    git(service, "rm", "--quiet", "tests/test_selftests.py")
    _commit_all(service, "We run our canaries elsewhere")
    done = upgrade(offline_lls, service, "--defaults")
    assert done.returncode == 0, done.output
    assert not (service / "tests" / "test_selftests.py").exists()
    assert not (service / "tests" / "test_canaries.py").exists()
    assert "tests/test_canaries.py" not in git(service, "ls-files")


def test_only_the_new_questions_are_asked_in_a_terminal(offline_lls: Lls, service: Path) -> None:
    child = pexpect.spawn(
        str(offline_lls.executable),
        ["upgrade", "--dry-run"],
        cwd=str(service),
        env={**lls_env(), "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    child.expect_exact("repository_url:")
    assert "team:" not in (child.before or "")
    child.send("\r")
    child.expect_exact("task:")  # new in v0.5.0: binary, what the service has, by default
    child.send("\r")
    child.expect_exact("request_timeout_ms:")  # new in v0.4.0 too
    child.send("\r")
    child.expect_exact("spread_across_zones:")
    child.send("n")
    child.expect_exact("record_outputs:")
    child.send("y")
    child.expect_exact("record_sample:")
    child.send("\x7f" * 8 + "2\r")  # refused with its reason, then asked again
    child.expect_exact("at most 1")
    child.send("\x7f" * 8 + "0.5\r")
    child.expect_exact("tracing_endpoint:")
    child.send("\r")
    child.expect(pexpect.EOF)
    child.close()
    out = child.before or ""
    assert child.exitstatus == 0, out
    assert "New question spread_across_zones: False" in out
    assert "New question repository_url: https://github.com/example/demo-model" in out
    assert "New question task: binary" in out
    assert "+  zones: false" in out
    assert "+  sample: 0.5" in out  # the recording section of models.yaml


def test_questions_go_to_the_terminal_and_only_the_diff_to_stdout(
    offline_lls: Lls, service: Path, tmp_path: Path
) -> None:
    diff = tmp_path / "diff.txt"
    child = pexpect.spawn(
        "bash",
        ["-c", f"'{offline_lls.executable}' upgrade --dry-run > '{diff}'"],
        cwd=str(service),
        env={**lls_env(), "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    asked = (
        "repository_url:",
        "task:",
        "request_timeout_ms:",
        "spread_across_zones:",
        "record_outputs:",
        "tracing_endpoint:",
    )
    for question in asked:
        child.expect_exact(question)  # drawn on the terminal, though stdout is a file
        child.send("\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    written = diff.read_text()
    assert written.startswith(" .copier-answers.yml ")  # the diff's stat, first thing
    assert "+  zones: true" in written
    for prompt in ("zones as well as nodes", "a sample of the model", "of the trace collector"):
        assert prompt not in written  # the questions' words: on the terminal only
    assert "\x1b" not in written


@pytest.mark.parametrize("where", ["update", "place_runtime_wheel"])
def test_an_interrupted_upgrade_leaves_the_repository_as_it_was(
    built: Built, service: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    real = getattr(_copier, where)

    def interrupted(*args: object) -> None:
        real(*args)  # Copier has really run in the clone: then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(_copier, where, interrupted)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = snapshot(service)
    with pytest.raises(KeyboardInterrupt):
        lls.upgrade(service, package=lls.shipped())
    assert snapshot(service) == before
    assert list(scratch.iterdir()) == []  # the temporary clone is gone too
