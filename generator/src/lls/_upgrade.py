"""`lls upgrade`: move a service to a newer template release, keeping the team's edits.

The service's repository is never touched until the very end. Everything happens in a
temporary clone of it: Copier's three-way update (old release rendered with the recorded
answers, the team's diff from it applied onto the new release), the `_migrations` of the
releases passed, the runtime wheel swapped, conflicts merged again as git merges them. The
result is then brought in (`_landing`) as a new branch, or staged, or, with conflicts, as
git's own unfinished merge, with Ctrl-C held off for that last step; a dry run, an error or
an interruption before it leaves the repository as it was.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import _copier, _landing, _service
from ._conflicts import Conflict, collect, labels, leftover_rejects
from ._errors import LlsError, UserMessageError
from ._git import git, holding_off_interrupts, identity, repository_top, require_commit, succeeds
from ._new import Ask, collect_answers
from ._shipped import Release, Shipped, shipped
from ._steps import SILENT, Steps

BRANCH_PREFIX = "lls-upgrade/"


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did, or with `dry_run`, would do."""

    path: Path  # the service's root directory
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
    branch: str | None = None  # the branch made (None when staged, dry or current)
    commit: str | None = None  # the commit on it (None with conflicts: they are resolved first)
    staged: bool = False
    answers: Mapping[str, Any] = field(default_factory=dict)
    changed_answers: Mapping[str, Any] = field(default_factory=dict)
    current: bool = False  # nothing to do: already at that release with these answers
    # Files the team deleted (or moved) that the new release would have brought back.
    kept_deleted: tuple[str, ...] = ()


def upgrade_branch(service_name: str, release: Release, changed: Mapping[str, Any]) -> str:
    """The branch of an upgrade: per service (a monorepo holds several), per release, and per
    change of answers (a second change of answers is a second branch)."""
    branch = f"{BRANCH_PREFIX}{service_name}/{release.tag}"
    if changed:
        digest = hashlib.sha256(repr(sorted(changed.items())).encode()).hexdigest()[:8]
        branch += f"-answers-{digest}"
    return branch


