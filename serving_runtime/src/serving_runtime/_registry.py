"""Every model and version one process serves, and the changes made to them at run time.

The registry holds an immutable snapshot that requests read without locks; a change builds a
new snapshot, loading and self-testing any new version first, then swaps it in. A version that
fails to load or fails its self-tests is kept and reported, but never serves and never replaces
a version that does.

What should be served is a `Plan` (plain data: primary, rollback history and the versions with
their artifact and class). Every worker reconciles its registry with the same plan, so a change
made in one worker reaches all of them (see `_sync.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._config import ServiceConfig
from ._errors import Conflict, ModelLoadError, NotFound, NotReady, Unprocessable
from ._model import SelfTestReport, ServedModel, load_model


@dataclass(frozen=True)
class VersionSpec:
    """What is needed to load a version: its class and its artifact."""

    class_path: str
    artifact: str | None = None
    shadow: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the plan file."""
        return {"class": self.class_path, "artifact": self.artifact, "shadow": self.shadow}


@dataclass(frozen=True)
class ModelPlan:
    """What one model should serve."""

    primary: str
    versions: Mapping[str, VersionSpec]
    history: tuple[str, ...] = ()  # earlier primaries, newest last: where rollback goes


Plan = Mapping[str, ModelPlan]


@dataclass(frozen=True)
class VersionEntry:
    """A version as this process has it: loaded and passing, or failed with the reason."""

    version: str
    spec: VersionSpec
    model: ServedModel | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Loaded and every self-test row matched: the only versions that may serve."""
        return self.model is not None and self.model.selftest.passed

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
        if report is None or report.passed:
            return None
        if report.error is not None:
            return f"self-test could not run: {report.error}"
        return f"failed its self-tests ({len(report.failures)} of {len(report.rows)} rows missed)"


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
    def shadows(self) -> tuple[ServedModel, ...]:
        """The versions that see the primary's requests off the request path."""
        return tuple(
            v.model for v in self.versions.values() if v.spec.shadow and v.model and v.passed
        )

    def state_of(self, version: str) -> str:
        """`serving`, `shadow`, `loaded` or `failed`."""
        entry = self.versions[version]
        if not entry.passed:
            return "failed"
        if version == self.plan.primary:
            return "serving"
        return "shadow" if entry.spec.shadow else "loaded"


Snapshot = Mapping[str, ModelEntry]
Loader = Callable[[str, str, VersionSpec], ServedModel]


def plan_from_config(config: ServiceConfig) -> dict[str, ModelPlan]:
    """The plan models.yaml describes: every version loaded, its primary serving."""
    plan = {}
    for model_id, model in config.models.items():
        versions = {
            version: VersionSpec(
                model.class_for(version),
                None if v.artifact is None else str(config.root / v.artifact),
                v.shadow,
            )
            for version, v in model.versions.items()
        }
        plan[model_id] = ModelPlan(model.primary, MappingProxyType(versions))
    return plan


