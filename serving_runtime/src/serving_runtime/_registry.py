"""Every model and version one process serves.

The registry holds an immutable snapshot that requests read without locks. `apply` brings it
to a plan (`_plan.py`): it loads and self-tests what is new, then swaps the new snapshot in, so
a request sees either the old models or the new ones. A version that fails to load or fails its
self-tests is kept and reported, but never serves; `apply` returns those the plan meant to serve,
so that the pod stops serving them too (`_sync.py`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._errors import ModelLoadError, NotFound, NotReady
from ._model import SelfTestReport, ServedModel, artifact_digest, load_model
from ._plan import ModelPlan, Plan, VersionSpec, plan_from_config, why_not_servable
from ._traffic import choose

__all__ = [
    "Failure",
    "ModelEntry",
    "ModelPlan",
    "Plan",
    "Registry",
    "Snapshot",
    "VersionEntry",
    "VersionSpec",
    "plan_from_config",
]


@dataclass(frozen=True)
class VersionEntry:
    """A version as this process has it: loaded and passing, or failed with the reason."""

    version: str
    spec: VersionSpec
    model: ServedModel | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Loaded, every self-test row matched, and no process found it failing."""
        return self.model is not None and self.model.selftest.passed and self.spec.failed is None

    @property
    def selftest(self) -> SelfTestReport | None:
        """The self-test report, when the version loaded."""
        return None if self.model is None else self.model.selftest

    @property
    def problem(self) -> str | None:
        """Why the version cannot serve, or None."""
        if self.error is not None:
            return self.error
        report = self.selftest
        if report is not None and not report.passed:
            if report.error is not None:
                return f"self-test could not run: {report.error}"
            missed = f"{len(report.failures)} of {len(report.rows)} rows missed"
            return f"failed its self-tests ({missed})"
        return why_not_servable(self.spec)


@dataclass(frozen=True)
class ModelEntry:
    """A model as this process serves it."""

    model_id: str
    plan: ModelPlan
    versions: Mapping[str, VersionEntry] = field(default_factory=dict)

    @property
    def serving(self) -> VersionEntry | None:
        """The primary version, when it can serve."""
        entry = self.versions.get(self.plan.primary)
        return entry if entry is not None and entry.passed else None

    @cached_property
    def shares(self) -> dict[str, int]:
        """The experiment's weights among the versions that serve here (empty: none runs)."""
        return {
            v: w
            for v, w in self.plan.shares.items()
            if v in self.versions and self.versions[v].passed
        }

    @cached_property
    def shadows(self) -> tuple[ServedModel, ...]:
        """The versions that see the primary's requests off the request path."""
        return tuple(
            v.model for v in self.versions.values() if v.spec.shadow and v.model and v.passed
        )

    def state_of(self, version: str) -> str:
        """`serving`, `shadow`, `loaded`, `failed`, or `arriving` (declared by the overrides
        file, not fetched and self-tested yet)."""
        entry = self.versions[version]
        if entry.spec.arriving:
            return "arriving"
        if not entry.passed:
            return "failed"
        if version == self.plan.primary or version in self.shares:
            return "serving"
        return "shadow" if entry.spec.shadow else "loaded"


Snapshot = Mapping[str, ModelEntry]
Loader = Callable[[str, str, VersionSpec], ServedModel]
Failure = tuple[str, str, str]  # model id, version, why it cannot serve here
LoadTurn = Callable[[str, str], contextlib.AbstractContextManager[object]]


