"""`lls new` in a real terminal: each step shown while it runs, nothing of it in a pipe, and
Ctrl-C, at a question or in the middle of rendering, leaving nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import LATEST, Built, Lls, run
from .terminal import (
    CLEAR_LINE,
    COPIER_AT_WORK,
    INTERRUPTED,
    QUESTIONS,
    blocked_in_copier,
    done_line,
    finish,
    spawn,
    visible,
)

pytestmark = pytest.mark.slow

STEPS = (
    f"Reading the questions of template {LATEST}",
    f"Rendering template {LATEST} with serving runtime",
    "Making the first git commit in",
)


def _places(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The directory lls runs in, its own temporary directory, and the environment naming it."""
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    return work, scratch, {**os.environ, "TMPDIR": str(scratch)}


def test_each_step_is_shown_in_a_terminal_with_the_time_it_took(
    lls: Lls, built: Built, tmp_path: Path
) -> None:
    work, _, env = _places(tmp_path)
    child = spawn(lls.executable, ["new", "svc", "--defaults"], work, env)
    shown = finish(child)
    assert child.exitstatus == 0, shown
    text = visible(shown)
    ends = []
    for step in STEPS:
        found = done_line(step).search(text)
        assert found, (step, text)
        ends.append(found.start())
    assert ends == sorted(ends)
    assert text.index("Created demo-model in") > ends[-1]
    # While a step runs, its line counts the time: the spinner, the name, then h:mm:ss.
    rendering = f"Rendering template {LATEST} with serving runtime {built.runtime_version} 0:00:0"
    assert rendering in text
    assert (work / "svc" / "models.yaml").is_file()


def test_nothing_of_the_progress_reaches_a_pipe(lls: Lls, tmp_path: Path) -> None:
    work, _, env = _places(tmp_path)
    done = run([lls.executable, "new", "svc", "--defaults"], cwd=work, env={**env, "CI": "true"})
    assert done.returncode == 0, done.output
    assert done.stderr == ""
    assert "\x1b" not in done.stdout
    assert done.stdout.startswith("Created demo-model in ")
    assert "Rendering" not in done.output


@pytest.mark.parametrize("flag", ["--quiet", "-q", "--json"])
def test_quiet_and_json_show_no_progress_even_in_a_terminal(
    lls: Lls, tmp_path: Path, flag: str
) -> None:
    work, _, env = _places(tmp_path)
    child = spawn(lls.executable, ["new", "svc", "--defaults", flag], work, env)
    shown = finish(child)
    assert child.exitstatus == 0, shown
    assert "Rendering" not in shown
    if flag == "--json":
        assert json.loads(shown)["path"] == str(work / "svc")  # the whole output: one object
    else:
        assert shown == ""
    assert (work / "svc" / "models.yaml").is_file()


def test_json_never_asks_even_in_a_terminal(lls: Lls, tmp_path: Path) -> None:
    work, scratch, env = _places(tmp_path)
    child = spawn(lls.executable, ["new", "svc", "--json", "--data", "team=risk"], work, env)
    shown = finish(child)
    assert child.exitstatus == 2, shown
    error, message = shown.split("\n", 1)  # stderr's line first, then the object on stdout
    assert error.startswith("lls: error: service_name: not answered, and --json never asks")
    assert json.loads(message) == {
        "command": "new",
        "exit_status": 2,
        "error": error.removeprefix("lls: error: ").rstrip("\r"),
    }
    assert list(work.iterdir()) == []
    assert list(scratch.iterdir()) == []


def test_ctrl_c_at_a_question_exits_130_and_leaves_nothing(lls: Lls, tmp_path: Path) -> None:
    work, scratch, env = _places(tmp_path)
    child = spawn(lls.executable, ["new"], work, env)
    child.expect_exact("team:")
    child.send(f"{CLEAR_LINE}payments\r")
    child.expect_exact("service_name:")
    child.send("\r")
    child.expect_exact("model_id:")
    child.sendintr()
    shown = finish(child)
    assert child.exitstatus == 130, shown
    assert visible(shown).rstrip().endswith(INTERRUPTED)
    assert list(work.iterdir()) == []
    assert list(scratch.iterdir()) == []


def test_ctrl_c_while_rendering_exits_130_and_leaves_nothing(lls: Lls, tmp_path: Path) -> None:
    work, scratch, env = _places(tmp_path)
    place = tmp_path / "git"
    place.mkdir()
    env.update(blocked_in_copier(place))
    child = spawn(lls.executable, ["new", "svc"], work, env)
    for name in QUESTIONS:
        child.expect_exact(f"{name}:")
        child.send("\r")
    child.expect_exact(f"Rendering template {LATEST}")
    child.expect_exact(COPIER_AT_WORK)  # Copier is checking the template out, and waits
    child.sendintr()
    shown = finish(child)
    assert child.exitstatus == 130, shown
    text = visible(shown)
    assert text.rstrip().endswith(INTERRUPTED)
    assert not done_line(STEPS[1]).search(text), "the rendering ended before Ctrl-C reached it"
    assert "Created" not in text
    assert list(work.iterdir()) == []  # neither svc nor the hidden directory it is made in
    assert list(scratch.iterdir()) == []  # nor Copier's clone of the template, nor its cache