class Registry:
    """The models and versions of this process."""

    def __init__(self, root: Path, loader: Loader | None = None) -> None:
        self.root = root
        self._load = loader or self._load_from_disk
        self._snapshot: Snapshot = MappingProxyType({})
        self._lock = threading.Lock()  # one change at a time; reads never wait for it
        self.on_change: list[Callable[[str, dict[str, Any]], None]] = []

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

    def resolve(self, model_id: str, version: str | None) -> ServedModel:
        """The version that answers a request for `model_id` (and `version`, when given)."""
        entry = self._snapshot.get(model_id)
        if entry is None:
            raise NotFound(f"unknown model {model_id!r}")
        if version is None:
            serving = entry.serving
            if serving is None:
                reason = entry.versions[entry.plan.primary].problem
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

    def apply(self, plan: Plan) -> None:
        """Serve `plan`: load what is new, drop what is gone, switch primaries."""
        with self._lock:
            self._snapshot = self._reconcile(self._snapshot, plan)

    def _reconcile(self, current: Snapshot, plan: Plan) -> Snapshot:
        models = {}
        for model_id, model_plan in plan.items():
            old = current.get(model_id)
            versions = {}
            for version, spec in model_plan.versions.items():
                kept = old.versions.get(version) if old else None
                if kept is None or _source(kept.spec) != _source(spec):
                    kept = self._load_entry(model_id, version, spec)
                elif kept.spec != spec:  # only its role changed: keep the loaded model
                    kept = replace(kept, spec=spec)
                versions[version] = kept
            models[model_id] = ModelEntry(model_id, model_plan, MappingProxyType(versions))
            if old is None or old.plan.primary != model_plan.primary:
                self._say("primary", model_id=model_id, version=model_plan.primary)
        return MappingProxyType(models)

    def _load_entry(self, model_id: str, version: str, spec: VersionSpec) -> VersionEntry:
        try:
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
        return load_model(model_id, version, spec.class_path, artifact, self.root)

    def _say(self, event: str, **fields: Any) -> None:
        for listener in self.on_change:
            listener(event, fields)

    # Run-time changes: each returns the new plan, after this process has applied it.

    def load_version(self, model_id: str, version: str, spec: VersionSpec | None) -> Plan:
        """Add (or reload) a version; refused unless it loads and passes its self-tests."""
        with self._lock:
            entry = self._entry(model_id)
            if spec is None:
                spec = entry.plan.versions.get(version)
                if spec is None:
                    raise NotFound(
                        f"model {model_id!r} has no version {version!r}: give its artifact"
                    )
            candidate = self._load_entry(model_id, version, spec)
            if not candidate.passed:
                raise Unprocessable(
                    f"model {model_id!r} version {version!r} {candidate.problem}; nothing changed"
                )
            plan = dict(self.plan)
            plan[model_id] = replace(
                entry.plan, versions=MappingProxyType({**entry.plan.versions, version: spec})
            )
            versions = {**entry.versions, version: candidate}
            models = dict(self._snapshot)
            models[model_id] = ModelEntry(model_id, plan[model_id], MappingProxyType(versions))
            self._snapshot = MappingProxyType(models)
            return plan

    def promote(self, model_id: str, version: str) -> Plan:
        """Make `version` the primary; it must be loaded and passing."""
        entry = self._entry(model_id)
        if version == entry.plan.primary:
            raise Conflict(f"model {model_id!r} version {version!r} is already primary")
        self._check_can_serve(entry, version)
        history = (*entry.plan.history, entry.plan.primary)
        return self._set_primary(model_id, version, history)

    def rollback(self, model_id: str) -> Plan:
        """Go back to the previous primary that can still serve."""
        entry = self._entry(model_id)
        history = list(entry.plan.history)
        while history:
            candidate = history.pop()
            if candidate in entry.versions and entry.versions[candidate].passed:
                return self._set_primary(model_id, candidate, tuple(history))
        raise Conflict(f"model {model_id!r} has no earlier primary to roll back to")

    def unload(self, model_id: str, version: str) -> Plan:
        """Drop a version that is not primary."""
        entry = self._entry(model_id)
        if version not in entry.versions:
            raise NotFound(f"model {model_id!r} has no version {version!r}")
        if version == entry.plan.primary:
            raise Conflict(
                f"model {model_id!r} version {version!r} is primary; promote another first"
            )
        versions = {v: s for v, s in entry.plan.versions.items() if v != version}
        history = tuple(v for v in entry.plan.history if v != version)
        return self._change(model_id, replace(entry.plan, versions=versions, history=history))

    def _set_primary(self, model_id: str, version: str, history: tuple[str, ...]) -> Plan:
        current = self._entry(model_id).plan
        versions = dict(current.versions)
        versions[version] = replace(versions[version], shadow=False)  # a primary is no shadow
        plan = replace(current, primary=version, history=history, versions=versions)
        return self._change(model_id, plan)

    def _change(self, model_id: str, model_plan: ModelPlan) -> Plan:
        plan = {**self.plan, model_id: model_plan}
        self.apply(plan)
        return plan

    def _entry(self, model_id: str) -> ModelEntry:
        entry = self._snapshot.get(model_id)
        if entry is None:
            raise NotFound(f"unknown model {model_id!r}")
        return entry

    @staticmethod
    def _check_can_serve(entry: ModelEntry, version: str) -> None:
        found = entry.versions.get(version)
        if found is None:
            raise NotFound(f"model {entry.model_id!r} has no version {version!r}")
        if not found.passed:
            raise Conflict(f"model {entry.model_id!r} version {version!r} {found.problem}")


def _source(spec: VersionSpec) -> tuple[str, str | None]:
    return spec.class_path, spec.artifact
