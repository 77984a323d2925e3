"""The transport-independent operations: infer, readiness, listing and run-time changes.

Knows nothing of HTTP. Keeps this worker's registry in step with the shared plan before every
operation, so a change made through any worker is seen by all. Predictions run off the event
loop, batched where a model allows it (see `_batching.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._batching import Scheduler, Watch
from ._changes import apply_change
from ._errors import NotFound
from ._features import FeatureSpec
from ._logs import JsonLog
from ._model import SelfTestReport, ServedModel
from ._overrides import overrides_problems
from ._registry import ModelEntry, Registry, VersionSpec
from ._sync import Follower
from ._tracing import Tracing


class AfterPredict(Protocol):
    """Where answered requests go for shadows and records (the offload client)."""

    def after_predict(
        self,
        entry: ModelEntry,
        model: ServedModel,
        inputs: Any,
        output: Any,
        *,
        request_id: str,
        seconds: float,
    ) -> None:
        """Hand off the shadows and the record of one answered request, if any is due."""


@dataclass(frozen=True)
class Prediction:
    """What /infer answers."""

    model_id: str
    version: str
    output: Any


@dataclass(frozen=True)
class Description:
    """A model version as another protocol describes it."""

    model: ServedModel
    versions: tuple[str, ...]  # those that can serve
    class_path: str


class DataPlane:
    """Infer, report and change models, for any transport."""

    def __init__(self, registry: Registry, follower: Follower, log: JsonLog) -> None:
        self.registry = registry
        self.follower = follower
        self.scheduler = Scheduler()  # where predicts run: threads of the serving process
        self.offload: AfterPredict | None = None  # shadows and recording, when wired
        self.tracing: Tracing | None = None  # spans, when an OTLP endpoint is configured
        self._log = log

    def sync(self) -> None:
        """Follow the shared plan from this process (a fresh worker starts to here).

        Once it follows, a thread of its own takes in every change: nothing on the request path
        waits for a change or loads a model.
        """
        self.follower.ensure_running()

    async def infer(
        self,
        model_id: str,
        version: str | None,
        features: Any,
        request_id: str = "",
        *,
        adapt: Callable[[ServedModel], Any] | None = None,
        deadline: float | None = None,
        watch: Watch | None = None,
        routing_key: str | None = None,
    ) -> Prediction:
        """Run one prediction off the event loop; a failing predict() becomes PredictFailed.

        `adapt`, when given, computes the features from the version that will answer (another
        protocol's inputs mapped to that version's feature names), instead of `features`.
        `deadline` (the loop's clock) and `watch` (the client) let the rows go unpredicted
        when no one would wait for them any more (DeadlineExceeded, ClientGone).
        `routing_key` chooses the version in an experiment (see `_traffic.py`): before batching,
        so that requests to one version batch together.
        """
        model = self.resolve(model_id, version, routing_key)
        if adapt is not None:
            features = adapt(model)
        started = time.perf_counter()
        predict = self.scheduler.predict
        if self.tracing is None:
            inputs = model.prepare(features)
            output = await predict(model, inputs, deadline=deadline, watch=watch)
        else:
            with self.tracing.step("validate", model.model_id, model.version, request_id):
                inputs = model.prepare(features)
            with self.tracing.step("predict", model.model_id, model.version, request_id):
                output = await predict(model, inputs, deadline=deadline, watch=watch)
        if self.offload is not None:
            entry = self.registry.snapshot.get(model_id)
            if entry is not None:
                seconds = time.perf_counter() - started
                self.offload.after_predict(
                    entry, model, inputs, output, request_id=request_id, seconds=seconds
                )
        return Prediction(model.model_id, model.version, output)

    def knows(self, model_id: str) -> bool:
        """Whether `model_id` is one of the models served (whatever its state)."""
        return model_id in self.registry.snapshot

    def resolve(
        self, model_id: str, version: str | None, routing_key: str | None = None
    ) -> ServedModel:
        """The version that answers `model_id` (and `version`); NotFound, NotReady if none."""
        self.sync()
        return self.registry.resolve(model_id, version, routing_key)

    def describe(self, model_id: str, version: str | None) -> Description:
        """The answering version, the versions that can serve and the class, for metadata."""
        model = self.resolve(model_id, version)
        entry = self.registry.snapshot[model_id]
        passing = tuple(v for v, e in entry.versions.items() if e.passed)
        return Description(model, passing, entry.versions[model.version].spec.class_path)

    def feature_specs(self) -> dict[str, FeatureSpec | None]:
        """Each model's features as its primary declares them (None: it declares none, or
        its primary did not load)."""
        self.sync()
        specs: dict[str, FeatureSpec | None] = {}
        for model_id, entry in self.registry.snapshot.items():
            primary = entry.versions.get(entry.plan.primary)
            model = primary.model if primary is not None else None
            specs[model_id] = model.spec if model is not None else None
        return specs

    def new_version(
        self, model_id: str, artifact: str, class_path: str | None, shadow: bool
    ) -> VersionSpec:
        """What an admin load of a version not in models.yaml loads: the primary's class
        unless another is named."""
        self.sync()
        entry = self.registry.snapshot.get(model_id)
        if entry is None:
            raise NotFound(f"unknown model {model_id!r}")
        default = entry.versions[entry.plan.primary].spec.class_path
        return VersionSpec(class_path or default, artifact, shadow)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every model has a serving version; with the reason per model."""
        self.sync()
        detail = {}
        for model_id, entry in self.registry.snapshot.items():
            serving = entry.serving
            if serving is not None:
                detail[model_id] = {"ready": True, "version": serving.version}
            else:
                problem = entry.versions[entry.plan.primary].problem
                detail[model_id] = {
                    "ready": False,
                    "reason": f"primary {entry.plan.primary!r} {problem}",
                }
        return self.registry.ready, detail

    def models(self) -> list[dict[str, Any]]:
        """Every model, its versions, their state and self-test results."""
        self.sync()
        listing = []
        for model_id, entry in self.registry.snapshot.items():
            versions = []
            for version, v in entry.versions.items():
                listed = {
                    "version": version,
                    "state": entry.state_of(version),
                    "class": v.spec.class_path,
                    "artifact": v.spec.artifact,
                    "selftest": _selftest_summary(v.selftest),
                    "problem": v.problem,
                }
                if v.spec.uri is not None:  # fetched: where from, and the local copy above
                    listed["uri"] = v.spec.uri
                versions.append(listed)
            listing.append(
                {
                    "model_id": model_id,
                    "primary": entry.plan.primary,
                    "rollback_to": entry.plan.history[-1] if entry.plan.history else None,
                    "override": {"primary": entry.plan.asked, "refused": entry.plan.refused},
                    "traffic": _traffic(entry),
                    "versions": versions,
                }
            )
        return listing

    def plan_status(self) -> dict[str, Any]:
        """The newest shared plan: its number, the workers still on an older one, and the
        overrides file as it applied (path, content digest, the parts refused and why)."""
        plan = self.follower.store.read()
        return {
            "generation": plan.generation,
            "behind": self.follower.store.lagging(plan.generation),
            "overrides": {
                "path": plan.overrides.path,
                "digest": plan.overrides.digest,
                "problems": overrides_problems(plan),
            },
        }

    def change(self, operation: str, model_id: str, **arguments: Any) -> dict[str, Any]:
        """Promote, roll back, load or unload, for every worker; logged.

        Answers once every worker serves the change (see `_changes.py`).
        """
        self.sync()
        result = apply_change(self.follower, operation, model_id, **arguments)
        self._log.event(
            "info",
            "admin_" + operation,
            model_id=model_id,
            primary=result["primary"],
            **_plain(arguments),
        )
        return result

    def sync_now(self) -> None:
        """Take in the newest plan now, loading what it needs: a worker does before it serves."""
        self.follower.ensure_running()
        plan = self.follower.catch_up()
        self._log.event(
            "info",
            "worker_ready",
            generation=plan.generation,
            primaries={model_id: entry.primary for model_id, entry in plan.models.items()},
        )


def _traffic(entry: ModelEntry) -> dict[str, Any] | None:
    """The experiment: its weights, and each version's share now, in percent (None: none)."""
    if not entry.plan.traffic:
        return None
    total = sum(entry.shares.values())
    shares = {v: round(100 * w / total, 2) for v, w in entry.shares.items()} if total else {}
    return {"weights": dict(entry.plan.traffic), "shares": shares}


def _selftest_summary(report: SelfTestReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "passed": report.passed,
        "rows": len(report.rows),
        "failures": len(report.failures),
        "tolerance": report.tolerance,
        "error": report.error,
    }


def _plain(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v.as_dict() if isinstance(v, VersionSpec) else v for k, v in arguments.items()}
