"""`lls new`: collect and check the answers, render the template, commit, put it in place.

Nothing appears at the destination until everything has worked: the service is rendered and
committed in a hidden directory beside it, which is then renamed into place (or removed).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ._errors import InvalidAnswer, LlsError, UserMessageError
from ._questions import Question, load_questions
from ._repo import Commit, commit_all
from ._shipped import (
    TEMPLATE_URL,
    Release,
    Shipped,
    place_runtime_wheel,
    read_template_file,
    shipped,
    template_git_env,
)
from ._steps import SILENT, Steps

Ask = Callable[[Question, Any, Callable[[Any], Any]], Any]
"""Prompt for one question: (question, default, resolve) -> the resolved value.

`resolve(text)` returns the checked value or raises InvalidAnswer with the reason to show."""


@dataclass(frozen=True)
class NewService:
    """What `new` made."""

    path: Path
    answers: Mapping[str, Any]
    template_version: str
    runtime_version: str
    commit: Commit


def parse_data(pairs: list[str]) -> dict[str, str]:
    """`["team=payments", ...]` -> `{"team": "payments"}`."""
    data = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise UserMessageError(f"--data {pair!r}: write it as KEY=VALUE")
        data[key.strip()] = value
    return data


def read_data_file(path: Path) -> dict[str, Any]:
    """The answers of a YAML file such as a previous `.copier-answers.yml`."""
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserMessageError(f"--data-file {path}: {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserMessageError(f"--data-file {path}: expected a mapping of question: answer")
    # Copier's own bookkeeping (_commit, _src_path) is not an answer.
    return {str(k): v for k, v in content.items() if not str(k).startswith("_")}


def collect_answers(
    questions: tuple[Question, ...],
    given: Mapping[str, Any],
    fixed: Mapping[str, Any],
    ask: Ask | None,
) -> dict[str, Any]:
    """Answer every question: given (command line, then file) > prompt (or default) .

    `fixed` holds what lls itself supplies (the runtime version); nobody may override it.
    With `ask=None` the defaults are taken. Every value is checked, whatever its source.
    """
    names = [q.name for q in questions if q.name not in fixed]
    unknown = sorted(set(given) - set(names) - set(fixed))
    if unknown:
        raise InvalidAnswer(unknown[0], f"no such question; the questions are {', '.join(names)}")
    overridden = sorted(set(given) & set(fixed))
    if overridden:
        key = overridden[0]
        raise InvalidAnswer(key, f"is set by lls ({fixed[key]}) and cannot be given")
    answers: dict[str, Any] = {}
    for question in questions:
        if question.name in fixed:
            answers[question.name] = question.resolve(fixed[question.name], answers)
        elif question.name in given:
            answers[question.name] = question.resolve(given[question.name], answers)
        elif not question.is_asked(answers):
            continue
        elif ask is None:
            answers[question.name] = question.resolve(question.default_for(answers), answers)
        else:
            answers[question.name] = ask(
                question,
                question.default_for(answers),
                partial(question.resolve, answers=dict(answers)),
            )
    return answers


def check_destination(dest: Path, *, force: bool) -> None:
    """Refuse a destination that holds files, unless forced; refuse one that is a file."""
    if dest.exists() and not dest.is_dir():
        raise UserMessageError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise UserMessageError(f"{dest} exists and is not empty; use --force to render into it")


def new(
    dest: Path | None,
    *,
    data: Mapping[str, Any] | None = None,
    data_file: Mapping[str, Any] | None = None,
    ask: Ask | None = None,
    force: bool = False,
    package: Shipped | None = None,
    version: str | None = None,
    steps: Steps = SILENT,
) -> NewService:
    """Render a new service repository at `dest` (default: ./<service_name>) and commit it.

    `version` names the template release (default: the newest this lls carries); `steps` is
    told of each step after the questions (reading the template, rendering, committing).
    """
    package = package or shipped()
    release = package.release(version) if version else package.latest
    if dest is not None:
        check_destination(dest, force=force)
    with steps.step(f"Reading the questions of template {release.tag}"):
        copier_yml = read_template_file(package.bundle, release.tag, "copier.yml")
    questions = load_questions(copier_yml)
    fixed = package.fixed_answers(release)
    # Another service's answers file holds values lls sets itself: this lls's win over them.
    from_file = {k: v for k, v in (data_file or {}).items() if k not in fixed}
    given = ChainMap(dict(data or {}), from_file)
    if dest is None and ask is not None:
        ask = _refusing_taken_destinations(ask, force=force)
    answers = collect_answers(questions, given, fixed, ask)
    if dest is None:
        dest = Path.cwd() / str(answers["service_name"])
        check_destination(dest, force=force)
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with steps.step(
            f"Rendering template {release.tag} with serving runtime {release.runtime_version}"
        ):
            _render(package, release, answers, work)
        message = f"Generate {answers['service_name']} from the lls service template {release.tag}"
        with steps.step(f"Making the first git commit in {dest}"):
            if dest.is_dir() and any(dest.iterdir()):
                shutil.copytree(work, dest, dirs_exist_ok=True)
                commit = commit_all(dest, message)
            else:
                commit = commit_all(work, message)
                if dest.is_dir():  # empty: keep the directory itself (it may be the cwd)
                    for child in work.iterdir():
                        child.rename(dest / child.name)
                else:
                    work.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return NewService(dest, answers, release.tag, release.runtime_version, commit)


def _refusing_taken_destinations(ask: Ask, *, force: bool) -> Ask:
    """Refuse, at its prompt, a service name whose ./<service_name> is taken."""

    def ask_with_check(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
        def resolve_and_check(raw: Any) -> Any:
            value = resolve(raw)
            try:
                check_destination(Path.cwd() / str(value), force=force)
            except UserMessageError as taken:
                raise InvalidAnswer(question.name, str(taken)) from None
            return value

        is_name = question.name == "service_name"
        return ask(question, default, resolve_and_check if is_name else resolve)

    return ask_with_check


def _render(package: Shipped, release: Release, answers: Mapping[str, Any], work: Path) -> None:
    import copier  # only now: importing it costs half a second before the first question

    try:
        with template_git_env(package.bundle):
            copier.run_copy(
                TEMPLATE_URL,
                work,
                data=dict(answers),
                vcs_ref=release.tag,
                defaults=True,
                overwrite=True,
                quiet=True,
                unsafe=True,  # our own template, from this installation: it loads ChecksExtension
            )
    except Exception as error:  # Copier raises many kinds: plumbum's, OSError, ValueError...
        raise LlsError(f"rendering template {release.tag} failed: {error}") from error
    place_runtime_wheel(package, release.runtime_version, work)
