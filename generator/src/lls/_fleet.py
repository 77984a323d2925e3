"""`lls fleet status`: where every service of a fleet stands.

Reading a service's standing needs no render and no network: its answers file (the release
and the runtime it records) and one `git log` (when the answers last changed: its last
upgrade). Predicting conflicts is an `lls upgrade --dry-run` of each service behind, each in
a temporary clone of its own (the repository is never written to), run `jobs` at a time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import _service
from ._check import Status, status
from ._errors import LlsError
from ._git import git
from ._runner import Children, Interrupted, each
from ._shipped import Shipped, shipped
from ._sources import Member, default_cache, members
from ._steps import SILENT, Steps


@dataclass(frozen=True)
class Row:
    """One service of the fleet, or a source that could not be read."""

    source: str  # the service's path, or the URL it was cloned from
    path: Path | None
    status: Status | None
    last_upgrade: str | None  # date of the last commit that changed the answers (YYYY-MM-DD)
    conflicts: tuple[str, ...] | None = None  # with predict: the files an upgrade would conflict
    error: str | None = None


def fleet_status(
    sources: Sequence[str],
    *,
    predict_conflicts: bool = False,
    jobs: int | None = None,
    cache: Path | None = None,
    package: Shipped | None = None,
    steps: Steps = SILENT,
) -> list[Row]:
    """A row per service the sources name (and per source that failed), in a stable order."""
    package = package or shipped()
    jobs = jobs or default_jobs()
    with steps.step("Finding the services"):
        found, failed = members(sources, cache=cache or default_cache(), jobs=jobs)
    rows = [Row(f.source, None, None, None, error=f.error) for f in failed]
    with steps.step(f"Reading {len(found)} service(s)"), ThreadPoolExecutor(jobs * 4) as pool:
        rows += pool.map(lambda member: _row(member, package), found)
    if predict_conflicts:
        behind = [row for row in rows if row.status and not row.status.current]
        children = Children()
        with steps.step(f"Trying the upgrade of {len(behind)} service(s) behind"):
            tried, interrupted = each(children, partial(_predict, children), behind, jobs)
        if interrupted:
            raise KeyboardInterrupt
        predicted = dict(zip(map(id, behind), tried, strict=True))
        rows = [predicted.get(id(row), row) for row in rows]
    return sorted(rows, key=_order)


def default_jobs() -> int:
    """One job per core: the work is Copier and git, both CPU-bound."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _order(row: Row) -> tuple[int, int, str, str]:
    if row.status is None:
        return (0, 0, "", row.source)
    return (1, -row.status.releases_behind, row.status.service_name, row.source)


def _row(member: Member, package: Shipped) -> Row:
    source = member.url or str(member.path)
    try:
        answers = _service.read_answers(member.path)
        service = _service.Service(
            member.path, answers, _service.recorded_release(package, answers)
        )
    except LlsError as error:
        return Row(source, member.path, None, None, error=str(error))
    return Row(source, member.path, status(service, package), _last_upgrade(member.path))


def _last_upgrade(root: Path) -> str | None:
    try:
        shown = git(root, "log", "-1", "--format=%cs", "--", _service.ANSWERS_FILE).strip()
    except LlsError:  # not in a repository: no history to read
        return None
    return shown or None


def _predict(children: Children, row: Row) -> Row:
    assert row.path is not None
    try:
        result = run_lls(children, "upgrade", "--dry-run", "--defaults", "--json", str(row.path))
    except (LlsError, Interrupted) as error:
        return replace(row, error=str(error) or "interrupted")
    if result["exit_status"] not in (0, 1):
        return replace(row, error=str(result["error"]))
    return replace(row, conflicts=tuple(result.get("conflicts") or ()))


def run_lls(
    children: Children, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`lls ARGS` (with --json) run as a process of its own: the object it printed.

    A process each, for Copier's settings live in the environment; see _runner for Ctrl-C.
    """
    done = children.run([sys.executable, "-m", "lls", *args], cwd=cwd or Path.cwd(), env=env)
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise LlsError(
            f"lls {args[0]} failed (exit status {done.returncode}): {done.stderr.strip()[-500:]}"
        ) from None
    return result


def summary(rows: Sequence[Row]) -> dict[str, int]:
    """How many services are current, behind, or could not be read."""
    read = [row.status for row in rows if row.status]
    return {
        "services": len(read),
        "current": sum(1 for s in read if s.current),
        "behind": sum(1 for s in read if not s.current),
        "failed": sum(1 for row in rows if row.status is None),
    }
