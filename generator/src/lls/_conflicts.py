"""The conflicts of an update, as git's own merge would leave them.

Copier's update (`conflict="inline"`) records each conflicted file in the index's stages:
1 the old release as rendered, 2 the team's file, 3 the new release as rendered. Its markers
in the file itself are its own (`before updating` / `after updating`) and carry no base. Here
each conflicted file is merged again from those stages with `git merge-file --diff3`, so
that the file shows the three versions as git shows them, and the stages can be handed on
to the team's repository for `git status`, `git mergetool` and their editor.

A file a migration moved (`git mv`) has no base at its new path in the old render: its base
is the old release's file at the path it was moved from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._errors import LlsError
from ._git import failure, git, git_bytes, run

BASE, OURS, THEIRS = 1, 2, 3
EMPTY = b""


@dataclass(frozen=True)
class Stage:
    """One version of a conflicted file: its mode and content."""

    mode: str
    content: bytes


@dataclass(frozen=True)
class Conflict:
    """A file both the team and the template changed: its versions, and the merged text."""

    path: str  # relative to the repository's top
    stages: Mapping[int, Stage]  # BASE (absent: added on both sides), OURS, THEIRS
    merged: bytes  # with diff3 markers; or, when a side deleted it, the side that kept it


def labels(old_tag: str, new_tag: str) -> tuple[str, str, str]:
    """The names the markers give the team's version, the old release and the new one."""
    return ("yours", f"template {old_tag}", f"template {new_tag}")


def collect(
    clone: Path,
    moved_from: Mapping[str, str],
    render_base: Callable[[], Path],
    service_dir: str,
    names: tuple[str, str, str],
) -> tuple[Conflict, ...]:
    """The conflicts Copier left in `clone`; the ones a merge from the right base resolves are
    resolved in place (written and staged) and not returned.

    `moved_from` maps a path (in the repository) to the one a migration moved it from;
    `render_base()` is the old release rendered with the recorded answers, for those.
    """
    found: list[Conflict] = []
    for path, left in _unmerged(clone).items():
        stages = dict(left)
        origin = moved_from.get(path)
        if origin is not None and OURS in stages:
            base_file = render_base() / _inside(origin, service_dir)
            if base_file.is_file():
                stages[BASE] = Stage(stages[OURS].mode, base_file.read_bytes())
        merged, clean = _merge(stages, names)
        if clean:
            (clone / path).write_bytes(merged)
            git(clone, "add", "--", path)
            continue
        found.append(Conflict(path, stages, merged))
    return tuple(found)


def _inside(path: str, service_dir: str) -> str:
    """`path` (relative to the repository) relative to the service's directory."""
    prefix = f"{service_dir}/" if service_dir not in ("", ".") else ""
    return path.removeprefix(prefix)


def _unmerged(clone: Path) -> dict[str, dict[int, Stage]]:
    entries: dict[str, dict[int, Stage]] = {}
    listed = git(clone, "ls-files", "--unmerged", "-z")
    for entry in filter(None, listed.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, sha, stage = meta.split()
        content = git_bytes(clone, "cat-file", "blob", sha)
        entries.setdefault(path, {})[int(stage)] = Stage(mode, content)
    return entries


def _merge(stages: Mapping[int, Stage], names: tuple[str, str, str]) -> tuple[bytes, bool]:
    """The diff3 merge of the stages, and whether it is clean (no conflict left)."""
    if OURS not in stages or THEIRS not in stages:  # deleted on one side, changed on the other
        kept = stages.get(OURS) or stages.get(THEIRS)
        return (kept.content if kept else EMPTY), False
    base = stages.get(BASE, Stage(stages[OURS].mode, EMPTY)).content
    with tempfile.TemporaryDirectory(prefix="lls-merge-") as tmp:
        files = []
        for name, content in (
            ("ours", stages[OURS].content),
            ("base", base),
            ("theirs", stages[THEIRS].content),
        ):
            file = Path(tmp, name)
            file.write_bytes(content)
            files.append(str(file))
        named = [word for name in names for word in ("-L", name)]
        args = ("merge-file", "-p", "--diff3", *named, *files)
        # Its exit status is the number of conflicts (0: clean), up to 127.
        done = run(Path(tmp), *args)
    if done.status < 0 or done.status > 127:  # git's error, not a count of conflicts
        raise LlsError(failure(args, done.stderr))
    return done.stdout, done.status == 0


def leftover_rejects(clone: Path) -> tuple[str, ...]:
    """Files Copier could not patch nor merge (a `.rej` beside them), as a last resort."""
    listed = git(clone, "ls-files", "--others", "--exclude-standard", "-z")
    rejects = [name for name in listed.split("\0") if name.endswith(".rej")]
    return tuple(sorted({*rejects, *(name.removesuffix(".rej") for name in rejects)}))


def markers_left(content: bytes) -> bool:
    """Whether a file still holds a conflict's markers (a line that opens, or closes, one)."""
    return any(
        line.startswith((b"<<<<<<< ", b"||||||| ", b">>>>>>> ")) for line in content.splitlines()
    )
