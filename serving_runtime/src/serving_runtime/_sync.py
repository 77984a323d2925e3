"""The plan file that carries run-time changes from the worker that made them to all the others.

Each change is written whole to a new file and renamed over the old one, under an exclusive
lock, so a reader sees either the old plan or the new one. A worker notices a change by the
file's identity (inode and modification time, one stat() per request) and reconciles its
registry with the new plan before it answers.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import orjson

from ._registry import ModelPlan, Plan, VersionSpec

FileKey = tuple[int, int, int]


class PlanStore:
    """A plan on disk, shared by every worker of one server."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "plan.json"
        self._lock_path = folder / "plan.lock"

    def key(self) -> FileKey | None:
        """Identity of the current file: changes whenever a new plan is written."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> Plan:
        """The plan as last written."""
        data = orjson.loads(self.path.read_bytes())
        return {
            model_id: ModelPlan(
                primary=m["primary"],
                history=tuple(m["history"]),
                versions=MappingProxyType(
                    {
                        v: VersionSpec(spec["class"], spec["artifact"], spec["shadow"])
                        for v, spec in m["versions"].items()
                    }
                ),
            )
            for model_id, m in data["models"].items()
        }

    def write(self, plan: Plan) -> FileKey | None:
        """Replace the plan in one step; returns the new file's identity."""
        data = {
            "models": {
                model_id: {
                    "primary": m.primary,
                    "history": list(m.history),
                    "versions": {v: spec.as_dict() for v, spec in m.versions.items()},
                }
                for model_id, m in plan.items()
            }
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".plan-")
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)
        return self.key()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the plan for a read-change-write; other workers' changes wait."""
        with open(self._lock_path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
