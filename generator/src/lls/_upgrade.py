"""`lls upgrade`: move a service to a newer template release, keeping the team's edits.

The service's repository is never touched until the very end. Everything happens in a
temporary clone of it: Copier's three-way update (old release rendered with the recorded
answers, the team's diff from it applied onto the new release, conflicts merged inline), the
`_migrations` of the releases passed, the runtime wheel swapped. The result is then fetched
back as a new branch (or applied to the index, with `stage`), with Ctrl-C held off for that
last step; a dry run, an error or an interruption before it leaves the repository as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ._conflicts import find_conflicts, remerge_moved
from ._errors import InvalidAnswer, LlsError, UserMessageError
from ._git import git, git_bytes, holding_off_interrupts
from ._new import Ask, collect_answers
from ._questions import Question, load_questions
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

ANSWERS_FILE = ".copier-answers.yml"
BRANCH_PREFIX = "lls-upgrade/"


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did, or with `dry_run`, would do."""

    path: Path
    from_release: Release
    to_release: Release
    asked: tuple[str, ...]  # questions new in to_release, answered by prompt, --data or default
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]
    conflicts: tuple[str, ...]
    diff: str
    dry_run: bool
    branch: str | None = None  # the branch made (None when staged or dry)
    commit: str | None = None  # the commit on it (None with conflicts: they are resolved first)
    staged: bool = False
    answers: Mapping[str, Any] = field(default_factory=dict)


