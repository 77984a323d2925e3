"""The plan every process of one server follows, and how a change reaches all of them.

The plan (`_plan.PodPlan`) is a file in the server's state folder, replaced whole (a new file
renamed over the old one) under an exclusive lock, so a reader sees the old plan or the new one.
Every process that serves (each worker, each worker forked later, the offload process) runs a
`Follower`: a thread that notices a new plan or a changed overrides file, loads and self-tests
what it needs off the request path, swaps its registry's snapshot, then says which plan it
serves in a status file of its own. A serving worker under Gunicorn loads nothing: it waits to
be replaced by a worker that loads the plan before it serves (`_replace.py`); elsewhere workers
load one at a time (`_turns.py`). Requests never load anything and never wait for a change.

A version that cannot serve in one process (its artifact is gone, its self-tests miss there) is
marked failed in the plan, which moves its model back to a version every process can serve.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric

from ._config import ServiceConfig
from ._delivery import Delivery, arriving
from ._locks import exclusive
from ._logs import JsonLog
from ._overrides import (
    OVERRIDES_ENV,
    Overrides,
    OverridesFile,
    apply_overrides,
    overrides_problems,
)
from ._plan import PodPlan, mark_failed, plan_from_config
from ._registry import Failure, Registry
from ._state import process_started
from ._turns import LoadTurns

FileKey = tuple[int, int, int]
POLL_SECONDS = 0.2  # how often a follower looks at the plan and the overrides file
_WAIT_POLL_SECONDS = 0.02
_COMPLAIN_SECONDS = 10.0


def follow_plan(
    config: ServiceConfig,
    folder: Path,
    registry: Registry,
    log: JsonLog,
    *,
    overrides: str | Path | None = None,
    role: str = "worker",
) -> Follower:
    """This process's follower of the plan in `folder`, caught up (its models loaded).

    The first process of a server writes the plan, from models.yaml; then the overrides file
    (`overrides`, else $SERVING_RUNTIME_OVERRIDES) is applied over it like any later change.
    """
    path = overrides if overrides is not None else os.environ.get(OVERRIDES_ENV) or None
    store = PlanStore(folder)
    store.create(PodPlan(MappingProxyType(plan_from_config(config))))
    watched = OverridesFile(Path(path)) if path is not None else None
    follower = Follower(config, registry, store, log, overrides=watched, role=role)
    follower.catch_up()
    return follower


class PlanStore:
    """The plan on disk, shared by every process of one server, and their statuses."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "plan.json"
        self._lock_path = folder / "plan.lock"
        self._statuses = folder / "processes"

    def key(self) -> FileKey | None:
        """Identity of the current file: changes whenever a new plan is written."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> PodPlan:
        """The plan as last written."""
        return PodPlan.from_dict(orjson.loads(self.path.read_bytes()))

    def create(self, plan: PodPlan) -> PodPlan:
        """Write the first plan, unless another process did: then that one."""
        with self.locked():
            if self.path.exists():
                return self.read()
            self._write(plan)
            return plan

    def change(self, edit: Callable[[PodPlan], PodPlan]) -> PodPlan:
        """Read, edit and write the plan as one step; `edit` returning its input writes nothing."""
        with self.locked():
            current = self.read()
            edited = edit(current)
            if edited is current:
                return current
            edited = replace(edited, generation=current.generation + 1)
            self._write(edited)
            return edited

    def _write(self, plan: PodPlan) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".plan-")
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(plan.as_dict(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the plan for a read-change-write; other processes' changes wait."""
        with exclusive(self._lock_path):
            yield

    # Which plan each process serves: one small file per process.

    def report(
        self, generation: int, role: str, *, replace_for: int | None = None, changing: bool = False
    ) -> None:
        """Say that this process serves `generation` of the plan (and, with `replace_for`, that
        it waits to be replaced by a worker serving that one; `changing`: while it makes a
        change, which waits for the others first)."""
        self._statuses.mkdir(exist_ok=True)
        pid = os.getpid()
        data: dict[str, object] = {
            "pid": pid,
            "role": role,
            "generation": generation,
            "started": process_started(pid),
        }
        if replace_for is not None:
            data.update(replace_for=replace_for, changing=changing)
        fd, tmp = tempfile.mkstemp(dir=self._statuses, prefix=".status-")
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(data))
        os.replace(tmp, self._statuses / f"{pid}.json")

    def forget(self, pid: int) -> None:
        """Process `pid` has exited: its status goes (the server, as each of its processes
        exits, so that those replaced over a pod's life leave no file for `statuses` to read)."""
        with contextlib.suppress(OSError):
            (self._statuses / f"{pid}.json").unlink()

    def statuses(self, role: str = "worker") -> dict[int, dict[str, Any]]:
        """What each live process of `role` last said, by pid."""
        found = {}
        for path in self._statuses.glob("[0-9]*.json"):
            try:
                status = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            # Alive, and not a reused pid:
            if status.get("role") == role and process_started(status["pid"]) == status.get(
                "started"
            ):
                found[int(status["pid"])] = status
        return found

    def lagging(self, generation: int, role: str = "worker") -> list[int]:
        """The live processes of `role` that serve a plan older than `generation`."""
        statuses = self.statuses(role)
        return sorted(pid for pid, s in statuses.items() if s.get("generation", 0) < generation)

    def wait_applied(
        self,
        generation: int,
        timeout: float,
        *,
        workers: int | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> list[int]:
        """Wait until every live worker but this one serves `generation` (or later), and, with
        `workers`, that many of them do (this one waits for its replacement); the ones that
        do not. Waits no more once `stop()` (the server is stopping)."""
        deadline = time.monotonic() + timeout
        me = os.getpid()
        while True:
            statuses = self.statuses()
            behind = sorted(
                pid for pid, s in statuses.items() if s["generation"] < generation and pid != me
            )
            serving = len(statuses) - len(behind) - (me in statuses)
            mine = statuses.get(me, {}).get("generation", generation)
            if workers is not None and mine < generation and serving < workers and not behind:
                behind = [me]  # its replacement has not said it serves yet
            if not behind or time.monotonic() >= deadline or stop():
                return behind
            time.sleep(_WAIT_POLL_SECONDS)


class Follower:
    """Keeps one process's registry on the shared plan, from a thread of its own."""

    def __init__(
        self,
        config: ServiceConfig,
        registry: Registry,
        store: PlanStore,
        log: JsonLog,
        *,
        overrides: OverridesFile | None = None,
        role: str = "worker",
    ) -> None:
        self.config = config  # models.yaml, as the server started with it
        self.registry = registry
        self.store = store
        self.overrides = overrides
        self.role = role
        self.plan: PodPlan | None = None  # the plan this process serves
        self._log = log
        self._pid = 0  # the process whose thread this is: a fork starts its own
        self._start_lock = threading.Lock()
        self._applying = threading.RLock()
        self._wake = threading.Event()
        self._seen_plan: FileKey | None = None
        self._seen_overrides: tuple[int, ...] | None = None
        self._reported: int | None = None  # the generation this process last said it serves
        # Set in a Gunicorn worker once it serves (`_replace.py`): the pod's worker count. A
        # plan that needs a version loaded then makes this worker wait to be replaced by one
        # that loads it before it serves, instead of loading it beside its requests.
        self.replaced_to_load: int | None = None
        self._changes = 0  # changes this process is making (`making_change`)
        self._changes_lock = threading.Lock()  # admin calls run on threads, side by side
        self.stopping: Callable[[], bool] = lambda: False  # told to stop (the HTTP layer's)
        self._deferred: FileKey | None = None  # the plan it waits to be replaced for
        self._last_complaint = 0.0
        self.delivery = Delivery(
            config,
            registry,
            log,
            store.folder,
            change=store.change,
            catch_up=self.catch_up,
            current=store.read,
        )

    @property
    def running(self) -> bool:
        """The thread runs in this process."""
        return self._pid == os.getpid()

    def ensure_running(self, *, idle: bool = False) -> None:
        """In a process that does not follow yet (a fresh fork): catch up, then follow.

        `idle`: catch up in a thread at the lowest CPU priority, for a worker that serves
        nothing yet (its loads then take only the CPU the serving workers leave).
        """
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._applying = threading.RLock()
            self._wake = threading.Event()
            self._reported = None
            self._pid = os.getpid()
            try:
                if idle:
                    run_idle(lambda: self.catch_up(deliver=False))
                else:
                    self.catch_up()
            finally:
                if self.role == "worker":  # serving from now on: its loads take turns
                    self.registry.load_turn = LoadTurns(self.store.folder, self._log)
                threading.Thread(target=self._run, name="lls-follow", daemon=True).start()

    def catch_up(self, *, deliver: bool = True) -> PodPlan:
        """Bring this process to the newest plan now (loading what it needs); returns it.

        Versions the plan holds arriving are delivered: in the background once this process
        follows, else (a server starting) here, within the startup budget. A worker replaced
        to load (`replaced_to_load`) keeps the plan it has, and says it waits.
        """
        with self._applying:
            self._apply_overrides()
            self._take_plan()
            assert self.plan is not None
            if deliver and arriving(self.plan) and not self.delivery.busy:
                if self.running:
                    self.delivery.start(self.wake)
                else:
                    self.delivery.run_starting()
                    self._take_plan()
            if self.running and self._reported != self.plan.generation:
                self.store.report(self.plan.generation, self.role)
                self._reported = self.plan.generation
            return self.plan

    def _take_plan(self) -> None:
        while True:
            key = self.store.key()
            if self.plan is not None and key in (self._seen_plan, self._deferred):
                return
            plan = self.store.read()
            if self._waits_replacement(plan):
                self._deferred = key
                return
            failures = self.registry.apply(plan.models)
            self.plan, self._seen_plan = plan, key
            if not failures:
                return
            self._fail(failures)  # a new plan, which the next turn takes in

    def _waits_replacement(self, plan: PodPlan) -> bool:
        if self.replaced_to_load is None or self.plan is None or not self.running:
            return False
        if not self.registry.would_load(plan.models):
            return False
        self.store.report(
            self.plan.generation, self.role, replace_for=plan.generation, changing=self.changing
        )
        self._log.event(
            "info",
            "worker_waits_replacement",
            generation=plan.generation,
            serves=self.plan.generation,
        )
        return True

    def wake(self) -> None:
        """Look at the plan now rather than at the next poll."""
        self._wake.set()

    @contextmanager
    def making_change(self) -> Iterator[None]:
        """While this process makes a change (`_changes.py`): its status says so."""
        with self._changes_lock:
            self._changes += 1
        try:
            yield
        finally:
            with self._changes_lock:
                self._changes -= 1

    @property
    def changing(self) -> bool:
        """Whether this process is making a change now."""
        return self._changes > 0

    def _run(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # never let the thread die: the next poll tries again
                now = time.monotonic()
                if now - self._last_complaint >= _COMPLAIN_SECONDS:
                    self._last_complaint = now
                    self._log.event("error", "follow_failed", traceback=traceback.format_exc())

    def _apply_overrides(self) -> None:
        if self.overrides is None:
            return
        key = self.overrides.key()
        if key == self._seen_overrides and self.plan is not None:
            return
        read = self.overrides.read()
        path = str(self.overrides.path)
        before = self.store.read()
        if before.overrides.digest != read.digest or before.overrides.path != path:
            self._apply_read(read)  # at once: versions it declares join as they arrive
        self._seen_overrides = key

    def _apply_read(self, read: Overrides) -> None:
        """Apply this content of the overrides file, unless it is stale or applied already."""
        assert self.overrides is not None
        path = str(self.overrides.path)
        if self.overrides.read().digest != read.digest:
            return  # the file changed again: the next turn takes the new content in
        applied = False  # by this process: another may have applied it since `before`, and logs
        classes = {model_id: model.class_path for model_id, model in self.config.models.items()}

        def edit(plan: PodPlan) -> PodPlan:
            nonlocal applied
            edited = apply_overrides(plan, read, path, self._why_not, classes)
            applied = edited is not plan
            return edited

        after = self.store.change(edit)
        if not applied or after.overrides.digest != read.digest:
            return
        if read.digest is None:
            self._log.event("warning", "overrides_missing", path=path)
        primaries = {m: p.primary for m, p in after.models.items()}
        fetching = [f"{model_id} {version}" for model_id, version, _ in arriving(after)]
        self._log.event(
            "info", "overrides_applied", path=path, primaries=primaries, arriving=fetching
        )
        for model_id, why in overrides_problems(after).items():
            self._log.event("error", "overrides_refused", path=path, model_id=model_id, why=why)

    def _why_not(self, model_id: str, version: str) -> str | None:
        entry = self.registry.snapshot.get(model_id)
        found = entry.versions.get(version) if entry is not None else None
        return None if found is None or found.passed else found.problem

    def _fail(self, failures: list[Failure]) -> None:
        where = f"in process {os.getpid()}"

        def edit(plan: PodPlan) -> PodPlan:
            for model_id, version, why in failures:
                plan = mark_failed(plan, model_id, version, f"{why} ({where})")
            return plan

        before = self.store.read()
        after = self.store.change(edit)
        for model_id, version, why in failures:
            self._log.event(
                "error", "version_unservable", model_id=model_id, version=version, problem=why
            )
            old, new = before.models.get(model_id), after.models.get(model_id)
            if old is not None and new is not None and old.shares != new.shares and new.traffic:
                self._log.event(
                    "warning",
                    "traffic_redistributed",
                    model_id=model_id,
                    version=version,
                    weights=dict(new.traffic),
                    shares=new.shares,
                )
            if old is not None and new is not None and old.primary != new.primary:
                self._log.event(
                    "warning",
                    "primary_fallback",
                    model_id=model_id,
                    version=new.primary,
                    instead_of=old.primary,
                )


def run_idle(work: Callable[[], object]) -> None:
    """Run `work` in a thread of its own in Linux's idle scheduling class (SCHED_IDLE: any
    other task that wakes up preempts it), and wait for it. The thread ends with the work: no
    other thread inherits the class, and none needs the right to leave it."""
    failed: list[BaseException] = []

    def run() -> None:
        setter = getattr(os, "sched_setscheduler", None)
        if setter is not None:
            with contextlib.suppress(OSError):
                setter(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            work()
        except BaseException as exc:  # raised again in the caller
            failed.append(exc)

    thread = threading.Thread(target=run, name="lls-idle-load")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


class PlanCollector:
    """What the plan reports beyond each version's state: the refused parts of the overrides,
    and the shares of an experiment."""

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    def collect(self) -> Iterator[Metric]:
        """`lls_overrides_refused`, one sample per refused part ("" for the whole file), and
        `lls_traffic_share`, one sample per version with a share."""
        refused = GaugeMetricFamily(
            "lls_overrides_refused",
            '1 for each model whose entry in the overrides file was refused (model_id "": '
            "the whole file); the reason is in /models and the log.",
            labels=["model_id"],
        )
        shares = GaugeMetricFamily(
            "lls_traffic_share",
            "In an experiment, the share (0 to 1) of a model's requests naming no version that "
            "each version takes now: its weight over those of the versions that serve.",
            labels=["model_id", "version"],
        )
        plan = self._follower.plan
        if plan is not None:
            for model_id in overrides_problems(plan):
                refused.add_metric([model_id], 1.0)
            for model_id, model in plan.models.items():
                total = sum(model.shares.values())
                for version, weight in model.shares.items():
                    shares.add_metric([model_id, version], weight / total)
        yield refused
        yield shares
