"""The template's questions, read from its `copier.yml`, and how an answer becomes a value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from . import _yaml
from ._checks import check_answer
from ._errors import InvalidAnswer, LlsError

_TRUE = {"y", "yes", "true", "on", "1"}
_FALSE = {"n", "no", "false", "off", "0"}
_JINJA = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class Question:
    """One question of copier.yml: its name, type, help, default (a Jinja string) and choices."""

    name: str
    type: str
    help: str
    default: Any = None
    choices: tuple[tuple[str, Any], ...] = ()
    when: Any = True

    @property
    def computed(self) -> bool:
        """A value derived from other answers (`when: false`): never asked, never given."""
        return self.when is False or (
            isinstance(self.when, str) and self.when.strip().lower() in _FALSE
        )

    def is_asked(self, answers: Mapping[str, Any]) -> bool:
        """False for computed values (`when: false`), which Copier derives itself."""
        when = _render(self.when, answers) if isinstance(self.when, str) else self.when
        return _to_bool(when) if isinstance(when, str) else bool(when)

    def default_for(self, answers: Mapping[str, Any]) -> Any:
        """The default, rendered with the earlier answers (e.g. `{{ team }}-model`)."""
        if isinstance(self.default, str):
            return _render(self.default, answers)
        return self.default

    def resolve(self, raw: Any, answers: Mapping[str, Any]) -> Any:
        """The value `raw` stands for, checked; InvalidAnswer says why it cannot be."""
        value = self.parse(raw)
        if self.choices and value not in [v for _, v in self.choices]:
            known = ", ".join(str(v) for _, v in self.choices)
            raise InvalidAnswer(self.name, f"{raw!r} is not one of {known}")
        check_answer(self.name, value, answers)
        return value

    def parse(self, raw: Any) -> Any:
        """Convert text (from the command line, a file or a prompt) to the question's type."""
        text = raw.strip() if isinstance(raw, str) else raw
        try:
            if self.type == "int":
                if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                    raise ValueError
                return int(text)
            if self.type == "float":
                if isinstance(text, bool):
                    raise ValueError
                return float(text)
        except (TypeError, ValueError):
            kind = "a whole number" if self.type == "int" else "a number"
            raise InvalidAnswer(self.name, f"{raw!r} is not {kind}") from None
        if self.type == "bool":
            if isinstance(text, bool):
                return text
            if str(text).lower() in _TRUE | _FALSE:
                return str(text).lower() in _TRUE
            raise InvalidAnswer(self.name, f"{raw!r} is not yes or no")
        return "" if text is None else str(text)


def load_questions(copier_yml: str) -> tuple[Question, ...]:
    """The questions of a template, in the order they are asked (configuration keys skipped)."""
    try:
        document = _yaml.load(copier_yml)
    except _yaml.YamlError as error:
        raise LlsError(f"the template's copier.yml cannot be read: {error}") from None
    if not isinstance(document, dict):
        raise LlsError("the template's copier.yml is not a mapping")
    questions = []
    for name, spec in document.items():
        if name.startswith("_"):
            continue
        if not isinstance(spec, dict):
            raise LlsError(f"the template's question {name!r} is not a mapping")
        choices = spec.get("choices") or ()
        pairs = choices.items() if isinstance(choices, dict) else ((c, c) for c in choices)
        questions.append(
            Question(
                name=name,
                type=str(spec.get("type", "str")),
                help=str(spec.get("help", name)),
                default=spec.get("default"),
                choices=tuple((str(title), value) for title, value in pairs),
                when=spec.get("when", True),
            )
        )
    return tuple(questions)


def _render(template: str, answers: Mapping[str, Any]) -> str:
    return _JINJA.from_string(template).render(**answers)


def _to_bool(text: str) -> bool:
    return text.strip().lower() in _TRUE
