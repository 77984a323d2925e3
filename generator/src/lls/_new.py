"""`lls new`: collect and check the answers, render the template, commit, put it in place.

Nothing appears at the destination until everything has worked: the service is rendered and
committed in a hidden directory beside it, which is then moved into place (or removed). Only
the rendered files are ever committed: what DEST held before (`--force`) is left as it was,
untracked. Inside an existing git repository (a monorepo), the service is committed there,
as a commit of its own files, rather than as a repository nested in another.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import _copier, _yaml
from ._errors import InvalidAnswer, UserMessageError
from ._git import (
    Identity,
    commit,
    git,
    holding_off_interrupts,
    identity,
    ignored,
    repository_top,
)
from ._questions import Question, load_questions
from ._shipped import Shipped, read_template_file, shipped
from ._steps import SILENT, Steps

Ask = Callable[[Question, Any, Callable[[Any], Any]], Any]
"""Prompt for one question: (question, default, resolve) -> the resolved value.

`resolve(text)` returns the checked value or raises InvalidAnswer with the reason to show."""


@dataclass(frozen=True)
class Commit:
    """The first commit: its id, who it is by, and the repository it was made in."""

    sha: str
    author: Identity
    repository: Path  # the service itself, or the existing repository that holds it


@dataclass(frozen=True)
class NewService:
    """What `new` made."""

    path: Path
    answers: Mapping[str, Any]
    template_version: str
    runtime_version: str
    commit: Commit

    @property
    def nested(self) -> bool:
        """True when the service was committed into an existing repository that holds it."""
        return self.commit.repository != self.path


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
        content = _yaml.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, _yaml.YamlError) as error:
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
    """Answer every question: given (command line, then file) > prompt (or default).

    `fixed` holds what lls itself supplies (the runtime version); nobody may override it, nor
    the computed values (package_name...), which are always derived from the other answers.
    With `ask=None` the defaults are taken. Every value is checked, whatever its source.
    """
    names = [q.name for q in questions if q.name not in fixed and not q.computed]
    unknown = sorted(set(given) - {q.name for q in questions} - set(fixed))
    if unknown:
        keys = ", ".join(unknown)
        raise InvalidAnswer(keys, f"no such question; the questions are {', '.join(names)}")
    overridden = sorted(set(given) & set(fixed))
    if overridden:
        key = overridden[0]
        raise InvalidAnswer(key, f"is set by lls ({fixed[key]}) and cannot be given")
    computed = sorted(q.name for q in questions if q.computed and q.name in given)
    if computed:
        raise InvalidAnswer(
            ", ".join(computed), "is computed from the other answers and cannot be given"
        )
    answers: dict[str, Any] = {}
    for question in questions:
        if question.name in fixed:
            answers[question.name] = question.resolve(fixed[question.name], answers)
        elif question.name in given:
            answers[question.name] = question.resolve(given[question.name], answers)
        elif not question.is_asked(answers):  # Copier computes `when: false` ones itself
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
    try:
        if dest.exists() and not dest.is_dir():
            raise UserMessageError(f"{dest} exists and is not a directory")
        if dest.is_dir() and any(dest.iterdir()) and not force:
            raise UserMessageError(f"{dest} exists and is not empty; use --force to render into it")
    except OSError as error:
        raise UserMessageError(f"cannot use {dest}: {error.strerror or error}") from None


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
    work = _work_directory(dest)
    try:
        with steps.step(
            f"Rendering template {release.tag} with serving runtime {release.runtime_version}"
        ):
            _copier.render(package, release, answers, work)
        message = f"Generate {answers['service_name']} from the lls service template {release.tag}"
        top = repository_top(dest)
        where = top if top is not None else dest
        with steps.step(f"Making the first git commit in {where}"):
            if top is None:
                made = _commit_alone(work, dest, message)
            else:
                made = _commit_in(top, work, dest, message)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return NewService(dest, answers, release.tag, release.runtime_version, made)


def _work_directory(dest: Path) -> Path:
    """A hidden directory beside `dest`, with the permissions the umask gives a new one."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as error:
        blocking = next((p for p in dest.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocking} is not a directory" if blocking else error.strerror or error
        raise UserMessageError(f"cannot write {dest}: {reason}") from None
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700, and it becomes DEST
    return work


def _rendered_files(work: Path) -> list[str]:
    return sorted(
        str(file.relative_to(work))
        for file in work.rglob("*")
        if not file.is_dir() and ".git" not in file.relative_to(work).parts[:1]
    )


def _commit_alone(work: Path, dest: Path, message: str) -> Commit:
    """A repository of its own: committed in `work`, then moved to `dest`."""
    git(work, "init", "--quiet", "--initial-branch=main")
    git(work, "add", "--all")
    by = identity(work)
    sha = commit(work, message, by=by)
    with holding_off_interrupts():
        if not dest.exists():
            work.rename(dest)
        elif not any(dest.iterdir()):  # empty: keep the directory itself (it may be the cwd)
            for child in work.iterdir():
                child.rename(dest / child.name)
        else:  # --force: what DEST held stays, untracked, unless the render replaces it
            for name in _rendered_files(work):
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(work / name, dest / name)
            (work / ".git").rename(dest / ".git")
    return Commit(sha, by, dest)


def _commit_in(top: Path, work: Path, dest: Path, message: str) -> Commit:
    """Inside the existing repository `top`: a commit of the rendered files, and of no other."""
    names = _rendered_files(work)
    inside = dest.relative_to(top)
    paths = tuple(str(inside / name) for name in names)
    refused = ignored(top, paths)
    if refused:
        raise UserMessageError(
            f"{dest} is inside the git repository {top}, which ignores {refused[0]}; "
            "choose a destination it does not ignore"
        )
    with holding_off_interrupts():
        for name in names:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / name, dest / name)
        git(top, "add", "--", *paths)
        by = identity(top)
        sha = commit(top, message, by=by, paths=paths)
    return Commit(sha, by, top)


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
