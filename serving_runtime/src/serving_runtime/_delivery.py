"""Versions declared by the overrides file: fetched, self-tested, and only then in the plan.

    models:
      fraud-rules:
        versions:
          v3: {artifact: https://models.example.com/rules-v3.json, sha256: 9f2c...}
        traffic: {v1: 90, v3: 10}

A change of the file that declares a version not fetched yet is applied once the version is
fetched (checked against its sha256, bounded in size and time) and has passed its self-tests
in the process that fetched it; until then the pod serves what it served. One process of the
pod does that work at a time (a lock in the state folder), from a thread of its own: the
request path, the admin interface and the plan's other changes never wait for a download. The
other processes then load the version from the shared cache, as for any version loaded at run
time. A version that cannot be fetched or fails its self-tests enters the plan failed, with
the reason: it never serves, and the parts of the file that ask for it are refused.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ._artifacts import fetch_artifact
from ._config import ServiceConfig
from ._errors import ArtifactError
from ._locks import exclusive
from ._logs import JsonLog
from ._overrides import DeclaredVersion, Delivered, Overrides, named_classes
from ._plan import PodPlan, VersionSpec
from ._registry import Registry

CACHE_ENV = "SERVING_RUNTIME_DELIVERY_CACHE"  # where declared versions are fetched to
MAX_BYTES_ENV = "SERVING_RUNTIME_DELIVERY_MAX_BYTES"
TIMEOUT_ENV = "SERVING_RUNTIME_DELIVERY_TIMEOUT"
MAX_BYTES = 1 << 30  # 1 GiB: a larger artifact is refused rather than fill the cache
TIMEOUT_SECONDS = 300.0  # a transfer taking longer (or stalled 30 s) fails


@dataclass(frozen=True)
class Limits:
    """Where declared versions go, and how much a fetch may take."""

    cache: Path
    max_bytes: int
    timeout: float

    @classmethod
    def from_environment(cls, state: Path) -> Limits:
        """$SERVING_RUNTIME_DELIVERY_* or the defaults; the cache is in the state folder."""
        cache = os.environ.get(CACHE_ENV)
        return cls(
            Path(cache) if cache else state / "delivered",
            int(os.environ.get(MAX_BYTES_ENV) or MAX_BYTES),
            float(os.environ.get(TIMEOUT_ENV) or TIMEOUT_SECONDS),
        )


Needed = list[tuple[str, str, DeclaredVersion]]  # model id, version, as declared


def needed(overrides: Overrides, plan: PodPlan) -> Needed:
    """The declared versions that the plan does not hold as declared (not fetched yet, or
    fetched from another URI or checksum, or failed: each change of the file tries again)."""
    wanted = []
    for model_id, entry in overrides.models.items():
        model = plan.models.get(model_id)
        if model is None:
            continue
        for version, declared in entry.versions.items():
            spec = model.versions.get(version)
            if spec is not None and not spec.declared:
                continue  # a name models.yaml gives: refused when applied, never fetched
            same = (
                spec is not None
                and spec.failed is None
                and (spec.uri, spec.digest) == (declared.artifact, declared.sha256)
                and declared.class_path in {None, spec.class_path}
            )
            if not same:
                wanted.append((model_id, version, declared))
    return wanted


class Delivery:
    """Fetches and self-tests the versions a content of the overrides file declares, then
    applies that content (through `apply`), one content at a time per process."""

    def __init__(
        self,
        config: ServiceConfig,
        registry: Registry,
        log: JsonLog,
        state: Path,
        *,
        apply: Callable[[Overrides, Delivered], None],
        catch_up: Callable[[], object],
        current: Callable[[], PodPlan],
    ) -> None:
        self.config = config
        self.registry = registry
        self.limits = Limits.from_environment(state)
        self._log = log
        self._lock_path = state / "delivery.lock"
        self._apply = apply
        self._catch_up = catch_up
        self._current = current
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def busy(self) -> bool:
        """A delivery runs in this process now."""
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def start(self, overrides: Overrides, wanted: Needed, done: Callable[[], None]) -> None:
        """Deliver in a thread of its own, then call `done`; nothing if one runs already."""
        if self.busy:
            return

        def run() -> None:
            try:
                self.run(overrides, wanted)
            finally:
                done()

        self._pid = os.getpid()
        self._thread = threading.Thread(target=run, name="lls-deliver", daemon=True)
        self._thread.start()

    def run(self, overrides: Overrides, wanted: Needed) -> None:
        """Fetch and self-test `wanted`, then apply `overrides` with them (unless another
        process applied it meanwhile, or the file changed again)."""
        # One process fetches at a time: the others find the version in the cache, or the
        # content applied, when their turn comes.
        with exclusive(self._lock_path):
            plan = self._current()
            if plan.overrides.digest == overrides.digest:
                return  # another process applied this content while this one waited
            wanted = needed(overrides, plan)  # what another process fetched is in the plan
            delivered: dict[str, dict[str, VersionSpec]] = {}
            for model_id, version, declared in wanted:
                spec = self._deliver(model_id, version, declared)
                delivered.setdefault(model_id, {})[version] = spec
            try:
                self._apply(overrides, delivered)
                self._catch_up()  # this process takes the versions it self-tested as they are
            finally:
                for model_id, version, _ in wanted:
                    self.registry.discard_prepared(model_id, version)
            self._prune(overrides)

    def _prune(self, overrides: Overrides) -> None:
        """Drop from the cache what this content of the file no longer declares (and what a
        fetch killed midway left), so that a pod fetching v3, v4, v5... over its life never
        fills the cache's volume and gets evicted. Under the lock: no fetch runs meanwhile."""
        kept = {
            declared.sha256
            for entry in overrides.models.values()
            for declared in entry.versions.values()
        }
        cache = self.limits.cache
        if not cache.is_dir():
            return
        for folder in cache.iterdir():
            if folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for partial in folder.glob(".partial-*"):
                partial.unlink(missing_ok=True)

    def _deliver(self, model_id: str, version: str, declared: DeclaredVersion) -> VersionSpec:
        model = self.config.models[model_id]
        class_path = declared.class_path or model.class_path
        spec = VersionSpec(
            class_path,
            None,
            declared.shadow,
            digest=declared.sha256,
            uri=declared.artifact,
            declared=True,
        )
        fields = {"model_id": model_id, "version": version, "uri": declared.artifact}
        if class_path not in named_classes(self.config):
            why = f"class {class_path!r} is not one models.yaml names"
            return self._failed(spec, why, fields)
        self._log.event("info", "version_fetching", **fields)
        try:
            path, fetched = fetch_artifact(
                declared.artifact,
                declared.sha256,
                self.limits.cache,
                max_bytes=self.limits.max_bytes,
                timeout=self.limits.timeout,
            )
        except ArtifactError as exc:
            return self._failed(spec, f"could not be fetched: {exc}", fields)
        except Exception as exc:  # whatever it was, this version failed, not the delivery
            why = f"could not be fetched: {type(exc).__name__}: {exc}"
            return self._failed(spec, why, fields)
        spec = replace(spec, artifact=str(path))
        entry = self.registry.prepare(model_id, version, spec)
        if not entry.passed:
            return self._failed(spec, entry.problem or "cannot serve", fields)
        self._log.event("info", "version_delivered", fetched=fetched, **fields)
        return spec

    def _failed(self, spec: VersionSpec, why: str, fields: dict[str, str]) -> VersionSpec:
        self._log.event("error", "version_delivery_failed", problem=why, **fields)
        return VersionSpec(
            spec.class_path,
            spec.artifact,
            spec.shadow,
            digest=spec.digest,
            uri=spec.uri,
            declared=True,
            failed=f"was not delivered: {why}",
        )
