"""What `lls new`, `upgrade` and `versions` did, as plain data: the objects `--json` prints.

Every object has "command", "exit_status" and "error" (null when the exit status is 0); a
failure has only those three. The keys never change meaning: new keys may be added, none is
removed or renamed. Each command's help lists its keys.
"""

from __future__ import annotations

from typing import Any

from ._new import NewService
from ._shipped import Shipped
from ._upgrade import Upgrade


def envelope(
    command: str, body: dict[str, Any], *, exit_status: int = 0, error: str | None = None
) -> dict[str, Any]:
    """The object printed for `command`: its status and error first, then what it did."""
    return {"command": command, "exit_status": exit_status, "error": error, **body}


def new_result(made: NewService) -> dict[str, Any]:
    """`lls new --json`: where the service is and what it was made from, with every answer."""
    return {
        "path": str(made.path),
        "service_name": made.answers["service_name"],
        "template_version": made.template_version,
        "runtime_version": made.runtime_version,
        "commit": made.commit.sha,
        "commit_author": str(made.commit.author),
        "repository": str(made.commit.repository),
        "answers": dict(made.answers),
    }


def upgrade_result(done: Upgrade) -> dict[str, Any]:
    """`lls upgrade --json`: from and to, where the result is, and every file it touched."""
    old, new = done.from_release, done.to_release
    return {
        "path": str(done.path),
        "from_version": old.tag,
        "to_version": new.tag,
        "from_runtime_version": old.runtime_version,
        "to_runtime_version": new.runtime_version,
        "current": done.current,
        "dry_run": done.dry_run,
        "branch": done.branch,
        "commit": done.commit,
        "staged": done.staged,
        "new_answers": {name: done.answers[name] for name in done.asked},
        "changed_answers": dict(done.changed_answers),
        "added": list(done.added),
        "changed": list(done.changed),
        "removed": list(done.removed),
        "renamed": [{"from": old_path, "to": new_path} for old_path, new_path in done.renamed],
        "conflicts": list(done.conflicts),
        "kept_deleted": list(done.kept_deleted),
        "diff": done.diff,
    }


def versions_result(package: Shipped, lls_version: str) -> dict[str, Any]:
    """`lls versions --json`: the template releases this lls carries, oldest first."""
    return {
        "lls_version": lls_version,
        "newest": package.latest.tag,
        "releases": [
            {
                "version": release.tag,
                "date": release.date,
                "runtime_version": release.runtime_version,
                "summary": release.summary,
                "newest": release == package.latest,
            }
            for release in package.releases
        ],
    }
