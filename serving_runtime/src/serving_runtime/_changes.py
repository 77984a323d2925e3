"""Run-time changes (promote, rollback, load, unload), made from the worker that took the call.

What "done" means for a change: it is in the shared plan, and every worker that serves serves
it. A `load` first loads and self-tests the version in the calling worker (a version that fails
there changes nothing), then every other worker loads it in its own background thread; the
answer waits for all of them, so a promotion right after it finds the version everywhere. A
worker that cannot load it (its self-tests miss there) marks it failed for the pod, and the
answer says so. Workers started later load whatever the plan holds before they take a request.
Requests never wait for any of this: each worker answers from its current models meanwhile.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._errors import Conflict, NotFound, Unprocessable
from ._model import artifact_digest
from ._plan import PodPlan, VersionSpec, add_version, promote, rollback, unload
from ._sync import Follower

# How long a change waits for the other workers to take it in before it answers without them
# (it still reaches them: the answer lists those still loading).
APPLY_TIMEOUT_SECONDS = 300.0


def apply_change(
    follower: Follower, operation: str, model_id: str, **arguments: Any
) -> dict[str, Any]:
    """Make one change for every worker; the answer says the primary it leaves."""
    store, registry = follower.store, follower.registry
    version: str | None = arguments.get("version")
    current = follower.catch_up()
    if operation == "load":
        assert version is not None
        spec = _spec_to_load(current, registry.root, model_id, version, arguments.get("spec"))
        prepared = registry.prepare(model_id, version, spec)
        try:
            if not prepared.passed:
                raise Unprocessable(
                    f"model {model_id!r} version {version!r} {prepared.problem}; nothing changed"
                )
            plan = store.change(lambda p: add_version(p, model_id, version, spec))
            follower.catch_up()
        finally:
            registry.discard_prepared(model_id, version)
    elif operation == "promote":
        assert version is not None
        _check_serves_here(follower, model_id, version)
        plan = store.change(lambda p: promote(p, model_id, version))
    elif operation == "rollback":
        plan = store.change(lambda p: rollback(p, model_id))
    elif operation == "unload":
        assert version is not None
        plan = store.change(lambda p: unload(p, model_id, version))
    else:
        raise ValueError(operation)
    follower.catch_up()
    pending = store.wait_applied(plan.generation, APPLY_TIMEOUT_SECONDS)
    final = follower.catch_up()  # with what the others found, if a version failed there
    model = final.model(model_id)
    if version is not None and operation in {"load", "promote"}:
        found = model.versions.get(version)
        if found is not None and found.failed is not None:
            refused = Unprocessable if operation == "load" else Conflict
            raise refused(
                f"model {model_id!r} version {version!r} {found.failed}; "
                f"the primary is {model.primary!r}"
            )
    result: dict[str, Any] = {"model_id": model_id, "operation": operation}
    result["primary"] = model.primary
    if pending:
        result["pending"] = pending  # workers still loading: they switch once they have it
    return result


def _spec_to_load(
    plan: PodPlan, root: Path, model_id: str, version: str, given: VersionSpec | None
) -> VersionSpec:
    model = plan.model(model_id)
    if given is None:
        known = model.versions.get(version)
        if known is None:
            raise NotFound(f"model {model_id!r} has no version {version!r}: give its artifact")
        spec = replace(known, failed=None)
    else:
        spec = replace(
            given, artifact=None if given.artifact is None else str(root / given.artifact)
        )
        if version == model.primary and spec.shadow:
            raise Conflict(f"model {model_id!r} version {version!r} is primary: not a shadow")
    digest = None if spec.artifact is None else artifact_digest(Path(spec.artifact))
    # A new revision makes every process load it again, from the same bytes (the digest).
    return replace(spec, digest=digest, revision=f"{os.getpid()}-{uuid.uuid4().hex[:12]}")


def _check_serves_here(follower: Follower, model_id: str, version: str) -> None:
    entry = follower.registry.snapshot.get(model_id)
    found = entry.versions.get(version) if entry is not None else None
    if found is not None and not found.passed and found.spec.failed is None:
        raise Conflict(f"model {model_id!r} version {version!r} {found.problem}")
