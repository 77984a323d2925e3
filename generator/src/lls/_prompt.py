"""Ask the template's questions in a terminal (questionary), re-asking with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import questionary

from ._errors import InvalidAnswer
from ._questions import Question


def ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
    """Prompt until `resolve` accepts the answer; Ctrl-C raises KeyboardInterrupt."""
    message = f"{question.name}: {question.help}"
    if question.choices:
        values = [value for _, value in question.choices]
        choices = [questionary.Choice(title, value) for title, value in question.choices]
        picked = questionary.select(
            message,
            choices=choices,
            default=choices[values.index(default)] if default in values else None,
            instruction="(arrow keys, then Enter)",
        ).unsafe_ask()
        return resolve(picked)
    if question.type == "bool":
        confirmed = questionary.confirm(message, default=bool(default)).unsafe_ask()
        return resolve(confirmed)

    def reason(text: str) -> bool | str:
        try:
            resolve(text)
        except InvalidAnswer as refused:
            return refused.reason
        return True

    text = questionary.text(
        message, default="" if default is None else str(default), validate=reason
    ).unsafe_ask()
    return resolve(text)
