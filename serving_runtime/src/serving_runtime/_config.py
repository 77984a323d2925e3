"""The service configuration, `models.yaml`: which models, which versions, which is primary.

Typed and frozen; unknown keys are rejected; every error names the key that is wrong.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ._artifacts import cached_path, check_uri, default_cache, is_uri
from ._errors import ConfigError

CONFIG_FILENAME = "models.yaml"
CONFIG_ENV = "SERVING_RUNTIME_CONFIG"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _name(value: Any) -> str:
    # YAML reads `1:` or `primary: 2` as integers; versions are names, so accept and keep text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit)"
        )
    return value


def _class_path(value: Any) -> str:
    if not isinstance(value, str) or not _CLASS_PATH.match(value):
        raise ValueError(f"{value!r} is not of the form 'package.module:ClassName'")
    return value


Name = Annotated[str, BeforeValidator(_name)]


def _weight(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a weight: give a whole number, 0 or more")
    if value < 0:
        raise ValueError(f"weight {value} is negative: give a whole number, 0 or more")
    return value


Weight = Annotated[int, BeforeValidator(_weight)]


def traffic_problem(weights: Mapping[str, int], versions: Mapping[str, Any]) -> str | None:
    """Why these traffic weights cannot apply to a model of these versions, or None."""
    unknown = sorted(set(weights) - set(versions))
    if unknown:
        known = ", ".join(sorted(versions))
        return f"{', '.join(map(repr, unknown))} not among the versions ({known})"
    if sum(weights.values()) <= 0:
        return "the weights add up to 0: give at least one version a weight above 0"
    shadows = sorted(v for v in weights if weights[v] > 0 and getattr(versions[v], "shadow", False))
    if shadows:
        return f"{', '.join(map(repr, shadows))} is a shadow: a shadow gets no traffic"
    return None


ClassPath = Annotated[str, BeforeValidator(_class_path)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class VersionConfig(_Frozen):
    """One version of a model: its artifact and, optionally, its own class."""

    artifact: str | None = Field(
        default=None,
        description="The file passed to the class's load(), relative to models.yaml "
        "(none: load() gets None); or an https://, s3:// or gs:// URI of it, with its sha256, "
        "which `serving-runtime fetch` copies into the artifact cache once.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="The artifact's sha256, in hex: required for a URI (a fetch that reads "
        "other bytes fails), checked at load for a file.",
    )
    class_path: ClassPath | None = Field(
        default=None,
        alias="class",
        description="module:Class serving this version, when not the model's class.",
    )
    shadow: bool = Field(
        default=False,
        description="Run on every request of the primary, off the request path, and compare "
        "its outputs with the primary's (lls_shadow_comparisons_total).",
    )

    @model_validator(mode="after")
    def _uri_has_a_checksum(self) -> VersionConfig:
        if self.artifact is not None and is_uri(self.artifact):
            check_uri(self.artifact)
            if self.sha256 is None:
                raise ValueError(
                    f"artifact {self.artifact!r} is a URI: give its sha256 too "
                    f"(sha256sum FILE, or the checksum your model registry shows)"
                )
        return self

    @property
    def uri(self) -> str | None:
        """The artifact's URI when it is fetched, not a file of the repository."""
        return self.artifact if self.artifact is not None and is_uri(self.artifact) else None


class BatchingConfig(_Frozen):
    """Adaptive batching: concurrent requests to one version become one predict call."""

    max_rows: int = Field(
        ge=1,
        le=4096,
        description="Most rows in one predict call (whole requests are never split; a request "
        "with more rows goes alone). Batching needs the class's feature_names or feature_schema "
        "and a predict that returns one output per row.",
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description="Milliseconds a request may wait for a fuller batch once a predict thread "
        "is free for it. A request that finds the model idle never waits.",
    )


