"""Bringing an upgrade made in a temporary clone into the team's repository, and, when it has
conflicts, finishing it (`--continue`) or undoing it (`--abort`).

A clean upgrade arrives as one commit on a new branch (or staged on the current one). One with
conflicts arrives as git's own unfinished merge: the clean changes staged, each conflicted file
unmerged in the index (stages 1, 2 and 3) and written with diff3 markers, so that `git status`,
`git mergetool` and editors see it. What is needed to finish or undo it (lls's commit message,
the branch the team was on) is kept in the repository's git directory, in `lls-upgrade.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ._conflicts import Conflict, markers_left
from ._errors import LlsError, UserMessageError
from ._git import Identity, commit, git, git_bytes, identity, repository_top

STATE = "lls-upgrade.json"
RESULT_REF = "refs/lls-upgrade/result"
_NO_SHA = "0" * 40


@dataclass(frozen=True)
class Pending:
    """An upgrade left with conflicts to resolve."""

    branch: str | None  # the branch made for it (None: staged on the branch the team was on)
    previous: str | None  # the branch the team was on (None: a detached HEAD)
    head: str  # the commit the team was at, which the upgrade starts from
    message: str  # the commit message --continue uses
    conflicts: tuple[str, ...]


@dataclass(frozen=True)
class Finished:
    """What `--continue` or `--abort` did."""

    top: Path
    branch: str | None  # the upgrade's branch (continue), or the one returned to (abort)
    commit: str | None  # the upgrade's commit (continue), or the commit returned to (abort)


def land(
    top: Path,
    clone: Path,
    *,
    branch: str | None,
    message: str,
    conflicts: tuple[Conflict, ...],
    by: Identity,
) -> str | None:
    """Bring the clone's staged result into `top`; the commit made, None when left to resolve."""
    for conflict in conflicts:  # carried to `top` with their markers, then unmerged there
        (clone / conflict.path).write_bytes(conflict.merged)
        git(clone, "add", "--", conflict.path)
    git(clone, "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message, env=by.env)
    git(top, "fetch", "--quiet", "--no-tags", str(clone), f"+HEAD:{RESULT_REF}")
    try:
        result = git(top, "rev-parse", RESULT_REF).strip()
        if branch and not conflicts:
            git(top, "branch", branch, result)
            git(top, "switch", "--quiet", branch)
            return result
        previous = git(top, "branch", "--show-current").strip() or None
        head = git(top, "rev-parse", "HEAD").strip()
        if branch:
            git(top, "switch", "--quiet", "--create", branch)
        patch = git_bytes(top, "diff", "--binary", "-M", "HEAD", result)
        if patch:
            git_bytes(top, "apply", "--index", "--whitespace=nowarn", input=patch)
        if conflicts:
            _unmerge(top, conflicts)
            paths = tuple(c.path for c in conflicts)
            _save(top, Pending(branch, previous, head, message, paths))
        return None
    finally:
        git(top, "update-ref", "-d", RESULT_REF)


def _unmerge(top: Path, conflicts: tuple[Conflict, ...]) -> None:
    """Put each conflicted file in the index as git's merge does: stages 1, 2, 3, no stage 0."""
    lines = []
    for conflict in conflicts:
        lines.append(f"0 {_NO_SHA}\t{conflict.path}")
        for number, stage in sorted(conflict.stages.items()):
            sha = git(top, "hash-object", "-w", "--stdin", input=stage.content).strip()
            lines.append(f"{stage.mode} {sha} {number}\t{conflict.path}")
    git(top, "update-index", "--index-info", input=("\n".join(lines) + "\n").encode())


def _state_file(top: Path) -> Path:
    return top / git(top, "rev-parse", "--git-path", STATE).strip()


def _save(top: Path, pending: Pending) -> None:
    _state_file(top).write_text(json.dumps(asdict(pending), indent=2) + "\n", encoding="utf-8")


def pending(top: Path) -> Pending | None:
    """The upgrade waiting for its conflicts in `top`, if any.

    One the team finished with git itself (a commit made on top of it) is no longer pending.
    """
    file = _state_file(top)
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
        found = Pending(**{**content, "conflicts": tuple(content["conflicts"])})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise LlsError(f"{file} cannot be read ({error}); remove it") from None
    if git(top, "rev-parse", "HEAD").strip() != found.head:
        file.unlink()
        return None
    return found


def _pending_in(path: Path) -> tuple[Path, Pending]:
    top = repository_top(path.absolute())
    if top is None:
        raise UserMessageError(f"{path.absolute()} is not in a git repository")
    found = pending(top)
    if found is None:
        raise UserMessageError(f"no upgrade with conflicts is in progress in {top}")
    return top, found


def continue_upgrade(path: Path) -> Finished:
    """Commit the upgrade whose conflicts are resolved (and `git add`-ed), with lls's message."""
    top, found = _pending_in(path)
    unmerged = sorted(
        {line.split("\t", 1)[1] for line in git(top, "ls-files", "--unmerged").splitlines()}
    )
    if unmerged:
        raise UserMessageError(
            f"{len(unmerged)} file(s) still conflicted: {', '.join(unmerged)}; resolve each "
            "(git mergetool, or your editor), `git add` it, then run lls upgrade --continue"
        )
    marked = [
        path
        for path in found.conflicts
        if path in git(top, "ls-files", "--", path).splitlines()
        and markers_left(git_bytes(top, "show", f":{path}"))
    ]
    if marked:
        raise UserMessageError(
            f"{', '.join(marked)} still hold(s) conflict markers (<<<<<<<, |||||||, >>>>>>>); "
            "edit them out, `git add`, then run lls upgrade --continue"
        )
    made = commit(top, found.message, by=identity(top))
    _state_file(top).unlink()
    return Finished(top, found.branch, made)


def abort_upgrade(path: Path) -> Finished:
    """Put the repository back where it was before the upgrade: branch, index and files."""
    top, found = _pending_in(path)
    git(top, "reset", "--quiet", "--hard", found.head)
    if found.branch:
        if found.previous:
            git(top, "switch", "--quiet", found.previous)
        else:
            git(top, "switch", "--quiet", "--detach", found.head)
        git(top, "branch", "--quiet", "-D", found.branch)
    _state_file(top).unlink()
    return Finished(top, found.previous, found.head)
