"""Versions declared by the overrides file: fetched, self-tested, and only then served.

    models:
      fraud-rules:
        versions:
          v3: {artifact: https://models.example.com/rules-v3.json, sha256: 9f2c...}
        traffic: {v1: 90, v3: 10}

A change of the file applies at once (`_overrides.py`): a version it declares that the pod does
not hold yet enters the plan `arriving`, and serves nothing. Each is then fetched (checked
against its sha256, bounded in size and time) and self-tested in the process that fetched it,
and joins the plan on its own once it has: it takes its share of the file's traffic, or becomes
the primary the file asks for, or a shadow. One process of the pod does that work at a time (a
lock in the state folder), from a thread of its own: the request path, the admin interface and
the plan's other changes never wait for a download. The other processes then load the version
from the shared cache, as for any version loaded at run time. A version that cannot be fetched
or fails its self-tests joins failed, with the reason: it never serves, and the parts of the
file that ask for it are reported refused; the pod keeps that failure until the declaration
changes (or goes and comes back).

A server that is starting fetches before it is ready, within its startup budget: past it, it
starts with what it can serve and leaves the rest arriving, for its processes to fetch in the
background once they run.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ._artifacts import fetch_artifact
from ._config import ServiceConfig
from ._errors import ArtifactError, ArtifactTimeout
from ._locks import exclusive
from ._logs import JsonLog
from ._overrides import named_classes, overrides_problems, refuse, share_not_served
from ._plan import PodPlan, VersionSpec, set_primary
from ._registry import Registry

CACHE_ENV = "SERVING_RUNTIME_DELIVERY_CACHE"  # where declared versions are fetched to
MAX_BYTES_ENV = "SERVING_RUNTIME_DELIVERY_MAX_BYTES"
TIMEOUT_ENV = "SERVING_RUNTIME_DELIVERY_TIMEOUT"
STARTUP_BUDGET_ENV = "SERVING_RUNTIME_DELIVERY_STARTUP_BUDGET"
MAX_BYTES = 1 << 30  # 1 GiB: a larger artifact is refused rather than fill the cache
TIMEOUT_SECONDS = 300.0  # a transfer taking longer (or stalled 30 s) fails
STARTUP_BUDGET_SECONDS = 150.0  # half the chart's default startup probe budget (300 s)

Arriving = tuple[str, str, VersionSpec]  # model id, version, its spec in the plan


@dataclass(frozen=True)
class Limits:
    """Where declared versions go, how much a fetch may take, and how long a starting server
    waits for them."""

    cache: Path
    max_bytes: int
    timeout: float
    startup_budget: float

    @classmethod
    def from_environment(cls, state: Path) -> Limits:
        """$SERVING_RUNTIME_DELIVERY_* or the defaults; the cache is in the state folder."""
        cache = os.environ.get(CACHE_ENV)
        return cls(
            Path(cache) if cache else state / "delivered",
            int(os.environ.get(MAX_BYTES_ENV) or MAX_BYTES),
            float(os.environ.get(TIMEOUT_ENV) or TIMEOUT_SECONDS),
            float(os.environ.get(STARTUP_BUDGET_ENV) or STARTUP_BUDGET_SECONDS),
        )


def arriving(plan: PodPlan) -> list[Arriving]:
    """The versions of the plan that are declared and not fetched yet."""
    return [
        (model_id, version, spec)
        for model_id, model in plan.models.items()
        for version, spec in model.versions.items()
        if spec.arriving
    ]


def join(
    plan: PodPlan, *, model_id: str, version: str, awaited: VersionSpec, got: VersionSpec
) -> PodPlan:
    """The plan with `version`, arriving as `awaited`, now `got` (delivered, or failed).

    Unchanged if the plan no longer awaits it so (the file dropped it, or declares other bytes).
    Delivered, it becomes the primary the file waits for, and takes its share of the traffic
    the file set; failed, the parts of the file that ask for it are reported refused.
    """
    model = plan.models.get(model_id)
    held = model.versions.get(version) if model is not None else None
    if model is None or held is None or replace(held, shadow=awaited.shadow) != awaited:
        return plan
    spec = replace(got, shadow=held.shadow)
    changed = replace(model, versions={**model.versions, version: spec})
    waited = model.awaited == version
    if waited:
        changed = replace(changed, awaited=None)
    if spec.failed is None:
        if waited:
            changed = set_primary(changed, version)
    else:
        asked = [f"version {version!r} {spec.failed}"] if model.asked == version else []
        shared = [share_not_served(version, spec.failed)] if model.traffic.get(version) else []
        changed = refuse(changed, *asked, *shared)
    return plan.with_model(model_id, changed)


class Delivery:
    """Fetches, self-tests and joins the versions the plan holds arriving, one at a time."""

    def __init__(
        self,
        config: ServiceConfig,
        registry: Registry,
        log: JsonLog,
        state: Path,
        *,
        change: Callable[[Callable[[PodPlan], PodPlan]], PodPlan],
        catch_up: Callable[[], object],
        current: Callable[[], PodPlan],
    ) -> None:
        self.config = config
        self.registry = registry
        self.limits = Limits.from_environment(state)
        self._log = log
        self._lock_path = state / "delivery.lock"
        self._change = change
        self._catch_up = catch_up
        self._current = current
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._inline = 0  # the process whose starting server delivers on its own thread

    @property
    def busy(self) -> bool:
        """A delivery runs in this process now."""
        pid = os.getpid()
        thread = self._thread
        return self._inline == pid or (
            self._pid == pid and thread is not None and thread.is_alive()
        )

    def start(self, done: Callable[[], None]) -> None:
        """Deliver in a thread of its own, then call `done`; nothing if one runs already."""
        if self.busy:
            return

        def run() -> None:
            try:
                self.run()
            finally:
                done()

        self._pid = os.getpid()
        self._thread = threading.Thread(target=run, name="lls-deliver", daemon=True)
        self._thread.start()

    def run_starting(self) -> None:
        """Deliver on this thread, within the startup budget, unless another process does:
        a starting server then serves what it can, and its processes fetch the rest later."""
        self._inline = os.getpid()
        try:
            self.run(time.monotonic() + self.limits.startup_budget)
        finally:
            self._inline = 0

    def run(self, deadline: float | None = None) -> None:
        """Deliver every version the plan holds arriving, until none is (the file may declare
        more meanwhile), or until `deadline` (time.monotonic()) passes: those not fetched by
        then stay arriving, and then this call waits for no other process's delivery."""
        # One process fetches at a time: the others find the version joined, or in the cache,
        # when their turn comes.
        with exclusive(self._lock_path, None if deadline is None else 0) as held:
            if not held:
                return
            tried: set[Arriving] = set()  # each once: the plan may change under a delivery
            while found := [a for a in arriving(self._current()) if a not in tried]:
                tried.add(found[0])
                if not self._join_next(*found[0], deadline):
                    break  # out of the startup budget: the rest waits for the background
            self._prune(self._current())

    def _join_next(
        self, model_id: str, version: str, awaited: VersionSpec, deadline: float | None
    ) -> bool:
        """Deliver one version and join it to the plan; False: out of the startup budget."""
        got = self._deliver(model_id, version, awaited, deadline)
        if got is None:
            return False
        before = self._current()
        try:
            after = self._change(
                partial(join, model_id=model_id, version=version, awaited=awaited, got=got)
            )
            self._catch_up()  # this process takes the version it self-tested as it is
        finally:
            self.registry.discard_prepared(model_id, version)
        self._report_refusals(before, after)
        return True

    def _report_refusals(self, before: PodPlan, after: PodPlan) -> None:
        old = overrides_problems(before)
        path = after.overrides.path
        for model_id, why in overrides_problems(after).items():
            if old.get(model_id) != why:
                self._log.event("error", "overrides_refused", path=path, model_id=model_id, why=why)

    def _prune(self, plan: PodPlan) -> None:
        """Drop from the cache what the plan no longer declares (and what a fetch killed
        midway left), so that a pod fetching v3, v4, v5... over its life never fills the
        cache's volume and gets evicted. Under the lock: no fetch runs meanwhile."""
        kept = {
            spec.digest
            for model in plan.models.values()
            for spec in model.versions.values()
            if spec.declared
        }
        cache = self.limits.cache
        if not cache.is_dir():
            return
        for folder in cache.iterdir():
            if folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for leftover in folder.glob(".partial-*"):
                leftover.unlink(missing_ok=True)

    def _deliver(
        self, model_id: str, version: str, spec: VersionSpec, deadline: float | None
    ) -> VersionSpec | None:
        """The version as fetched and self-tested, or failed; None: out of the startup budget."""
        assert spec.uri is not None  # a declared version has its URI and sha256
        assert spec.digest is not None
        fields = {"model_id": model_id, "version": version, "uri": spec.uri}
        if spec.class_path not in named_classes(self.config):
            why = f"class {spec.class_path!r} is not one models.yaml names"
            return self._failed(spec, why, fields)
        timeout = self.limits.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                self._deferred("the startup budget is spent", fields)
                return None
            timeout = min(timeout, left)
        self._log.event("info", "version_fetching", **fields)
        try:
            path, fetched = fetch_artifact(
                spec.uri,
                spec.digest,
                self.limits.cache,
                max_bytes=self.limits.max_bytes,
                timeout=timeout,
            )
        except ArtifactTimeout as exc:
            if deadline is None:
                return self._failed(spec, f"could not be fetched: {exc}", fields)
            self._deferred(str(exc), fields)
            return None
        except ArtifactError as exc:
            return self._failed(spec, f"could not be fetched: {exc}", fields)
        except Exception as exc:  # whatever it was, this version failed, not the delivery
            why = f"could not be fetched: {type(exc).__name__}: {exc}"
            return self._failed(spec, why, fields)
        spec = replace(spec, artifact=str(path), arriving=False)
        entry = self.registry.prepare(model_id, version, spec)
        if not entry.passed:
            return self._failed(spec, entry.problem or "cannot serve", fields)
        self._log.event("info", "version_delivered", fetched=fetched, **fields)
        return spec

    def _failed(self, spec: VersionSpec, why: str, fields: dict[str, str]) -> VersionSpec:
        self._log.event("error", "version_delivery_failed", problem=why, **fields)
        return replace(spec, arriving=False, failed=f"was not delivered: {why}")

    def _deferred(self, why: str, fields: dict[str, str]) -> None:
        budget = f"{self.limits.startup_budget:g} s"
        self._log.event(
            "warning",
            "version_delivery_deferred",
            problem=f"not fetched within the startup budget ({budget}): {why}; the server "
            "starts without it and fetches it in the background",
            **fields,
        )
