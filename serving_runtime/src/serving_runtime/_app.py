"""Assemble the layers into one ASGI application."""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path
from typing import Any

from ._batching import BatchPolicy, Scheduler
from ._config import find_config, load_config
from ._dataplane import DataPlane
from ._errors import ServingRuntimeError
from ._logs import JsonLog
from ._metrics import Metrics
from ._offload import Offload
from ._registry import Registry
from ._settings import HttpSettings
from ._state import OFFLOAD_SOCKET, fits_socket, make_state_dir
from ._sync import PlanCollector, follow_plan
from ._tracing import Tracing
from .http import App


def create_app(
    config_path: str | Path | None = None,
    settings: HttpSettings | None = None,
    state_dir: str | Path | None = None,
    overrides: str | Path | None = None,
    *,
    threads: int = 1,
    inline_predict_ms: float = 1.0,
) -> App:
    """Load every configured model and version (self-tests included) and return the app.

    Call it before forking workers so they share the loaded models; `state_dir` is where the
    workers share run-time changes (by default a new temporary folder, removed when this
    process exits). `overrides` is the overrides file (by default $SERVING_RUNTIME_OVERRIDES,
    if set). `threads` is how many predicts each serving process runs at once (off its event
    loop); a model whose predicts average less than `inline_predict_ms` runs on the event loop
    instead (0: never).
    """
    path = Path(config_path) if config_path is not None else find_config()
    config = load_config(path)
    log = JsonLog()
    registry = Registry(config.root)
    registry.on_change.append(lambda event, fields: _log_change(log, event, fields))
    folder = Path(state_dir) if state_dir is not None else _own_state_dir()
    if not fits_socket(folder / OFFLOAD_SOCKET):
        raise ServingRuntimeError(
            f"state folder {folder}: the path of a socket in it would be too long for the "
            "kernel; give a shorter one"
        )
    follower = follow_plan(config, folder, registry, log, overrides=overrides)
    settings = settings or HttpSettings()
    metrics = Metrics(lambda: registry.snapshot, settings.latency_objective_ms)
    metrics.registry.register(PlanCollector(follower))
    dataplane = DataPlane(registry, follower, log)
    policies = {
        model_id: BatchPolicy(model.batching.max_rows, model.batching.max_wait_ms / 1000)
        for model_id, model in config.models.items()
        if model.batching is not None
    }
    dataplane.scheduler = Scheduler(threads, policies, metrics, inline_predict_ms / 1000)
    dataplane.offload = Offload(folder / OFFLOAD_SOCKET, config.recording, metrics)
    app = App(dataplane, metrics, log, settings)
    app.tracing = dataplane.tracing = Tracing.from_environment(config.root.name, log)
    return app


def _log_change(log: JsonLog, event: str, fields: dict[str, Any]) -> None:
    level = "error" if event == "version_failed" else "info"
    log.event(level, event, **{k: v for k, v in fields.items() if v is not None})


def _own_state_dir() -> Path:
    """A new state folder (`_state.make_state_dir`: a killed process's is swept by the next
    server), removed when the process that made it exits (forked children leave it be)."""
    folder = make_state_dir()
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder
