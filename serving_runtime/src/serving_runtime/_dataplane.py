"""The transport-independent operations: infer, readiness, listing and run-time changes.

Knows nothing of HTTP. Keeps this worker's registry in step with the shared plan before every
operation, so a change made through any worker is seen by all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import PredictFailed
from ._logs import JsonLog
from ._model import SelfTestReport, ServedModel
from ._registry import Plan, Registry, VersionSpec
from ._sync import FileKey, PlanStore
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

    def __init__(self, registry: Registry, store: PlanStore, log: JsonLog) -> None:
        self.registry = registry
        self.offload: Offload | None = None  # shadows and recording, when wired
        self.tracing: Tracing | None = None  # spans, when an OTLP endpoint is configured
        self._store = store
        self._log = log
        self._seen: FileKey | None = store.key()
        self._syncing = threading.Lock()

    def sync(self) -> None:
        """Take in a plan written by another worker, if there is a new one."""
        key = self._store.key()
        if key == self._seen or key is None:
            return
        # One thread reconciles; the others keep answering from the current snapshot.
        if not self._syncing.acquire(blocking=False):
            return
        try:
            self.registry.apply(self._store.read())
            self._seen = key
        finally:
            self._syncing.release()

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
                    "versions": versions,
                }
            )
        return listing

    def change(self, operation: str, model_id: str, **arguments: Any) -> dict[str, Any]:
        """Promote, roll back, load or unload, for every worker; logged."""
        with self._store.locked():
            self.sync_now()
            plan: Plan
            if operation == "promote":
                plan = self.registry.promote(model_id, arguments["version"])
            elif operation == "rollback":
                plan = self.registry.rollback(model_id)
            elif operation == "load":
                spec = arguments.get("spec")
                assert spec is None or isinstance(spec, VersionSpec)
                plan = self.registry.load_version(model_id, arguments["version"], spec)
            elif operation == "unload":
                plan = self.registry.unload(model_id, arguments["version"])
            else:
                raise ValueError(operation)
            self._seen = self._store.write(plan)
        primary = plan[model_id].primary
        self._log.event(
            "info", "admin_" + operation, model_id=model_id, primary=primary, **_plain(arguments)
        )
        return {"model_id": model_id, "operation": operation, "primary": primary}

    def sync_now(self) -> None:
        """Take in the newest plan, waiting for a reconcile under way in another thread."""
        with self._syncing:
            key = self._store.key()
            if key is not None and key != self._seen:
                self.registry.apply(self._store.read())
                self._seen = key


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