class ModelConfig(_Frozen):
    """One model: the class that serves it, its versions and the primary one."""

    class_path: ClassPath = Field(
        alias="class", description="module:Class of the model, importable from the repository."
    )
    primary: Name = Field(
        description="The version /infer answers with when none is asked for (and no `traffic` "
        "is given), the one drift checks and rollback returns to; with `traffic`, it may be "
        "left out: then the version of the largest weight."
    )
    versions: dict[Name, VersionConfig] = Field(
        min_length=1, description="The versions loaded at start, by name (at least one)."
    )
    traffic: dict[Name, Weight] | None = Field(
        default=None,
        description="An experiment: requests that name no version are split between these "
        "versions at these integer weights (e.g. {v1: 90, v2: 10}), the same routing key "
        "always to the same version; only versions that serve get a share. Off when absent.",
    )
    batching: BatchingConfig | None = Field(
        default=None, description="Batch concurrent requests into one predict; off when absent."
    )

    @model_validator(mode="before")
    @classmethod
    def _primary_from_traffic(cls, data: Any) -> Any:
        # `traffic` instead of `primary`: the heaviest version is the one the rest relies on.
        if (
            isinstance(data, dict)
            and "primary" not in data
            and isinstance(data.get("traffic"), dict)
        ):
            weights = data["traffic"]
            if weights and all(isinstance(w, int) for w in weights.values()):
                data = {**data, "primary": max(weights, key=lambda v: weights[v])}
        return data

    @model_validator(mode="after")
    def _primary_is_a_version(self) -> ModelConfig:
        if self.primary not in self.versions:
            known = ", ".join(sorted(self.versions))
            raise ValueError(f"primary {self.primary!r} is not one of the versions ({known})")
        if self.versions[self.primary].shadow:
            raise ValueError(f"primary {self.primary!r} cannot also be a shadow")
        if self.traffic is not None:
            problem = traffic_problem(self.traffic, self.versions)
            if problem is not None:
                raise ValueError(f"traffic: {problem}")
        return self

    def class_for(self, version: str) -> str:
        """The `module:Class` that serves `version`."""
        return self.versions[version].class_path or self.class_path


class RecordingConfig(_Frozen):
    """Output recording: which requests are written where, off the request path."""

    path: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "lls-records",
        description="Folder of the rotated JSON-lines files, relative to models.yaml.",
    )
    sample: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Share of requests recorded, above 0 up to 1."
    )
    features: bool = Field(
        default=False, description="Keep each request's features too (for new test_data)."
    )
    max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Rotate a file past this size (bytes)."
    )
    backups: int = Field(default=3, ge=0, description="Older files kept after rotation.")
    sink: ClassPath | None = Field(
        default=None,
        description="module:Class of another sink (a class with write and close); "
        "none: the JSON-lines files.",
    )


class ServiceConfig(_Frozen):
    """The whole `models.yaml`."""

    models: dict[Name, ModelConfig] = Field(
        min_length=1, description="The served models by model id (used in /infer and metrics)."
    )
    recording: RecordingConfig | None = Field(
        default=None, description="Output recording; off when absent."
    )
    root: Path = Field(default=Path("."), exclude=True)

    def artifact_path(self, model_id: str, version: str) -> Path | None:
        """The artifact of a configured version, resolved against the configuration's folder
        (where the cache keeps it, for a URI)."""
        given = self.models[model_id].versions[version]
        if given.uri is not None and given.sha256 is not None:
            return cached_path(given.uri, given.sha256, default_cache(self.root))
        return None if given.artifact is None else self.root / given.artifact


def find_config(start: Path | None = None) -> Path:
    """The configuration to use: $SERVING_RUNTIME_CONFIG, else models.yaml here or above."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILENAME).is_file():
            return folder / CONFIG_FILENAME
    raise ConfigError(
        f"no {CONFIG_FILENAME} in {here} or any folder above it; "
        f"run inside a service repository, or pass --config (or set {CONFIG_ENV})"
    )


def load_config(path: Path) -> ServiceConfig:
    """Read and validate a configuration file; a ConfigError names what is wrong and where."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'models' key")
    try:
        config = ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
    root = path.resolve().parent
    if config.recording is not None and not config.recording.path.is_absolute():
        recording = config.recording.model_copy(update={"path": root / config.recording.path})
        config = config.model_copy(update={"recording": recording})
    return config.model_copy(update={"root": root})


def describe_validation_error(exc: ValidationError) -> str:
    """One line: every problem pydantic found, with where."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
