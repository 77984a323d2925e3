"""The overrides file: a partial models.yaml, applied over it at start and whenever it changes.

    models:
      fraud-score:
        primary: v2

A service's chart writes it from its values into a ConfigMap that the pod mounts as a folder,
so `helm upgrade` and `helm rollback` set which version serves, in every pod, including pods
started later. The kubelet updates such a file by swapping a symlink (`..data`) to a new
folder: the file is watched by what its path resolves to, never by the symlink itself.

Whenever its content changes, the whole file applies: every model it names moves to the
primary it names, every other model to models.yaml's primary, so that every pod, old or new,
serves what the chart says; a run-time promotion or rollback lasts until then. An entry that
cannot apply (an unknown model or version, a version that failed) is refused and reported, and
that model keeps serving what it served; a file that is not valid is refused whole.

A version the file declares by URI enters the plan at once, arriving: every other part of the
file applies without waiting for its fetch, and the parts that ask for it follow once it has
arrived (`_delivery.py`). One the pod already holds as declared (same URI, sha256 and class) is
kept as it is, arrived or failed: an unchanged declaration is never fetched twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._artifacts import check_uri, is_uri
from ._config import (
    ClassPath,
    Name,
    ServiceConfig,
    Weight,
    describe_validation_error,
    traffic_problem,
)
from ._plan import ModelPlan, OverridesStatus, PodPlan, VersionSpec, set_primary, why_not_servable

OVERRIDES_ENV = "SERVING_RUNTIME_OVERRIDES"
FileKey = tuple[int, int, int, int]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeclaredVersion(_Frozen):
    """A version the overrides file adds, by the URI of its artifact: fetched, self-tested,
    and only then served (see `_delivery.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    artifact: str = Field(
        description="An https://, http://, s3:// or gs:// URI of the artifact (its sha256, not "
        "the transport, vouches for the bytes)."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The artifact's sha256, in hex.")
    class_path: ClassPath | None = Field(
        default=None,
        alias="class",
        description="module:Class serving it, one models.yaml names (default: the model's).",
    )
    shadow: bool = Field(
        default=False, description="Run it as a shadow of the primary instead of serving it."
    )

    @field_validator("artifact")
    @classmethod
    def _a_uri(cls, value: str) -> str:
        if not is_uri(value):
            raise ValueError(
                f"{value!r} is not a URI: a version declared here is fetched "
                "(https://, http://, s3:// or gs://); files in the image go in models.yaml"
            )
        check_uri(value)
        return value


class ModelOverride(_Frozen):
    """What the overrides file sets for one model."""

    versions: dict[Name, DeclaredVersion] = Field(
        default_factory=dict,
        description="Versions added without an image build, by artifact URI and sha256; "
        "removing one stops serving it.",
    )

    primary: Name | None = Field(
        default=None,
        description="The version /infer answers with, instead of models.yaml's primary "
        "(a version models.yaml declares).",
    )
    traffic: dict[Name, Weight] | None = Field(
        default=None,
        description="An experiment's weights by version, instead of models.yaml's traffic "
        "(e.g. {v1: 90, v2: 10}); {} ends the experiment models.yaml starts; null (or no "
        "key) leaves models.yaml's.",
    )

    @field_validator("versions", mode="before")
    @classmethod
    def _no_versions_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class OverridesConfig(_Frozen):
    """The whole overrides file: `models.<model_id>.primary`, as in models.yaml."""

    models: dict[Name, ModelOverride] = Field(
        default_factory=dict, description="Overrides by model id; models not named keep theirs."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True)
class Overrides:
    """The overrides file as read: its content's digest, and what it asks or why it is bad."""

    digest: str | None  # None: there is no file
    models: Mapping[str, ModelOverride] = field(default_factory=dict)
    problem: str | None = None


def parse_overrides(text: str, where: str) -> OverridesConfig:
    """Validate the text of an overrides file; ValueError names what is wrong and where."""
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping with a 'models' key")
    try:
        return OverridesConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_validation_error(exc)}") from None


class OverridesFile:
    """The overrides file at a path, read whole; watched by what the path resolves to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def key(self) -> FileKey | None:
        """Identity of the file the path leads to now (symlinks followed), or None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> Overrides:
        """What the file asks for; a file that is missing asks for nothing."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Overrides(None)
        except OSError as exc:
            return Overrides("unreadable", problem=f"{self.path}: cannot be read: {exc}")
        digest = hashlib.sha256(data).hexdigest()
        try:
            parsed = parse_overrides(data.decode("utf-8", errors="replace"), str(self.path))
        except ValueError as exc:
            return Overrides(digest, problem=str(exc))
        return Overrides(digest, MappingProxyType(dict(parsed.models)))


# Why `version` of `model_id` cannot serve in this process (None: it can, or it is not loaded
# here to tell).
CanServe = Callable[[str, str], str | None]


def apply_overrides(
    plan: PodPlan,
    overrides: Overrides,
    path: str,
    can_serve: CanServe,
    classes: Mapping[str, str] = MappingProxyType({}),
) -> PodPlan:
    """The plan with `overrides` applied over it; unchanged if that content is already applied.

    A version the file declares keeps the spec the plan has for that declaration, else enters
    arriving (of the class it names, else its model's in `classes`); versions it declared
    before and no longer does leave the plan. A primary that is arriving is awaited; a share in
    `traffic` of a declared version that is arriving or failed goes to the others meanwhile.
    """
    if overrides.digest == plan.overrides.digest and plan.overrides.path == path:
        return plan
    if overrides.problem is not None:  # the whole file is refused: nothing changes
        status = OverridesStatus(path, overrides.digest, MappingProxyType({"": overrides.problem}))
        return replace(plan, overrides=status)
    problems = {
        model_id: f"unknown model {model_id!r}"
        for model_id in overrides.models
        if model_id not in plan.models
    }
    for model_id, model in plan.models.items():
        entry = overrides.models.get(model_id)
        changed, clash = _with_declared(model, entry, classes.get(model_id, ""))
        asked = entry.primary if entry is not None else None
        changed = replace(changed, asked=asked, refused=None, awaited=None)
        wanted = asked if asked is not None else model.configured
        spec = changed.versions.get(wanted) if wanted is not None else None
        why = _why_not(model_id, changed.versions, wanted, can_serve)
        if spec is not None and spec.arriving:
            changed = replace(changed, awaited=wanted)  # it becomes the primary on arrival
        elif why is not None:
            changed = refuse(changed, why)
        elif wanted is not None:
            changed = set_primary(changed, wanted)
        split = entry.traffic if entry is not None and entry.traffic is not None else None
        weights = split if split is not None else model.configured_traffic
        blocked, unserved = _traffic_problems(model_id, changed.versions, weights, can_serve)
        if blocked is not None:
            changed = refuse(changed, blocked)
        else:
            changed = refuse(replace(changed, traffic=MappingProxyType(dict(weights))), *unserved)
        if clash is not None:
            changed = replace(changed, refused="; ".join(filter(None, (clash, changed.refused))))
        plan = plan.with_model(model_id, changed)
    return replace(plan, overrides=OverridesStatus(path, overrides.digest, problems))


def refuse(model: ModelPlan, *reasons: str) -> ModelPlan:
    """`model` with `reasons` added to why the overrides file's entry does not apply whole."""
    if not reasons:
        return model
    return replace(model, refused="; ".join(filter(None, (model.refused, *reasons))))


def share_not_served(version: str, why: str) -> str:
    """Why a declared version takes no share of the file's traffic."""
    return f"traffic: version {version!r} {why}; its share goes to the others"


def _with_declared(
    model: ModelPlan, entry: ModelOverride | None, default_class: str
) -> tuple[ModelPlan, str | None]:
    """`model` with the versions `entry` declares (and none it no longer declares), and why
    some declared version could not be added (its name is one models.yaml or admin gave)."""
    declared = dict(entry.versions) if entry is not None else {}
    taken = sorted(v for v in declared if v in model.versions and not model.versions[v].declared)
    versions = {v: s for v, s in model.versions.items() if not s.declared or v in declared}
    for version, wanted in declared.items():
        if version in taken:
            continue
        spec = versions.get(version)
        if spec is None or not _holds(spec, wanted):  # new, or declared anew: to be fetched
            spec = VersionSpec(
                wanted.class_path or default_class,
                digest=wanted.sha256,
                uri=wanted.artifact,
                declared=True,
                arriving=True,
            )
        versions[version] = replace(spec, shadow=wanted.shadow)
    history = tuple(v for v in model.history if v in versions)
    changed = replace(model, versions=MappingProxyType(versions), history=history)
    if changed.primary not in versions:  # a declared primary dropped: models.yaml's again
        fallback = model.configured if model.configured in versions else next(iter(versions))
        changed = replace(changed, primary=fallback)
    if changed.traffic and set(changed.traffic) - set(versions):
        changed = replace(changed, traffic=MappingProxyType({}))
    clash = None
    if taken:
        clash = (
            f"version(s) {', '.join(map(repr, taken))} already declared by models.yaml or "
            "loaded at run time: declare a new version under another name"
        )
    return changed, clash


def _holds(spec: VersionSpec, wanted: DeclaredVersion) -> bool:
    """The plan's `spec` is for this declaration (the same bytes, by the same class)."""
    return (
        spec.declared
        and (spec.uri, spec.digest) == (wanted.artifact, wanted.sha256)
        and wanted.class_path in {None, spec.class_path}
    )


def _why_not(
    model_id: str, versions: Mapping[str, VersionSpec], wanted: str | None, can_serve: CanServe
) -> str | None:
    if wanted is None:
        return None
    spec = versions.get(wanted)
    if spec is None:
        return f"model {model_id!r} has no version {wanted!r}"
    why = why_not_servable(spec) or can_serve(model_id, wanted)
    return None if why is None else f"version {wanted!r} {why}"


def _traffic_problems(
    model_id: str,
    versions: Mapping[str, VersionSpec],
    weights: Mapping[str, int],
    can_serve: CanServe,
) -> tuple[str | None, list[str]]:
    """Why the file's weights cannot apply (None: they do), and which declared versions in
    them do not serve: one arriving waits for its share, one that failed is reported; the
    others share their weight meanwhile, as they share a failed version's."""
    if not weights:
        return None, []
    problem = traffic_problem(weights, versions)
    if problem is not None:
        return f"model {model_id!r} traffic: {problem}", []
    unserved = []
    for version in sorted(weights):
        spec = versions[version]
        if weights[version] <= 0 or spec.arriving:
            continue
        if spec.declared and spec.failed is not None:
            unserved.append(share_not_served(version, spec.failed))
            continue
        why = _why_not(model_id, versions, version, can_serve)
        if why is not None:
            return f"traffic: {why}", []
    return None, unserved


def overrides_problems(plan: PodPlan) -> dict[str, str]:
    """Every part of the overrides file that is refused now: model id ("" the file) -> why."""
    problems = dict(plan.overrides.problems)
    for model_id, model in plan.models.items():
        if model.refused is not None:
            problems[model_id] = model.refused
    return problems


def check_overrides(config: ServiceConfig, text: str, where: str) -> dict[str, str]:
    """What of an overrides file would be refused over `config` (models.yaml), by model id."""
    try:
        parsed = parse_overrides(text, where)
    except ValueError as exc:
        return {"": str(exc)}
    problems = {}
    classes = named_classes(config)
    for model_id, entry in parsed.models.items():
        declared = entry.versions
        model = config.models.get(model_id)
        if model is None:
            problems[model_id] = f"unknown model {model_id!r}"
        elif taken := sorted(set(entry.versions) & set(model.versions)):
            problems[model_id] = (
                f"version(s) {', '.join(map(repr, taken))} already declared by models.yaml: "
                "declare a new version under another name"
            )
        elif entry.primary is not None and entry.primary not in {**model.versions, **declared}:
            problems[model_id] = f"model {model_id!r} has no version {entry.primary!r}"
        elif unknown := sorted(
            v for v, d in declared.items() if (d.class_path or model.class_path) not in classes
        ):
            problems[model_id] = (
                f"model {model_id!r} version {unknown[0]!r}: its class is not one models.yaml names"
            )
        elif entry.traffic:
            problem = traffic_problem(entry.traffic, {**model.versions, **entry.versions})
            if problem is not None:
                problems[model_id] = f"model {model_id!r} traffic: {problem}"
    return problems


def named_classes(config: ServiceConfig) -> set[str]:
    """The classes models.yaml names: the only ones a declared version may use."""
    classes = {model.class_path for model in config.models.values()}
    for model in config.models.values():
        classes |= {model.class_for(version) for version in model.versions}
    return classes
