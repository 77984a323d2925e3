"""A Jinja extension that lets the template's `validator:` entries call lls's checks."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from ._checks import check_answer
from ._errors import InvalidAnswer


@pass_context
def lls_check(context: Context, key: str) -> str:
    """The reason the answer to `key` is refused, or "" when it is fine (Copier's convention)."""
    answers: dict[str, Any] = context.get_all()
    try:
        check_answer(key, answers.get(key), answers)
    except InvalidAnswer as error:
        return error.reason
    return ""


class ChecksExtension(Extension):
    """Adds `lls_check('key')` to the template's Jinja globals (see copier.yml)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals["lls_check"] = lls_check