def upgrade(
    path: Path,
    *,
    to: str | None = None,
    data: Mapping[str, Any] | None = None,
    ask: Ask | None = None,
    dry_run: bool = False,
    stage: bool = False,
    package: Shipped | None = None,
    steps: Steps = SILENT,
) -> Upgrade:
    """Upgrade the service at `path` to release `to` (default: the newest lls carries).

    `data` changes answers (or answers new questions); `ask` prompts for the new questions
    not given (None: their defaults). Raises UserMessageError, changing nothing, when the
    repository is not a clean git repository made by `lls new`, or the version is not newer.
    `steps` is told of each step but the questions (checking, cloning, Copier, conflicts...).
    """
    package = package or shipped()
    path = path.absolute()
    with steps.step(f"Checking {path} and its recorded answers"):
        # --data alone, at the current release, changes answers: the same three-way merge.
        top, recorded, from_release, to_release = _checked_repository(
            package, path, to, same_release_ok=bool(data)
        )
        branch = None if stage or dry_run else BRANCH_PREFIX + to_release.tag
        if branch:
            _check_new_branch(top, branch)
        questions = _questions(package, to_release)
    names = {q.name for q in questions}
    previous = {k: v for k, v in recorded.items() if k in names and not k.startswith("_")}
    fixed = package.fixed_answers(to_release)
    given = ChainMap(dict(data or {}), {k: v for k, v in previous.items() if k not in fixed})
    answers = collect_answers(questions, given, fixed, ask)
    asked = tuple(
        q.name
        for q in questions
        if q.name in answers and q.name not in previous and q.name not in fixed
    )
    changed_answers = {k: answers.get(k) for k, v in previous.items() if answers.get(k) != v}
    if to_release.version == from_release.version and not changed_answers:
        raise UserMessageError(
            f"already at template {from_release.tag} with these answers; nothing to change"
        )

    work = Path(tempfile.mkdtemp(prefix="lls-upgrade-"))
    try:
        clone = work / "service"
        with steps.step(f"Cloning {top} into a temporary directory"):
            git(work, "clone", "--quiet", "--no-hardlinks", str(top), str(clone))
            _copy_identity(top, clone)
        service = clone / path.relative_to(top)
        with steps.step(
            f"Updating from template {from_release.tag} to {to_release.tag} with Copier "
            "(three-way merge, migrations)"
        ):
            _copier_update(package, to_release, answers, service)
            place_runtime_wheel(package, to_release.runtime_version, service)
        with steps.step("Checking for conflicts"):
            conflicts = find_conflicts(clone)
            if conflicts:
                base = work / "base"
                conflicts = remerge_moved(
                    clone, conflicts, lambda: _render(package, recorded, base)
                )
            git(clone, "add", "--all")
            status = git(clone, "diff", "--cached", "--name-status", "-M", "HEAD")
            diff = git(clone, "diff", "--cached", "-M", "--stat", "--patch", "HEAD")
        added, changed, removed, renamed = _summarize(status)
        result = Upgrade(
            path=path,
            from_release=from_release,
            to_release=to_release,
            asked=asked,
            added=added,
            changed=changed,
            removed=removed,
            renamed=renamed,
            conflicts=conflicts,
            diff=diff,
            dry_run=dry_run,
            answers=answers,
        )
        if dry_run:
            return result
        message = _commit_message(package, result, changed_answers)
        where = f"as the new branch {branch}" if branch else "staged on the current branch"
        with steps.step(f"Committing, and bringing the result into {top} {where}"):
            git(clone, "commit", "--quiet", "--no-verify", "-m", message)
            with holding_off_interrupts():
                return _move_in(top, clone, result, branch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _checked_repository(
    package: Shipped, path: Path, to: str | None, *, same_release_ok: bool = False
) -> tuple[Path, dict[str, Any], Release, Release]:
    """The clean repository's top, its recorded answers, their release and the one to go to."""
    top = _repository_top(path)
    recorded = read_answers(path)
    from_release = _recorded_release(package, recorded)
    to_release = package.release(to) if to else package.latest
    if not (same_release_ok and to_release.version == from_release.version):
        _check_direction(from_release, to_release)
    _check_recorded(_questions(package, from_release), recorded)
    _check_clean(top)
    return top, recorded, from_release, to_release


def read_answers(path: Path) -> dict[str, Any]:
    """The service's `.copier-answers.yml`; UserMessageError when missing or not answers."""
    file = path / ANSWERS_FILE
    if not file.is_file():
        raise UserMessageError(
            f"{path} has no {ANSWERS_FILE}: it is not a service made by `lls new` "
            "(or the file was removed: restore it from git history)"
        )
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
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


def _recorded_release(package: Shipped, recorded: Mapping[str, Any]) -> Release:
    commit = recorded.get("_commit")
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


def _check_direction(from_release: Release, to_release: Release) -> None:
    if to_release.version == from_release.version:
        raise UserMessageError(
            f"already at template {from_release.tag}; nothing to upgrade "
            "(--data KEY=VALUE changes answers at the same release)"
        )
    if to_release.version < from_release.version:
        raise UserMessageError(
            f"the service is at template {from_release.tag}; going back to {to_release.tag} "
            "is a downgrade, which lls upgrade refuses (revert the upgrade commit instead)"
        )


def _questions(package: Shipped, release: Release) -> tuple[Question, ...]:
    return load_questions(read_template_file(package.bundle, release.tag, "copier.yml"))


def _check_recorded(questions: tuple[Question, ...], recorded: Mapping[str, Any]) -> None:
    """Every answer the old release asked is recorded and still acceptable."""
    answers: dict[str, Any] = {}
    for question in questions:
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


def _repository_top(path: Path) -> Path:
    if not path.is_dir():
        raise UserMessageError(f"{path} is not a directory")
    try:
        top = git(path, "rev-parse", "--show-toplevel").strip()
    except LlsError:
        raise UserMessageError(
            f"{path} is not in a git repository; lls upgrade works on the repository "
            "`lls new` made (it leaves its result as a branch to review)"
        ) from None
    try:
        git(path, "rev-parse", "--verify", "--quiet", "HEAD")
    except LlsError:
        raise UserMessageError(f"{top} has no commit yet; commit the service first") from None
    return Path(top)


def _check_clean(top: Path) -> None:
    status = git(top, "status", "--porcelain", "--untracked-files=all").splitlines()
    if status:
        shown = "; ".join(line.strip() for line in status[:5])
        more = f" and {len(status) - 5} more" if len(status) > 5 else ""
        raise UserMessageError(
            f"{top} has uncommitted changes ({shown}{more}); commit or stash them first, "
            "so that the upgrade is a change of its own"
        )


def _check_new_branch(top: Path, branch: str) -> None:
    try:
        git(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    except LlsError:
        return
    raise UserMessageError(
        f"branch {branch} already exists (an earlier upgrade?); delete it "
        f"(git branch -D {branch}) or use --stage"
    )


def _copy_identity(top: Path, clone: Path) -> None:
    for key in ("user.name", "user.email"):
        try:
            value = git(top, "config", "--get", key).strip()
        except LlsError:
            continue
        git(clone, "config", key, value)
    if not _has_identity(clone):
        git(clone, "config", "user.name", "lls")
        git(clone, "config", "user.email", "lls@localhost")


def _has_identity(repo: Path) -> bool:
    try:
        git(repo, "var", "GIT_COMMITTER_IDENT")
        git(repo, "var", "GIT_AUTHOR_IDENT")
    except LlsError:
        return False
    return True


def _copier_update(
    package: Shipped, release: Release, answers: Mapping[str, Any], service: Path
) -> None:
    import copier

    try:
        with template_git_env(package.bundle):
            copier.run_update(
                service,
                data=dict(answers),
                vcs_ref=release.tag,
                defaults=True,
                overwrite=True,
                skip_answered=True,
                conflict="inline",
                quiet=True,
                unsafe=True,  # our own template from this installation: migrations, extension
            )
    except Exception as error:  # Copier raises many kinds: plumbum's, OSError, ValueError...
        raise LlsError(f"updating to template {release.tag} failed: {error}") from error


def _render(package: Shipped, recorded: Mapping[str, Any], into: Path) -> Path:
    """The service as the recorded release rendered it from the recorded answers."""
    import copier

    if not into.exists():
        data = {k: v for k, v in recorded.items() if not k.startswith("_")}
        with template_git_env(package.bundle):
            copier.run_copy(
                TEMPLATE_URL,
                into,
                data=data,
                vcs_ref=str(recorded["_commit"]),
                defaults=True,
                overwrite=True,
                quiet=True,
                unsafe=True,
            )
    return into


def _summarize(
    status: str,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    added, changed, removed, renamed = [], [], [], []
    for line in status.splitlines():
        kind, *paths = line.split("\t")
        if kind.startswith("R"):
            renamed.append((paths[0], paths[1]))
        elif kind == "A":
            added.append(paths[0])
        elif kind == "D":
            removed.append(paths[0])
        else:
            changed.append(paths[0])
    return tuple(added), tuple(changed), tuple(removed), tuple(renamed)


def _commit_message(package: Shipped, result: Upgrade, changed: Mapping[str, Any]) -> str:
    old, new = result.from_release, result.to_release
    if old.version == new.version:
        lines = [f"Change answers to the lls service template {new.tag}", ""]
    else:
        lines = [
            f"Upgrade to the lls service template {new.tag} (from {old.tag})",
            "",
            f"Serving runtime {old.runtime_version} -> {new.runtime_version}.",
        ]
    lines += [
        f"{r.tag}: {r.summary}" for r in package.releases if old.version < r.version <= new.version
    ]
    if result.asked:
        lines.append("New answers: " + ", ".join(f"{k}={result.answers[k]}" for k in result.asked))
    if changed:
        lines.append("Changed answers: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    return "\n".join(lines) + "\n"


def _move_in(top: Path, clone: Path, result: Upgrade, branch: str | None) -> Upgrade:
    """Bring the clone's commit into the repository: as a branch, or applied to the index."""
    fetched_ref = "refs/lls-upgrade/result"
    git(top, "fetch", "--quiet", "--no-tags", str(clone), f"+HEAD:{fetched_ref}")
    try:
        commit = git(top, "rev-parse", fetched_ref).strip()
        if branch and not result.conflicts:
            git(top, "branch", branch, commit)
            git(top, "switch", "--quiet", branch)
            return replace(result, branch=branch, commit=commit)
        if branch:
            git(top, "switch", "--quiet", "--create", branch)
        patch = git_bytes(top, "diff", "--binary", "-M", "HEAD", commit)
        git_bytes(top, "apply", "--index", "--whitespace=nowarn", input=patch)
        if result.conflicts:
            git(top, "reset", "--quiet", "--", *result.conflicts)
        return replace(result, branch=branch, staged=branch is None)
    finally:
        git(top, "update-ref", "-d", fetched_ref)
