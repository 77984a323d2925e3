"""Finding the conflicts Copier leaves (it exits 0 with them), and merging moved files again."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._git import git, git_bytes

MARKER = re.compile(rb"^(<{7} before updating|>{7} after updating)\s*$", re.MULTILINE)


def remerge_moved(
    clone: Path, conflicts: tuple[str, ...], render_base: Callable[[], Path]
) -> tuple[str, ...]:
    """Merge again, against the right base, the files a migration moved (`git mv`).

    Copier diffs the team's repository against the old release rendered at the old paths, so
    a file a migration moved has no base there: every line the team changed in it, and every
    line the template changed, comes out as a conflict. Its base is the old release's file at
    the path it was moved from, found by its unchanged content in the commit upgraded from.
    """
    head: dict[str, str] = {}
    for line in git(clone, "ls-tree", "-r", "HEAD").splitlines():
        meta, name = line.split("\t", 1)
        head.setdefault(meta.split()[2], name)
    still: list[str] = []
    for name in conflicts:
        stages: dict[str, str] = {}
        for line in git(clone, "ls-files", "--unmerged", "--", name).splitlines():
            meta, _ = line.split("\t", 1)
            _, sha, stage = meta.split()
            stages[stage] = sha
        moved_from = head.get(stages.get("2", ""))
        if moved_from is None or moved_from == name or "3" not in stages:
            still.append(name)
            continue
        base = render_base() / moved_from
        if not base.is_file():
            still.append(name)
            continue
        with tempfile.TemporaryDirectory(prefix="lls-merge-") as tmp:
            ours, theirs = Path(tmp, "ours"), Path(tmp, "theirs")
            ours.write_bytes(git_bytes(clone, "cat-file", "blob", stages["2"]))
            theirs.write_bytes(git_bytes(clone, "cat-file", "blob", stages["3"]))
            labels = ("-L", "before updating", "-L", "last update", "-L", "after updating")
            merged = subprocess.run(
                ["git", "merge-file", "-p", *labels, str(ours), str(base), str(theirs)],
                capture_output=True,
                check=False,
            )
        if merged.returncode < 0 or merged.returncode > 127:
            still.append(name)
            continue
        (clone / name).write_bytes(merged.stdout)
        git(clone, "add", "--", name)
        if merged.returncode:
            still.append(name)
    return tuple(still)


def find_conflicts(clone: Path) -> tuple[str, ...]:
    """Paths Copier left conflicted: unmerged in the index, with markers, or with a .rej."""
    found = set(git(clone, "diff", "--name-only", "--diff-filter=U").splitlines())
    listed = git(clone, "ls-files", "--modified", "--others", "--exclude-standard", "-z")
    for name in filter(None, set(listed.split("\0")) | found):
        file = clone / name
        if name.endswith(".rej"):
            found.add(name.removesuffix(".rej"))
            found.add(name)
        elif file.is_file() and MARKER.search(file.read_bytes()):
            found.add(name)
    return tuple(sorted(found))
