"""What every process of one server should serve: the plan, plain data, and its changes.

A `PodPlan` is shared by the workers, the workers forked later and the offload process (see
`_sync.py`); each change makes a new one, numbered (`generation`). The functions here are pure:
they take a plan and return the next, or raise the client's error when the change cannot
apply. Loading models is the registry's business, not theirs.

Where a version fails in any process (its artifact is gone, its self-tests miss), the plan
marks it failed for the pod (`VersionSpec.failed`) and, if it was primary, falls back to the
newest earlier primary that has not failed, else to the configured one: every process then
serves the same, and none answers 503 while a servable version exists. A version the overrides
file declares by URI is in the plan from the moment the file is applied, `arriving` until it is
fetched and self-tested (`_delivery.py`): it serves nothing meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ._config import ServiceConfig, traffic_problem
from ._errors import BadRequest, Conflict, NotFound


@dataclass(frozen=True)
class VersionSpec:
    """What is needed to load a version (its class and artifact), and its role."""

    class_path: str
    artifact: str | None = None
    shadow: bool = False
    # sha256 of the artifact when it was loaded at run time: a process finding other bytes
    # there refuses them rather than serve something the other processes do not.
    digest: str | None = None
    # Changed by every run-time (re)load, so that every process loads the version again.
    revision: str | None = None
    failed: str | None = None  # why the pod does not serve it; a new load clears it
    uri: str | None = None  # where `serving-runtime fetch` got the artifact from, if fetched
    declared: bool = False  # added by the overrides file (by URI): it goes when the file drops it
    arriving: bool = False  # declared, not fetched and self-tested yet: it serves nothing

    @property
    def source(self) -> tuple[str, str | None, str | None, str | None]:
        """What the loaded model depends on: a process reloads the version when it changes."""
        return self.class_path, self.artifact, self.digest, self.revision

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the plan file and the log."""
        return {
            "class": self.class_path,
            "artifact": self.artifact,
            "shadow": self.shadow,
            "digest": self.digest,
            "revision": self.revision,
            "failed": self.failed,
            "uri": self.uri,
            "declared": self.declared,
            "arriving": self.arriving,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionSpec:
        """The spec `as_dict` wrote."""
        return cls(
            data["class"],
            data.get("artifact"),
            bool(data.get("shadow", False)),
            data.get("digest"),
            data.get("revision"),
            data.get("failed"),
            data.get("uri"),
            bool(data.get("declared", False)),
            bool(data.get("arriving", False)),
        )


@dataclass(frozen=True)
class ModelPlan:
    """What one model should serve."""

    primary: str
    versions: Mapping[str, VersionSpec]
    history: tuple[str, ...] = ()  # earlier primaries, newest last: where rollback goes
    configured: str | None = None  # models.yaml's primary: the last place a fallback goes
    asked: str | None = None  # the primary the overrides file asks for, as last read
    refused: str | None = None  # why the overrides file's primary was refused, if it was
    # An experiment: requests naming no version are split at these weights (empty: none).
    traffic: Mapping[str, int] = field(default_factory=dict)
    configured_traffic: Mapping[str, int] = field(default_factory=dict)  # models.yaml's
    # The version the overrides file asks as primary while it is arriving: it becomes the
    # primary once it arrives, unless a run-time promotion or rollback came first.
    awaited: str | None = None

    @property
    def servable(self) -> tuple[str, ...]:
        """The versions the pod may serve: those no process found failing, and arrived."""
        return tuple(v for v, spec in self.versions.items() if why_not_servable(spec) is None)

    @property
    def shares(self) -> dict[str, int]:
        """The weights that apply now: those of versions the pod serves, in version order.

        A failed (or arriving) version's share goes to the others, pro rata to their weights;
        with no experiment, or none of its versions serving, the primary takes every request.
        """
        servable = self.servable
        return {
            v: self.traffic[v]
            for v in sorted(self.traffic)
            if v in servable and self.traffic[v] > 0
        }


Plan = Mapping[str, ModelPlan]


def why_not_servable(spec: VersionSpec) -> str | None:
    """Why the pod does not serve a version (it failed, or has not arrived), or None."""
    if spec.arriving:
        return f"has not arrived yet: {spec.uri} is being fetched"
    return spec.failed


@dataclass(frozen=True)
class OverridesStatus:
    """The overrides file as last applied: which content, and what of it was refused."""

    path: str | None = None
    digest: str | None = None  # sha256 of the content last read (None: no file)
    problems: Mapping[str, str] = field(default_factory=dict)  # model id ("" the file) -> why


@dataclass(frozen=True)
class PodPlan:
    """Everything the processes of one server share: the models' plans, numbered."""

    models: Plan
    generation: int = 1
    overrides: OverridesStatus = field(default_factory=OverridesStatus)

    def model(self, model_id: str) -> ModelPlan:
        """The plan of `model_id`, or NotFound."""
        found = self.models.get(model_id)
        if found is None:
            raise NotFound(f"unknown model {model_id!r}")
        return found

    def with_model(self, model_id: str, model: ModelPlan) -> PodPlan:
        """The same plan, `model_id` changed."""
        return replace(self, models=MappingProxyType({**self.models, model_id: model}))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the plan file."""
        return {
            "generation": self.generation,
            "overrides": {
                "path": self.overrides.path,
                "digest": self.overrides.digest,
                "problems": dict(self.overrides.problems),
            },
            "models": {
                model_id: {
                    "primary": m.primary,
                    "history": list(m.history),
                    "configured": m.configured,
                    "asked": m.asked,
                    "refused": m.refused,
                    "traffic": dict(m.traffic),
                    "configured_traffic": dict(m.configured_traffic),
                    "awaited": m.awaited,
                    "versions": {v: spec.as_dict() for v, spec in m.versions.items()},
                }
                for model_id, m in self.models.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodPlan:
        """The plan `as_dict` wrote."""
        overrides = data.get("overrides") or {}
        models = {
            model_id: ModelPlan(
                primary=m["primary"],
                history=tuple(m.get("history", ())),
                configured=m.get("configured"),
                asked=m.get("asked"),
                refused=m.get("refused"),
                traffic=MappingProxyType(dict(m.get("traffic") or {})),
                configured_traffic=MappingProxyType(dict(m.get("configured_traffic") or {})),
                awaited=m.get("awaited"),
                versions=MappingProxyType(
                    {v: VersionSpec.from_dict(spec) for v, spec in m["versions"].items()}
                ),
            )
            for model_id, m in data["models"].items()
        }
        return cls(
            MappingProxyType(models),
            int(data.get("generation", 1)),
            OverridesStatus(
                overrides.get("path"),
                overrides.get("digest"),
                MappingProxyType(dict(overrides.get("problems") or {})),
            ),
        )


def plan_from_config(config: ServiceConfig) -> dict[str, ModelPlan]:
    """The plan models.yaml describes: every version loaded, its primary serving."""
    plan = {}
    for model_id, model in config.models.items():
        versions = {
            version: VersionSpec(
                model.class_for(version),
                None if artifact is None else str(artifact),
                v.shadow,
                digest=v.sha256,
                uri=v.uri,
            )
            for version, v in model.versions.items()
            for artifact in [config.artifact_path(model_id, version)]
        }
        traffic = MappingProxyType(dict(model.traffic or {}))
        plan[model_id] = ModelPlan(
            model.primary,
            MappingProxyType(versions),
            configured=model.primary,
            traffic=traffic,
            configured_traffic=traffic,
        )
    return plan


# Run-time changes (the admin interface). Each checks the plan only; the caller checks that the
# version can serve in its own process too.


def promote(plan: PodPlan, model_id: str, version: str) -> PodPlan:
    """Make `version` the primary; it must be in the plan and not failed. Ends an experiment."""
    model = plan.model(model_id)
    if version == model.primary and not model.traffic:
        raise Conflict(f"model {model_id!r} version {version!r} is already primary")
    _check_servable(model_id, model, version)
    model = replace(model, awaited=None)  # a run-time choice: an arriving version waits
    if version == model.primary:  # the experiment ends with the primary it had
        return plan.with_model(model_id, replace(model, traffic=MappingProxyType({})))
    promoted = _set_primary(model, version, (*model.history, model.primary))
    return plan.with_model(model_id, replace(promoted, traffic=MappingProxyType({})))


def set_traffic(plan: PodPlan, model_id: str, weights: Mapping[str, int]) -> PodPlan:
    """Split the requests naming no version at `weights` (empty: end the experiment)."""
    model = plan.model(model_id)
    if weights:
        problem = traffic_problem(weights, model.versions)
        if problem is not None:
            error = NotFound if "not among the versions" in problem else BadRequest
            raise error(f"model {model_id!r} traffic: {problem}")
        failed = [v for v in sorted(weights) if weights[v] > 0 and v not in model.servable]
        if failed:
            why = why_not_servable(model.versions[failed[0]])
            raise Conflict(f"model {model_id!r} version {failed[0]!r} {why}")
    if dict(weights) == dict(model.traffic):
        return plan
    return plan.with_model(model_id, replace(model, traffic=MappingProxyType(dict(weights))))


def rollback(plan: PodPlan, model_id: str) -> PodPlan:
    """Go back to the newest earlier primary that the pod can still serve; ends an experiment."""
    model = replace(plan.model(model_id), traffic=MappingProxyType({}), awaited=None)
    history = list(model.history)
    while history:
        candidate = history.pop()
        if candidate in model.servable:
            return plan.with_model(model_id, _set_primary(model, candidate, tuple(history)))
    raise Conflict(f"model {model_id!r} has no earlier primary to roll back to")


def unload(plan: PodPlan, model_id: str, version: str) -> PodPlan:
    """Drop a version that is not primary."""
    model = plan.model(model_id)
    if version not in model.versions:
        raise NotFound(f"model {model_id!r} has no version {version!r}")
    if version == model.primary:
        raise Conflict(f"model {model_id!r} version {version!r} is primary; promote another first")
    if model.traffic.get(version):
        raise Conflict(
            f"model {model_id!r} version {version!r} has a share of the traffic; "
            "change the traffic (or promote) first"
        )
    versions = {v: s for v, s in model.versions.items() if v != version}
    history = tuple(v for v in model.history if v != version)
    return plan.with_model(
        model_id, replace(model, versions=MappingProxyType(versions), history=history)
    )


def add_version(plan: PodPlan, model_id: str, version: str, spec: VersionSpec) -> PodPlan:
    """Add (or replace) a version that was loaded and passed its self-tests; not primary."""
    model = plan.model(model_id)
    if version == model.primary and spec.shadow:
        raise Conflict(f"model {model_id!r} version {version!r} is primary: it cannot be a shadow")
    versions = {**model.versions, version: spec}
    return plan.with_model(model_id, replace(model, versions=MappingProxyType(versions)))


def mark_failed(plan: PodPlan, model_id: str, version: str, reason: str) -> PodPlan:
    """`version` failed in a process: no process serves it, and a primary falls back."""
    model = plan.models.get(model_id)
    if model is None or version not in model.versions or model.versions[version].failed:
        return plan
    versions = dict(model.versions)
    versions[version] = replace(versions[version], failed=reason)
    changed = replace(model, versions=MappingProxyType(versions))
    if model.asked == version:
        changed = replace(changed, refused=f"version {version!r} {reason}")
    if version == model.primary:
        changed = fall_back(changed)
    return plan.with_model(model_id, changed)


def fall_back(model: ModelPlan) -> ModelPlan:
    """The newest earlier primary that has not failed, else the configured one, as primary."""
    history = list(model.history)
    while history:
        candidate = history.pop()
        if candidate in model.servable:
            return _set_primary(model, candidate, tuple(history))
    if model.configured in model.servable and model.configured != model.primary:
        return _set_primary(model, model.configured, ())
    return model  # nothing the pod can serve: the model answers 503 until a version loads


def _set_primary(model: ModelPlan, version: str, history: tuple[str, ...]) -> ModelPlan:
    versions = dict(model.versions)
    versions[version] = replace(versions[version], shadow=False)  # a primary is no shadow
    return replace(model, primary=version, history=history, versions=MappingProxyType(versions))


def set_primary(model: ModelPlan, version: str) -> ModelPlan:
    """Make `version` primary as a promotion does (the old primary goes to the history)."""
    if version == model.primary:
        return model
    history = tuple(v for v in model.history if v != version)
    return _set_primary(model, version, (*history, model.primary))


def _check_servable(model_id: str, model: ModelPlan, version: str) -> None:
    spec = model.versions.get(version)
    if spec is None:
        raise NotFound(f"model {model_id!r} has no version {version!r}")
    why = why_not_servable(spec)
    if why is not None:
        raise Conflict(f"model {model_id!r} version {version!r} {why}")