@dataclass(frozen=True)
class _Plan:
    """An upgrade decided on: the service, its repository, the release and the answers."""

    service: _service.Service
    top: Path
    release: Release
    answers: dict[str, Any]
    asked: tuple[str, ...]
    changed_answers: dict[str, Any]


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
    """Upgrade the service at `path` (or holding it) to release `to` (default: the newest).

    `data` changes answers (or answers new questions); `ask` prompts for the new questions
    not given (None: their defaults). Already at that release with those answers, nothing is
    done (`current`). Raises UserMessageError, changing nothing, when the repository is not
    a git repository made by `lls new`, is not clean (but for a dry run), or the release is
    older. `steps` is told of each step but the questions.
    """
    package = package or shipped()
    plan = _plan(package, path, to, data or {}, ask, dry_run=dry_run, steps=steps)
    if isinstance(plan, Upgrade):
        return plan
    service, top = plan.service, plan.top
    branch = None
    if not (stage or dry_run):
        branch = upgrade_branch(service.name, plan.release, plan.changed_answers)
        _check_new_branch(top, branch)
    work = Path(tempfile.mkdtemp(prefix="lls-upgrade-"))
    try:
        clone = work / "service"
        with steps.step(f"Cloning {top} into a temporary directory"):
            git(work, "clone", "--quiet", "--no-hardlinks", str(top), str(clone))
        inside = service.path.relative_to(top).as_posix()
        with steps.step(
            f"Updating from template {service.release.tag} to {plan.release.tag} with Copier "
            "(three-way merge, migrations)"
        ):
            _copier.update(package, plan.release, plan.answers, clone / inside)
        with steps.step("Checking for conflicts"):
            prefix = "" if inside == "." else f"{inside}/"
            moves = tuple(
                (prefix + a, prefix + b)
                for a, b in _service.renames(package, service.release, plan.release)
            )
            conflicts, kept_deleted = _merge_again(
                package, plan, clone=clone, inside=inside, moves=moves, work=work
            )
            result = _described(plan, clone, conflicts, moves, kept_deleted, dry_run=dry_run)
        if dry_run:
            return result
        message = _commit_message(package, result)
        where = f"as the new branch {branch}" if branch else "staged on the current branch"
        with (
            steps.step(f"Committing, and bringing the result into {top} {where}"),
            holding_off_interrupts(),
        ):
            made = _landing.land(
                top, clone, branch=branch, message=message, conflicts=conflicts, by=identity(top)
            )
        return replace(result, branch=branch, commit=made, staged=branch is None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _plan(
    package: Shipped,
    path: Path,
    to: str | None,
    data: Mapping[str, Any],
    ask: Ask | None,
    *,
    dry_run: bool,
    steps: Steps,
) -> _Plan | Upgrade:
    """What to upgrade, and to what, once checked and answered; or, with nothing to do, that."""
    with steps.step(f"Checking {path.absolute()} and its recorded answers"):
        service = _service.load(package, path)
        top = _repository_of(service.path)
        release = package.release(to) if to else package.latest
        _check_direction(service.release, release)
        if release.version == service.release.version and not data:
            return _current(service, release, dry_run)
        _service.check_recorded(_service.questions(package, service.release), service.answers)
        if not dry_run:
            _check_clean(top)
        questions = _service.questions(package, release)
    previous = service.given()
    names = {q.name for q in questions}
    fixed = package.fixed_answers(release)
    kept = {k: v for k, v in previous.items() if k in names and k not in fixed}
    answers = collect_answers(questions, ChainMap(dict(data), kept), fixed, ask)
    asked = tuple(
        q.name
        for q in questions
        if q.name in answers and q.name not in previous and q.name not in fixed and not q.computed
    )
    changed_answers = {k: answers.get(k) for k, v in kept.items() if answers.get(k) != v}
    if release.version == service.release.version and not changed_answers:
        return _current(service, release, dry_run)
    return _Plan(service, top, release, answers, asked, changed_answers)


def _described(
    plan: _Plan,
    clone: Path,
    conflicts: tuple[Conflict, ...],
    moves: tuple[tuple[str, str], ...],
    kept_deleted: tuple[str, ...],
    *,
    dry_run: bool,
) -> Upgrade:
    """Everything but the conflicts staged in the clone, and the result described.

    `moves` are the files the releases' migrations moved: renamed, however much the release
    also changed them (git's rename detection alone misses a file changed by half or more).
    """
    stuck = leftover_rejects(clone)
    if stuck:
        raise LlsError(f"Copier could not merge {', '.join(stuck)}; upgrade this service by hand")
    git(clone, "add", "--all", "--", *_outside(conflicts))
    status = git(clone, "diff", "--cached", "--name-status", "-M", "HEAD")
    diff = git(clone, "diff", "--cached", "-M", "--stat", "--patch", "HEAD")
    added, changed, removed, renamed = _summarize(status, moves)
    return Upgrade(
        path=plan.service.path,
        from_release=plan.service.release,
        to_release=plan.release,
        asked=plan.asked,
        added=added,
        changed=changed,
        removed=removed,
        renamed=renamed,
        conflicts=tuple(c.path for c in conflicts),
        diff=diff,
        dry_run=dry_run,
        kept_deleted=kept_deleted,
        answers=plan.answers,
        changed_answers=plan.changed_answers,
    )


def _current(service: _service.Service, release: Release, dry_run: bool) -> Upgrade:
    return Upgrade(
        path=service.path,
        from_release=service.release,
        to_release=release,
        asked=(),
        added=(),
        changed=(),
        removed=(),
        renamed=(),
        conflicts=(),
        diff="",
        dry_run=dry_run,
        answers=service.given(),
        current=True,
    )


def _merge_again(
    package: Shipped,
    plan: _Plan,
    *,
    clone: Path,
    inside: str,
    moves: tuple[tuple[str, str], ...],
    work: Path,
) -> tuple[tuple[Conflict, ...], tuple[str, ...]]:
    """Keep deleted what the team deleted (`_keep_deleted`); merge conflicts again.

    Returns the conflicts left and the files kept deleted (paths in `clone`)."""
    service, release = plan.service, plan.release
    base = _copier.render(package, service.release, service.given(), work / "base")
    kept_deleted = _keep_deleted(clone, inside, base, moves)
    moved_from = {new: old for old, new in moves}
    conflicts = collect(
        clone, moved_from, lambda: base, inside, labels(service.release.tag, release.tag)
    )
    return conflicts, kept_deleted


def _keep_deleted(
    clone: Path, inside: str, base: Path, moves: tuple[tuple[str, str], ...]
) -> tuple[str, ...]:
    """Remove again from `clone` what the new release brought back of the files the team
    deleted (or moved), as a three-way merge keeps a side's deletion: every file the old
    release rendered (`base`) that the team's last commit no longer has, and the new path of
    a file a migration renamed (`moves`) that the team had deleted before. Copier's update
    misses these: its diff leaves out the files of `_skip_if_exists`, and a file missing from
    the service is one such a pattern lets the new release create."""
    head = set(git(clone, "ls-tree", "-r", "--name-only", "-z", "HEAD").split("\0"))
    prefix = "" if inside == "." else f"{inside}/"
    rendered = (p.relative_to(base).as_posix() for p in base.rglob("*") if not p.is_dir())
    deleted = {prefix + name for name in rendered if prefix + name not in head}
    deleted |= {new for old, new in moves if old not in head and new not in head}
    kept = []
    for name in sorted(deleted):
        came_back = (clone / name).exists() or (clone / name).is_symlink()
        if succeeds(clone, "ls-files", "--error-unmatch", "--", name):
            git(clone, "rm", "--quiet", "--cached", "--", name)
            came_back = True
        if came_back:
            (clone / name).unlink(missing_ok=True)
            kept.append(name)
    return tuple(kept)


def _outside(conflicts: tuple[Conflict, ...]) -> list[str]:
    """Pathspecs for everything but the conflicted files (left unmerged)."""
    return [".", *(f":(exclude,literal){c.path}" for c in conflicts)]


def _repository_of(root: Path) -> Path:
    top = repository_top(root)
    if top is None:
        raise UserMessageError(
            f"{root} is not in a git repository; lls upgrade works on the repository "
            "`lls new` made (it leaves its result as a branch to review)"
        )
    require_commit(top)
    waiting = _landing.pending(top)
    if waiting is not None:
        raise UserMessageError(
            f"an upgrade with conflicts is in progress in {top} ({', '.join(waiting.conflicts)}):"
            " resolve them and run lls upgrade --continue, or undo it with lls upgrade --abort"
        )
    return top


def _check_direction(from_release: Release, to_release: Release) -> None:
    if to_release.version < from_release.version:
        raise UserMessageError(
            f"the service is at template {from_release.tag}; going back to {to_release.tag} "
            "is a downgrade, which lls upgrade refuses (revert the upgrade commit instead)"
        )


def _check_clean(top: Path) -> None:
    status = git(top, "status", "--porcelain", "--untracked-files=all").splitlines()
    if status:
        shown = "; ".join(line.strip() for line in status[:5])
        more = f" and {len(status) - 5} more" if len(status) > 5 else ""
        raise UserMessageError(
            f"{top} has uncommitted changes ({shown}{more}); commit or stash them first, "
            "so that the upgrade is a change of its own (a --dry-run works on them as they are)"
        )


def _check_new_branch(top: Path, branch: str) -> None:
    if not succeeds(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        return
    raise UserMessageError(
        f"branch {branch} already exists (an earlier upgrade?); delete it "
        f"(git branch -D {branch}) or use --stage"
    )


def _summarize(
    status: str, moves: tuple[tuple[str, str], ...] = ()
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
    for source, target in moves:
        if source in removed and target in added:
            removed.remove(source)
            added.remove(target)
            renamed.append((source, target))
    return tuple(added), tuple(changed), tuple(removed), tuple(renamed)


def _commit_message(package: Shipped, result: Upgrade) -> str:
    old, new = result.from_release, result.to_release
    name = result.answers.get("service_name", result.path.name)
    if old.version == new.version:
        lines = [f"Change answers of {name} to the lls service template {new.tag}", ""]
    else:
        lines = [
            f"Upgrade {name} to the lls service template {new.tag} (from {old.tag})",
            "",
            f"Serving runtime {old.runtime_version} -> {new.runtime_version}.",
        ]
    lines += [
        f"{r.tag}: {r.summary}" for r in package.releases if old.version < r.version <= new.version
    ]
    if result.asked:
        lines.append("New answers: " + ", ".join(f"{k}={result.answers[k]}" for k in result.asked))
    if result.changed_answers:
        changed = result.changed_answers.items()
        lines.append("Changed answers: " + ", ".join(f"{k}={v}" for k, v in changed))
    return "\n".join(lines) + "\n"
