"""A service made by `lls new`, as read from its files: where it is, its answers, its release.

`upgrade`, `check`, `diff` and `fleet` all start here; none of it needs more than the
service's answers file (and git, to find the repository around it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from . import _yaml
from ._errors import InvalidAnswer, UserMessageError
from ._git import repository_top
from ._questions import Question, load_questions
from ._shipped import TEMPLATE_URL, Release, Shipped, read_template_file

ANSWERS_FILE = ".copier-answers.yml"


@dataclass(frozen=True)
class Service:
    """A service's root directory, its recorded answers and the release they record."""

    path: Path
    answers: Mapping[str, Any]  # as recorded, Copier's own keys (_commit, _src_path) included
    release: Release

    @property
    def name(self) -> str:
        """The service's name, as answered."""
        return str(self.answers.get("service_name", self.path.name))

    @property
    def team(self) -> str:
        """The owning team, as answered."""
        return str(self.answers.get("team", ""))

    @property
    def runtime_version(self) -> str:
        """The serving runtime version the service pins (recorded with its answers)."""
        return str(self.answers.get("runtime_version") or self.release.runtime_version)

    def given(self) -> dict[str, Any]:
        """The answers alone, without Copier's bookkeeping."""
        return {k: v for k, v in self.answers.items() if not k.startswith("_")}


def find_root(path: Path) -> Path:
    """The service holding `path`: `path` or the nearest parent with an answers file.

    The search stops at the top of the git repository holding `path` (a monorepo's services
    are found from their own subdirectories, never from a sibling's).
    """
    path = path.absolute()
    if not path.is_dir():
        raise UserMessageError(f"{path} is not a directory")
    top = repository_top(path)
    # Outside a repository, only `path` itself: a parent could be anything.
    for candidate in (path, *path.parents) if top else (path,):
        if (candidate / ANSWERS_FILE).is_file():
            return candidate
        if candidate == top:
            break
    above = f", nor has any directory above it up to {top}" if top and top != path else ""
    raise UserMessageError(
        f"{path} has no {ANSWERS_FILE}{above}: it is not a service made by `lls new` "
        "(or the file was removed: restore it from git history)"
    )


def read_answers(root: Path) -> dict[str, Any]:
    """The service's `.copier-answers.yml`; UserMessageError when missing or not lls's answers."""
    file = root / ANSWERS_FILE
    try:
        content = _yaml.load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserMessageError(
            f"{root} has no {ANSWERS_FILE}: it is not a service made by `lls new` "
            "(or the file was removed: restore it from git history)"
        ) from None
    except (OSError, UnicodeDecodeError, _yaml.YamlError) as error:
        raise UserMessageError(f"{file} cannot be read as YAML: {error}") from None
    if not isinstance(content, dict):
        raise UserMessageError(f"{file} is not a mapping of question: answer; restore it from git")
    source = content.get("_src_path")
    if source != TEMPLATE_URL:
        raise UserMessageError(
            f"{file} records the template {source!r}, not the lls service template "
            f"({TEMPLATE_URL}): this service was not made by `lls new`"
        )
    return {str(k): v for k, v in content.items()}


def recorded_release(package: Shipped, answers: Mapping[str, Any]) -> Release:
    """The release the answers record (`_commit`); UserMessageError when this lls lacks it."""
    commit = answers.get("_commit")
    if not isinstance(commit, str) or not commit:
        raise UserMessageError(
            f"{ANSWERS_FILE} has no template version (_commit); restore it from git history"
        )
    try:
        return package.release(commit)
    except UserMessageError:
        known = ", ".join(r.tag for r in package.releases)
        raise UserMessageError(
            f"{ANSWERS_FILE} records template version {commit!r}, which this lls does not know "
            f"(it knows {known}); install the lls that made it, or a newer one"
        ) from None


def load(package: Shipped, path: Path) -> Service:
    """The service at `path` (or holding it): root, answers and release, each checked."""
    root = find_root(path)
    answers = read_answers(root)
    return Service(root, answers, recorded_release(package, answers))


def questions(package: Shipped, release: Release) -> tuple[Question, ...]:
    """The questions of `release`, read from its copier.yml."""
    return load_questions(read_template_file(package.bundle, release.tag, "copier.yml"))


def renames(package: Shipped, old: Release, new: Release) -> tuple[tuple[str, str], ...]:
    """The files the releases after `old`, up to `new`, move (`git mv` migrations): (from, to).

    Paths are relative to the service. The migrations are read from `new`'s copier.yml, which
    lists those of every release before it.
    """
    config = _yaml.load(read_template_file(package.bundle, new.tag, "copier.yml"))
    moved = []
    for migration in config.get("_migrations") or ():
        command = migration.get("command")
        try:
            version = Version(str(migration.get("version")))
        except InvalidVersion:
            continue
        if not old.version < version <= new.version or not isinstance(command, list):
            continue
        words = [str(word) for word in command]
        if words[:2] == ["git", "mv"]:
            *sources, target = [word for word in words[2:] if not word.startswith("-")]
            if len(sources) == 1 and not target.endswith("/"):
                moved.append((sources[0], target))
            else:  # git mv A B ... DIR/: each into the directory, under its own name
                folder = target.rstrip("/")
                moved += [(source, f"{folder}/{source.rsplit('/', 1)[-1]}") for source in sources]
    return tuple(moved)


def check_recorded(found: tuple[Question, ...], recorded: Mapping[str, Any]) -> None:
    """Every answer the release asked is recorded and still acceptable."""
    answers: dict[str, Any] = {}
    for question in found:
        if question.computed:
            continue
        if not question.is_asked(answers) and question.name not in recorded:
            continue
        if question.name not in recorded:
            raise UserMessageError(
                f"{ANSWERS_FILE} has no answer to {question.name!r}; restore the file from git "
                "history, or add it (lls new --help lists what the questions accept)"
            )
        try:
            answers[question.name] = question.resolve(recorded[question.name], answers)
        except InvalidAnswer as refused:
            raise UserMessageError(
                f"{ANSWERS_FILE}: {refused}; it was edited by hand: restore it from git history"
            ) from None


def releases_behind(package: Shipped, release: Release, to: Release | None = None) -> int:
    """How many releases this lls carries after `release`, up to `to` (default: the newest)."""
    end = (to or package.latest).version
    return sum(1 for r in package.releases if release.version < r.version <= end)
