"""The transport-independent operations: infer, readiness, listing and run-time changes.

Knows nothing of HTTP. Keeps this worker's registry in step with the shared plan before every
operation, so a change made through any worker is seen by all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._changes import apply_change
from ._errors import PredictFailed
from ._logs import JsonLog
from ._model import SelfTestReport, ServedModel
from ._overrides import overrides_problems
from ._registry import Registry, VersionSpec
from ._sync import Follower
from ._tracing import Tracing

if TYPE_CHECKING:
    from ._offload import Offload


@dataclass(frozen=True)
class Prediction:
    """What /infer answers."""

    model_id: str
    version: str
    output: Any


class DataPlane:
    """Infer, report and change models, for any transport."""

    def __init__(self, registry: Registry, follower: Follower, log: JsonLog) -> None:
        self.registry = registry
        self.follower = follower
        self.offload: Offload | None = None  # shadows and recording, when wired
        self.tracing: Tracing | None = None  # spans, when an OTLP endpoint is configured
        self._log = log

    def sync(self) -> None:
        """Follow the shared plan from this process (a fresh worker starts to here).

        Once it follows, a thread of its own takes in every change: nothing on the request path
        waits for a change or loads a model.
        """
        self.follower.ensure_running()

    def infer(
        self,
        model_id: str,
        version: str | None,
        features: Any,
        request_id: str = "",
        adapt: Callable[[ServedModel], Any] | None = None,
    ) -> Prediction:
        """Run one prediction; a failing predict() becomes PredictFailed, the worker goes on.

        `adapt`, when given, computes the features from the version that will answer (another
        protocol's inputs mapped to that version's feature names), instead of `features`.
        """
        self.sync()
        model = self.registry.resolve(model_id, version)
        if adapt is not None:
            features = adapt(model)
        started = time.perf_counter()
        if self.tracing is None:
            inputs = model.prepare(features)
            output = _predict(model, inputs)
        else:
            with self.tracing.step("validate", model.model_id, model.version, request_id):
                inputs = model.prepare(features)
            with self.tracing.step("predict", model.model_id, model.version, request_id):
                output = _predict(model, inputs)
        if self.offload is not None:
            entry = self.registry.snapshot.get(model_id)
            if entry is not None:
                seconds = time.perf_counter() - started
                self.offload.after_predict(
                    entry, model, inputs, output, request_id=request_id, seconds=seconds
                )
        return Prediction(model.model_id, model.version, output)

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
                versions.append(
                    {
                        "version": version,
                        "state": entry.state_of(version),
                        "class": v.spec.class_path,
                        "artifact": v.spec.artifact,
                        "selftest": _selftest_summary(v.selftest),
                        "problem": v.problem,
                    }
                )
            listing.append(
                {
                    "model_id": model_id,
                    "primary": entry.plan.primary,
                    "rollback_to": entry.plan.history[-1] if entry.plan.history else None,
                    "override": {"primary": entry.plan.asked, "refused": entry.plan.refused},
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
        self.follower.catch_up()


def _predict(model: ServedModel, inputs: Any) -> Any:
    try:
        return model.instance.predict(inputs)
    except Exception as exc:
        raise PredictFailed(
            f"model {model.model_id!r} version {model.version!r} failed to predict: "
            f"{type(exc).__name__}"
        ) from exc


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
