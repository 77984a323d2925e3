"""Every refused answer, given on the command line or in a file: the key, the reason, exit 2,
and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from .answers import BAD_ANSWERS
from .conftest import Lls

pytestmark = pytest.mark.slow


def _assert_refused(done_output: str, returncode: int, parent: Path, *words: str) -> None:
    assert returncode == 2, done_output
    assert done_output.startswith("lls: error: "), done_output
    assert len(done_output.strip().splitlines()) == 1, done_output
    for word in words:
        assert word in done_output
    assert list(parent.iterdir()) == [], "something was written"


@pytest.mark.parametrize(("key", "value", "reason"), BAD_ANSWERS)
def test_a_bad_answer_on_the_command_line_is_refused(
    lls: Lls, tmp_path: Path, key: str, value: str, reason: str
) -> None:
    done = lls("new", "svc", "--defaults", "--data", f"{key}={value}", cwd=tmp_path)
    _assert_refused(done.stderr, done.returncode, tmp_path, f"{key}: ", reason)


def test_a_bad_answer_in_a_data_file_is_refused(lls: Lls, tmp_path: Path) -> None:
    answers = tmp_path.parent / f"{tmp_path.name}-answers.yml"
    answers.write_text("team: payments\nmin_replicas: 4\nmax_replicas: 3\n")
    done = lls("new", "svc", "--defaults", "--data-file", answers, cwd=tmp_path)
    _assert_refused(done.stderr, done.returncode, tmp_path, "max_replicas: ", "min_replicas (4)")


def test_a_data_file_with_unknown_keys_lists_them_all(lls: Lls, tmp_path: Path) -> None:
    answers = tmp_path.parent / f"{tmp_path.name}-answers.yml"
    answers.write_text("team: payments\ncolour: blue\nsize: large\nworkers: 3\n")
    done = lls("new", "svc", "--defaults", "--data-file", answers, cwd=tmp_path)
    _assert_refused(done.stderr, done.returncode, tmp_path, "colour, size: no such question")


def test_the_command_line_wins_over_the_data_file(lls: Lls, tmp_path: Path) -> None:
    answers = tmp_path.parent / f"{tmp_path.name}-answers.yml"
    answers.write_text(  # as another service's .copier-answers.yml would be
        "_commit: v0.0.1\n_src_path: elsewhere\nruntime_version: 0.0.1\n"
        "team: payments\nframework: xgboost\nworkers: 0\n"
    )
    done = lls("new", "--defaults", "--data-file", answers, "--data", "workers=3", cwd=tmp_path)
    assert done.returncode == 0, done.output
    written = (tmp_path / "payments-model" / ".copier-answers.yml").read_text()
    assert "framework: xgboost" in written
    assert "workers: 3" in written
    assert "namespace: payments" in written  # a default derived from the file's team
    assert "runtime_version: 0.0.1" not in written  # this lls's runtime, not the file's


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--data", "colour=blue"], ["colour: no such question"]),
        (["--data", "runtime_version=9.9.9"], ["runtime_version: is set by lls ("]),
        (
            ["--data", "package_name=os"],
            ["package_name: is computed from the other answers and cannot be given"],
        ),
        (
            ["--data", "class_name=X", "--data", "artifact=/etc/passwd"],
            ["artifact, class_name: is computed"],
        ),
        (["--data", "team"], ["--data 'team': write it as KEY=VALUE"]),
        (["--data-file", "/nonexistent/answers.yml"], ["--data-file /nonexistent/answers.yml"]),
    ],
)
def test_malformed_input_is_refused(
    lls: Lls, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    done = lls("new", "svc", "--defaults", *args, cwd=tmp_path)
    _assert_refused(done.stderr, done.returncode, tmp_path, *words)


def test_an_empty_destination_is_used(lls: Lls, tmp_path: Path) -> None:
    done = lls("new", ".", "--defaults", cwd=tmp_path)
    assert done.returncode == 0, done.output
    assert (tmp_path / "models.yaml").is_file()


def test_without_a_terminal_it_asks_for_defaults_instead_of_hanging(
    lls: Lls, tmp_path: Path
) -> None:
    done = lls("new", "svc", cwd=tmp_path)
    _assert_refused(done.stderr, done.returncode, tmp_path, "no terminal", "--defaults")
