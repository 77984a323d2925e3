"""Run-time changes (promote, rollback, load, unload, traffic), made from the calling worker.

What "done" means for a change: it is in the shared plan, and every worker that serves serves
it. A `load` puts the version in the plan, and every worker comes to hold it: under Gunicorn,
each worker is replaced, one at a time, by a new one that loads the plan before it serves
(`_replace.py`: the load never shares a process with requests), the calling worker last;
otherwise (`--load-in-place`, granian) each worker loads it in a background thread, the calling
worker first (a version that fails there changes nothing). The answer waits for all of them, so
a promotion right after it finds the version everywhere. A worker that cannot load it (its
self-tests miss there) marks it failed for the pod, and the answer says so. Requests never wait
for any of this: each worker answers from its current models meanwhile.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._config import ServiceConfig
from ._errors import Conflict, Forbidden, NotFound, Unprocessable
from ._model import artifact_digest
from ._plan import PodPlan, VersionSpec, add_version, promote, rollback, set_traffic, unload
from ._sync import Follower

ARTIFACT_DIRS_ENV = "SERVING_RUNTIME_ARTIFACT_DIR"  # folders `admin load` may read, os.pathsep

# How long a change waits for the other workers to take it in before it answers without them
# (it still reaches them: the answer lists those still loading).
APPLY_TIMEOUT_SECONDS = 300.0
RETIRE_TIMEOUT_SECONDS = 10.0  # how long a replaced worker waits to be told to stop


def apply_change(
    follower: Follower, operation: str, model_id: str, **arguments: Any
) -> dict[str, Any]:
    """Make one change for every worker; the answer says the primary it leaves."""
    with follower.making_change():
        return _apply(follower, operation, model_id, **arguments)


def _apply(follower: Follower, operation: str, model_id: str, **arguments: Any) -> dict[str, Any]:
    store = follower.store
    version: str | None = arguments.get("version")
    current = follower.catch_up()
    if operation == "load":
        assert version is not None
        plan = _load(follower, current, model_id, version, arguments.get("spec"))
    elif operation == "promote":
        assert version is not None
        _check_serves_here(follower, model_id, version)
        plan = store.change(lambda p: promote(p, model_id, version))
    elif operation == "rollback":
        plan = store.change(lambda p: rollback(p, model_id))
    elif operation == "unload":
        assert version is not None
        plan = store.change(lambda p: unload(p, model_id, version))
    elif operation == "traffic":
        weights: dict[str, int] = arguments["weights"]
        for chosen, weight in weights.items():
            if weight > 0:
                _check_serves_here(follower, model_id, chosen)
        plan = store.change(lambda p: set_traffic(p, model_id, weights))
    else:
        raise ValueError(operation)
    follower.catch_up()
    behind = follower.plan is None or follower.plan.generation < plan.generation
    replaced = follower.replaced_to_load if behind else None
    pending = store.wait_applied(
        plan.generation, APPLY_TIMEOUT_SECONDS, workers=replaced, stop=follower.stopping
    )
    if replaced is not None and not pending:
        # Its replacement serves: the answer waits until this worker stops taking requests
        # (the master tells it to within a second), so none after it finds the old plan.
        _wait_until(follower.stopping, RETIRE_TIMEOUT_SECONDS)
    # With what the others found, if a version failed there (this worker may be waiting for
    # its replacement: the plan itself, then).
    final = follower.catch_up() if replaced is None else store.read()
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
    if model.traffic:
        result["traffic"] = {"weights": dict(model.traffic), "shares": model.shares}
    if pending:
        result["pending"] = pending  # workers still loading: they switch once they have it
    return result


def _load(
    follower: Follower, current: PodPlan, model_id: str, version: str, given: VersionSpec | None
) -> PodPlan:
    """Put the version in the plan: loaded and self-tested here first, unless this worker is
    to be replaced by one that loads it."""
    store, registry = follower.store, follower.registry
    spec = _spec_to_load(LoadPolicy.of(follower.config), current, model_id, version, given)
    if follower.replaced_to_load is not None:
        return store.change(lambda p: add_version(p, model_id, version, spec))
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
    return plan


def _wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def _spec_to_load(
    policy: LoadPolicy, plan: PodPlan, model_id: str, version: str, given: VersionSpec | None
) -> VersionSpec:
    model = plan.model(model_id)
    if given is None:
        known = model.versions.get(version)
        if known is None:
            raise NotFound(f"model {model_id!r} has no version {version!r}: give its artifact")
        if known.declared:
            raise Conflict(
                f"model {model_id!r} version {version!r} is declared by the overrides file: "
                "the pod fetches it; declare it anew (or remove it, then declare it again) "
                "to fetch it again"
            )
        spec = replace(known, failed=None)
    else:
        _check_class(policy, given.class_path)
        artifact = None if given.artifact is None else _check_artifact(policy, given.artifact)
        spec = replace(given, artifact=artifact)
        if version == model.primary and spec.shadow:
            raise Conflict(f"model {model_id!r} version {version!r} is primary: not a shadow")
    digest = None if spec.artifact is None else artifact_digest(Path(spec.artifact))
    # A new revision makes every process load it again, from the same bytes (the digest).
    return replace(spec, digest=digest, revision=f"{os.getpid()}-{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class LoadPolicy:
    """What `admin load` may take: artifacts in these folders, classes models.yaml names.

    Loading an artifact runs code (a pickle, the class's `load`): a caller must not choose
    any readable file, nor any importable class.
    """

    root: Path  # models.yaml's folder: what a relative artifact is relative to
    artifact_dirs: tuple[Path, ...]
    classes: frozenset[str]

    @classmethod
    def of(cls, config: ServiceConfig) -> LoadPolicy:
        """The service's `artifacts/` (or $SERVING_RUNTIME_ARTIFACT_DIR), its classes."""
        named = os.environ.get(ARTIFACT_DIRS_ENV, "")
        dirs = [Path(d) for d in named.split(os.pathsep) if d] or [config.root / "artifacts"]
        classes = {model.class_path for model in config.models.values()}
        for model in config.models.values():
            classes |= {model.class_for(version) for version in model.versions}
        return cls(config.root, tuple(config.root / d for d in dirs), frozenset(classes))


def _check_class(policy: LoadPolicy, class_path: str) -> None:
    if class_path not in policy.classes:
        raise Forbidden(
            f"class {class_path!r} is not one models.yaml names "
            f"({', '.join(sorted(policy.classes))})"
        )


def _check_artifact(policy: LoadPolicy, artifact: str) -> str:
    # Resolved, symlinks and '..' included, before it is compared: no way out of the folders.
    path = (policy.root / artifact).resolve()
    for folder in policy.artifact_dirs:
        if path.is_relative_to(folder.resolve()):
            return str(path)
    allowed = ", ".join(str(d) for d in policy.artifact_dirs)
    raise Forbidden(
        f"artifact {artifact!r} is not in the service's artifact folder ({allowed}); "
        "serve --artifact-dir names others"
    )


def _check_serves_here(follower: Follower, model_id: str, version: str) -> None:
    entry = follower.registry.snapshot.get(model_id)
    found = entry.versions.get(version) if entry is not None else None
    if found is not None and not found.passed and found.spec.failed is None:
        raise Conflict(f"model {model_id!r} version {version!r} {found.problem}")
