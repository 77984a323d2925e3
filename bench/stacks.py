"""The stacks under test: one small description each (how to start it, its port, its body).

To add a stack (FastAPI + uvicorn, MLServer, BentoML ...), write its app under bench/apps/ if it
needs one and append a `Stack` to STACKS. `role` tells the report what to compare it with:
"runtime" is judged against the targets, "baseline" is the stack to beat by 2x, the fastest
"floor" is the leanest possible server, and "variant" is measured and listed but not judged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.model import Artifact

Role = Literal["runtime", "baseline", "floor", "variant"]


@dataclass(frozen=True)
class Workspace:
    root: Path  # the repository: on every server's PYTHONPATH, so `bench.apps.*` imports
    bin: Path  # the virtual environment's bin/, where every server's command lives
    out: Path  # scratch: the model, models.yaml, server logs
    artifact: Artifact
    config: Path  # the runtime's models.yaml
    workers: int


Command = Callable[[Workspace, int], list[str]]  # (workspace, port) -> argv

# What `serving-runtime serve` sets before loading models; the variants that serve the runtime's
# app without that command set it too, so they differ from it only in the server.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def infer_body(row: list[float]) -> bytes:
    return json.dumps({"model_id": "bench", "features": row}).encode()


@dataclass(frozen=True)
class Stack:
    name: str
    role: Role
    port: int
    command: Command
    about: str
    path: str = "/infer"
    body: Callable[[list[float]], bytes] = infer_body
    env: Mapping[str, str] = field(default_factory=dict)
    default: bool = True  # run without --stacks naming it


def serving_runtime(*extra: str, config: str | None = None) -> Command:
    """`serving-runtime serve`, on the workspace's models.yaml or on `config` beside it."""

    def argv(ws: Workspace, port: int) -> list[str]:
        models = ws.config if config is None else ws.out / config
        return [
            str(ws.bin / "serving-runtime"), "serve", "--config", str(models),
            "--bind", f"127.0.0.1:{port}", "--workers", str(ws.workers), *extra,
        ]  # fmt: skip

    return argv


def gunicorn(app: str, *extra: str) -> Command:
    def argv(ws: Workspace, port: int) -> list[str]:
        return [
            str(ws.bin / "gunicorn"), "--workers", str(ws.workers),
            "--bind", f"127.0.0.1:{port}", *extra, app,
        ]  # fmt: skip

    return argv


def granian(interface: str, app: str, *extra: str) -> Command:
    def argv(ws: Workspace, port: int) -> list[str]:
        return [
            str(ws.bin / "granian"), "--interface", interface, "--workers", str(ws.workers),
            "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--no-ws",
            "--log-level", "warning", *extra, app,
        ]  # fmt: skip

    return argv


def python_module(module: str) -> Command:
    """A module run as `python -m MODULE PORT WORKERS`."""

    def argv(ws: Workspace, port: int) -> list[str]:
        return [str(ws.bin / "python"), "-m", module, str(port), str(ws.workers)]

    return argv


STACKS: tuple[Stack, ...] = (
    Stack(
        name="runtime",
        role="runtime",
        port=18701,
        command=serving_runtime(),
        about="serving-runtime serve, its defaults",
    ),
    Stack(
        name="runtime-shadow",
        role="variant",
        port=18717,
        command=serving_runtime(config="models-shadow.yaml"),
        about="serving-runtime serve with a shadow version of the same model (compare p99 with"
        " `runtime`: shadowing must not delay the primary's answer)",
        default=False,
    ),
    Stack(
        name="runtime-granian-serve",
        role="variant",
        port=18718,
        command=serving_runtime("--server", "granian", "--threads", "1"),
        about="serving-runtime serve --server granian --threads 1",
        default=False,
    ),
    Stack(
        name="runtime-threads1",
        role="variant",
        port=18711,
        command=serving_runtime("--threads", "1"),
        about="serving-runtime serve --threads 1 (one request at a time per worker)",
        default=False,
    ),
    Stack(
        name="runtime-threads4",
        role="variant",
        port=18712,
        command=serving_runtime("--threads", "4"),
        about="serving-runtime serve --threads 4",
        default=False,
    ),
    Stack(
        name="runtime-granian",
        role="variant",
        port=18713,
        command=granian("wsgi", "bench.apps.runtime_granian:app", "--blocking-threads", "1"),
        about="the runtime's WSGI app (create_app) on granian, 1 blocking thread per worker",
        env=ONE_THREAD,
        default=False,
    ),
    Stack(
        name="runtime-granian-preload",
        role="variant",
        port=18716,
        command=python_module("bench.apps.runtime_granian_preload"),
        about="the runtime's WSGI app on granian's Python API, models loaded before fork",
        env=ONE_THREAD,
        default=False,
    ),
    Stack(
        name="runtime-sync",
        role="variant",
        port=18714,
        command=gunicorn("bench.apps.runtime_gunicorn:app", "--preload", "--worker-class", "sync"),
        about="the runtime's WSGI app on Gunicorn sync workers (no keep-alive), preloaded",
        env=ONE_THREAD,
        default=False,
    ),
    Stack(
        name="runtime-gthread-si",
        role="variant",
        port=18715,
        command=gunicorn("bench.apps.runtime_gunicorn:app", "--preload", "--threads", "2"),
        about="the runtime's WSGI app on Gunicorn gthread (2 threads) with a 0.2 ms GIL switch"
        " interval instead of 5 ms",
        env={**ONE_THREAD, "BENCH_SWITCH_INTERVAL": "0.0002"},
        default=False,
    ),
    Stack(
        name="flask-gunicorn",
        role="baseline",
        port=18702,
        command=gunicorn("bench.apps.flask_app:app"),
        about="Flask app, Gunicorn sync workers (the seed platform's stack)",
    ),
    Stack(
        name="granian-wsgi",
        role="floor",
        port=18703,
        command=granian("wsgi", "bench.apps.floor_wsgi:app"),
        about="granian, bare WSGI callable, orjson",
    ),
    Stack(
        name="granian-rsgi",
        role="floor",
        port=18704,
        command=granian("rsgi", "bench.apps.floor_rsgi:app"),
        about="granian, bare RSGI callable, orjson",
    ),
)


def select(names: list[str] | None) -> list[Stack]:
    if not names:
        return [s for s in STACKS if s.default]
    by_name = {s.name: s for s in STACKS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in names]
