"""`lls new` in a real terminal (pexpect): refused answers are explained and asked again."""

from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pytest
import yaml

from .answers import BAD_ANSWERS
from .conftest import Lls
from .terminal import CLEAR_LINE, QUESTIONS

pytestmark = pytest.mark.slow

DOWN = "\x1b[B"
CTRL_C = "\x03"


def _spawn(lls: Lls, cwd: Path, dest: str | None = "svc") -> pexpect.spawn:
    return pexpect.spawn(
        str(lls.executable),
        ["new"] if dest is None else ["new", dest],
        cwd=str(cwd),
        encoding="utf-8",
        timeout=20,
        dimensions=(50, 200),
        # pexpect is no terminal emulator: it never answers prompt_toolkit's cursor-position
        # request, which would cost a second's wait at every question.
        env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"},
    )


def _accept_defaults_until(child: pexpect.spawn, stop: str) -> None:
    for name in QUESTIONS[: QUESTIONS.index(stop)]:
        child.expect_exact(f"{name}:")
        child.send("\r")
    child.expect_exact(f"{stop}:")


def test_a_bad_name_is_explained_corrected_and_a_framework_and_task_picked_with_arrows(
    lls: Lls, tmp_path: Path
) -> None:
    child = _spawn(lls, tmp_path)
    child.expect_exact("team:")
    child.send(f"{CLEAR_LINE}payments\r")
    child.expect_exact("service_name:")
    child.send(f"{CLEAR_LINE}Fraud_Score\r")
    child.expect_exact("'Fraud_Score' is not a Kubernetes DNS-1123 label")
    child.send(f"{CLEAR_LINE}fraud-score\r")
    child.expect_exact("model_id:")
    child.send("\r")
    for name in ("owner_email", "oncall_channel", "repository_url"):
        child.expect_exact(f"{name}:")
        child.send("\r")
    child.expect_exact("framework:")
    child.send(DOWN + DOWN + "\r")  # scikit-learn, XGBoost, LightGBM
    child.expect_exact("task:")
    child.send(DOWN + "\r")  # binary, multiclass
    for name in QUESTIONS[QUESTIONS.index("task") + 1 :]:
        child.expect_exact(f"{name}:")
        child.send("\r")
    child.expect_exact("Created fraud-score")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    answers = yaml.safe_load((tmp_path / "svc" / ".copier-answers.yml").read_text())
    assert answers["service_name"] == "fraud-score"
    assert answers["framework"] == "lightgbm"
    assert answers["task"] == "multiclass"
    assert answers["owner_email"] == "payments-team@example.com"
    assert answers["repository_url"] == "https://github.com/example/fraud-score"
    assert (
        'CLASSES = ["low", "medium", "high"]'
        in (tmp_path / "svc" / "fraud_score" / "model.py").read_text()
    )


@pytest.mark.parametrize(
    ("key", "value", "reason"), [bad for bad in BAD_ANSWERS if bad[0] not in {"framework", "task"}]
)
def test_a_bad_answer_typed_is_explained_and_asked_again(
    lls: Lls, tmp_path: Path, key: str, value: str, reason: str
) -> None:
    child = _spawn(lls, tmp_path)
    _accept_defaults_until(child, key)
    child.send(f"{CLEAR_LINE}{value}\r")
    child.expect_exact(reason)
    # Still on the same question: Ctrl-C gives up, and nothing is written.
    child.send(CTRL_C)
    child.expect_exact("interrupted; nothing was written")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert list(tmp_path.iterdir()) == []


def test_a_service_name_whose_directory_is_taken_is_refused_at_once(
    lls: Lls, tmp_path: Path
) -> None:
    (tmp_path / "demo-model").mkdir()
    (tmp_path / "demo-model" / "notes.txt").write_text("mine\n")
    child = _spawn(lls, tmp_path, dest=None)
    _accept_defaults_until(child, "service_name")
    child.send("\r")
    child.expect_exact("demo-model exists and is not empty")
    child.send(f"{CLEAR_LINE}other-model\r")
    child.expect_exact("model_id:")
    child.send(CTRL_C)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-model"]


def test_ctrl_d_at_a_question_is_handled_like_ctrl_c(lls: Lls, tmp_path: Path) -> None:
    child = _spawn(lls, tmp_path)
    _accept_defaults_until(child, "service_name")
    child.send(CLEAR_LINE)
    child.sendeof()  # Ctrl-D on an empty line: the end of the input
    child.expect_exact("interrupted; nothing was written")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")
    assert list(tmp_path.iterdir()) == []
