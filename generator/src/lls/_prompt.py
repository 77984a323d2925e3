"""Ask the template's questions in a terminal (questionary), re-asking with the reason.

The questions are drawn on the terminal (stderr, or /dev/tty), never on stdout: stdout is
the command's output (`lls upgrade --dry-run > diff.txt` must hold the diff alone).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TextIO

import questionary
from prompt_toolkit.output import Output, create_output

from ._errors import InvalidAnswer
from ._questions import Question


@functools.cache
def _terminal() -> Output:
    stream: TextIO = sys.stderr
    if not sys.stderr.isatty():
        try:
            stream = open("/dev/tty", "w", encoding="utf-8")  # noqa: SIM115 - open for the run
        except OSError:
            stream = sys.stderr
    return create_output(stdout=stream)


def ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
    """Prompt until `resolve` accepts the answer; Ctrl-C or Ctrl-D raises KeyboardInterrupt."""
    try:
        return _ask(question, default, resolve)
    except EOFError:  # Ctrl-D: the person is gone as surely as with Ctrl-C
        raise KeyboardInterrupt from None


def _ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
    message = f"{question.name}: {question.help}"
    output = _terminal()
    if question.choices:
        values = [value for _, value in question.choices]
        choices = [questionary.Choice(title, value) for title, value in question.choices]
        picked = questionary.select(
            message,
            choices=choices,
            default=choices[values.index(default)] if default in values else None,
            instruction="(arrow keys, then Enter)",
            output=output,
        ).unsafe_ask()
        return resolve(picked)
    if question.type == "bool":
        confirmed = questionary.confirm(message, default=bool(default), output=output).unsafe_ask()
        return resolve(confirmed)

    def reason(text: str) -> bool | str:
        try:
            resolve(text)
        except InvalidAnswer as refused:
            return refused.reason
        return True

    text = questionary.text(
        message, default="" if default is None else str(default), validate=reason, output=output
    ).unsafe_ask()
    return resolve(text)