class Registry:
    """The models and versions of this process."""

    def __init__(self, root: Path, loader: Loader | None = None) -> None:
        self.root = root
        self._load = loader or self._load_from_disk
        self._snapshot: Snapshot = MappingProxyType({})
        self._lock = threading.Lock()  # one apply at a time; reads never wait for it
        # Versions loaded ahead of the plan that will name them (an admin load), by source.
        self._prepared: dict[tuple[str, str, tuple[Any, ...]], VersionEntry] = {}
        self._prepared_lock = threading.Lock()
        self.on_change: list[Callable[[str, dict[str, Any]], None]] = []
        # Around each load: a serving worker takes its turn in the pod (`_turns.LoadTurns`).
        self.load_turn: LoadTurn = lambda model_id, version: contextlib.nullcontext()

    @property
    def snapshot(self) -> Snapshot:
        """The current models; safe to read from any thread without a lock."""
        return self._snapshot

    @property
    def plan(self) -> dict[str, ModelPlan]:
        """The plan the current snapshot serves."""
        return {model_id: entry.plan for model_id, entry in self._snapshot.items()}

    @property
    def ready(self) -> bool:
        """Every model has a serving version that passed its self-tests."""
        return bool(self._snapshot) and all(e.serving for e in self._snapshot.values())

    def resolve(
        self, model_id: str, version: str | None, routing_key: str | None = None
    ) -> ServedModel:
        """The version that answers a request for `model_id` (and `version`, when given).

        In an experiment, a request naming no version gets one of the split's, by its
        `routing_key` (the same key, the same version) or at random at the weights.
        """
        entry = self._snapshot.get(model_id)
        if entry is None:
            raise NotFound(f"unknown model {model_id!r}")
        if version is None and entry.shares:
            chosen = entry.versions[choose(model_id, entry.shares, routing_key)]
            assert chosen.model is not None  # shares holds passing versions only
            return chosen.model
        if version is None:
            serving = entry.serving
            if serving is None:
                found = entry.versions.get(entry.plan.primary)
                reason = found.problem if found is not None else "is not loaded"
                raise NotReady(
                    f"model {model_id!r} has no serving version: "
                    f"primary {entry.plan.primary!r} {reason}"
                )
            assert serving.model is not None
            return serving.model
        found = entry.versions.get(version)
        if found is None:
            raise NotFound(f"model {model_id!r} has no version {version!r}")
        if found.model is None or not found.passed:
            raise NotReady(f"model {model_id!r} version {version!r} {found.problem}")
        return found.model

    def apply(self, plan: Plan) -> list[Failure]:
        """Serve `plan`: load what is new, drop what is gone, switch primaries.

        Returns the versions the plan may serve (not marked failed) that cannot serve here.
        """
        with self._lock:
            failures: list[Failure] = []
            self._snapshot = self._reconcile(self._snapshot, plan, failures)
            return failures

    def would_load(self, plan: Plan) -> bool:
        """Whether serving `plan` means loading a version this process does not hold."""
        current = self._snapshot
        for model_id, model_plan in plan.items():
            old = current.get(model_id)
            for version, spec in model_plan.versions.items():
                kept = old.versions.get(version) if old else None
                if kept is not None and kept.spec.source == spec.source:
                    continue
                if why_not_servable(spec) is not None:
                    continue  # failed or arriving: nothing to load
                with self._prepared_lock:
                    if (model_id, version, spec.source) in self._prepared:
                        continue
                return True
        return False

    def prepare(self, model_id: str, version: str, spec: VersionSpec) -> VersionEntry:
        """Load and self-test a version ahead of the plan that will name it; `apply` takes it."""
        entry = self._load_entry(model_id, version, spec)
        if entry.passed:
            with self._prepared_lock:
                self._prepared[(model_id, version, spec.source)] = entry
        return entry

    def discard_prepared(self, model_id: str, version: str) -> None:
        """Forget what `prepare` loaded for a version, if no plan took it."""
        with self._prepared_lock:
            for key in [k for k in self._prepared if k[:2] == (model_id, version)]:
                del self._prepared[key]

    def _reconcile(self, current: Snapshot, plan: Plan, failures: list[Failure]) -> Snapshot:
        models = {}
        for model_id, model_plan in plan.items():
            old = current.get(model_id)
            versions = {}
            for version, spec in model_plan.versions.items():
                kept = old.versions.get(version) if old else None
                if kept is None or kept.spec.source != spec.source:
                    kept = self._take_prepared(model_id, version, spec)
                    if kept is None and why_not_servable(spec) is not None:
                        # Failed in some process, or not arrived: nothing to load here (its
                        # problem follows the spec, which may go from arriving to failed).
                        kept = VersionEntry(version, spec, error=spec.failed)
                    if kept is None:
                        kept = self._load_entry(model_id, version, spec)
                if kept.spec != spec:  # its role or pod-wide state changed: same model
                    kept = replace(kept, spec=spec)
                if why_not_servable(spec) is None and not kept.passed:
                    failures.append((model_id, version, kept.problem or "cannot serve"))
                versions[version] = kept
            models[model_id] = ModelEntry(model_id, model_plan, MappingProxyType(versions))
            if old is None or old.plan.primary != model_plan.primary:
                self._say("primary", model_id=model_id, version=model_plan.primary)
        return MappingProxyType(models)

    def _take_prepared(self, model_id: str, version: str, spec: VersionSpec) -> VersionEntry | None:
        with self._prepared_lock:
            return self._prepared.pop((model_id, version, spec.source), None)

    def _load_entry(self, model_id: str, version: str, spec: VersionSpec) -> VersionEntry:
        try:
            with self.load_turn(model_id, version):
                model = self._load(model_id, version, spec)
        except ModelLoadError as exc:
            entry = VersionEntry(version, spec, error=str(exc))
        else:
            entry = VersionEntry(version, spec, model=model)
        self._say(
            "version_loaded" if entry.passed else "version_failed",
            model_id=model_id,
            version=version,
            problem=entry.problem,
        )
        return entry

    def _load_from_disk(self, model_id: str, version: str, spec: VersionSpec) -> ServedModel:
        artifact = None if spec.artifact is None else self.root / spec.artifact
        if spec.digest is not None and artifact is not None:
            found = artifact_digest(artifact)
            if spec.uri is not None and found != spec.digest:
                problem = "is not fetched" if found is None else f"in {artifact} has another sha256"
                raise ModelLoadError(
                    f"artifact {spec.uri} {problem}: run `serving-runtime fetch` "
                    f"(it is never fetched at load or request time)"
                )
            if found != spec.digest and spec.revision is None:  # as models.yaml gives it
                raise ModelLoadError(
                    f"artifact {artifact} has sha256 {found or 'none: it does not exist'}; "
                    f"models.yaml gives {spec.digest}"
                )
            if found != spec.digest:
                raise ModelLoadError(
                    f"artifact {artifact} is not the one loaded at run time "
                    f"(sha256 {found or 'none: it does not exist'}, expected {spec.digest})"
                )
        return load_model(model_id, version, spec.class_path, artifact, self.root)

    def _say(self, event: str, **fields: Any) -> None:
        for listener in self.on_change:
            listener(event, fields)
