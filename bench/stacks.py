"""The stacks under test: one small description each (how to start it, its port, its body).

To add a stack, write its app under bench/apps/ if it needs one and append a `Stack` to STACKS;
a stack with heavy or conflicting dependencies names a `venv`, built from bench/peers/NAME.txt.
`role` tells the report what it is: "runtime" is judged against the targets, "previous" is the
runtime's previous release (the same-run baseline for what this one changed), "baseline" is the
platform the runtime replaces, "peer" another way to serve the model, the fastest "floor" the
leanest possible server, "batched" is the runtime with adaptive batching on (judged against the
runtime), and "variant" is measured and listed but not judged, unless `p99_within` bounds its
p99 against the runtime's. `rps_target` says how many times this stack's throughput the runtime
must answer at a concurrency.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.model import Artifact

PREVIOUS = "0.8.0"  # the runtime release before this one (bench/peers/runtime-PREVIOUS.txt)
Role = Literal["runtime", "previous", "batched", "baseline", "peer", "floor", "variant"]


@dataclass(frozen=True)
class Workspace:
    root: Path  # the repository: on every server's PYTHONPATH, so `bench.apps.*` imports
    bin: Path  # the main virtual environment's bin/, where most servers' commands live
    out: Path  # scratch: the model, models.yaml, server logs
    artifact: Artifact
    config: Path  # the runtime's models.yaml
    workers: int
    venvs: Mapping[str, Path] = field(default_factory=dict)  # peer venv name -> its bin/

    def bin_of(self, stack: Stack) -> Path:
        return self.venvs[stack.venv] if stack.venv else self.bin


Command = Callable[[Workspace, Path, int], list[str]]  # (workspace, bin dir, port) -> argv

# What `serving-runtime serve` sets before loading models; the variants that serve the runtime's
# app without that command set it too, so they differ from it only in the server.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def infer_body(row: list[float]) -> bytes:
    return json.dumps({"model_id": "bench", "features": row}).encode()


def v2_body(row: list[float]) -> bytes:
    """An Open Inference Protocol (V2) request: one FP64 tensor of shape [1, features]."""
    tensor = {"name": "features", "shape": [1, len(row)], "datatype": "FP64", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def output_value(answer: Any) -> float:
    """The one probability in an answer of the form {"output": [p]} (or [p], [[p]], p)."""
    value = answer["output"] if isinstance(answer, dict) else answer
    while isinstance(value, list):
        value = value[0]
    return float(value)


def v2_output_value(answer: Any) -> float:
    return float(answer["outputs"][0]["data"][0])


@dataclass(frozen=True)
class Stack:
    name: str
    role: Role
    port: int
    command: Command
    about: str
    path: str = "/infer"
    body: Callable[[list[float]], bytes] = infer_body
    answer: Callable[[Any], float] = output_value  # the probability in a decoded JSON answer
    env: Mapping[str, str] = field(default_factory=dict)
    default: bool = True  # run without --stacks naming it
    venv: str | None = None  # a peer venv (bench/peers/NAME.txt) instead of the main one
    # concurrency -> how many times this stack's rps the runtime must reach there
    rps_target: Mapping[int, float] = field(default_factory=dict)
    # A variant's p99 may be at most this many times the runtime's, at every concurrency
    p99_within: float | None = None


def serving_runtime(*extra: str, config: str | None = None) -> Command:
    """`serving-runtime serve`, on the workspace's models.yaml or on `config` beside it."""

    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        models = ws.config if config is None else ws.out / config
        return [
            str(bin_dir / "serving-runtime"), "serve", "--config", str(models),
            "--bind", f"127.0.0.1:{port}", "--workers", str(ws.workers), *extra,
        ]  # fmt: skip

    return argv


def gunicorn(app: str, *extra: str) -> Command:
    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        return [
            str(bin_dir / "gunicorn"), "--workers", str(ws.workers),
            "--bind", f"127.0.0.1:{port}", *extra, app,
        ]  # fmt: skip

    return argv


def granian(interface: str, app: str, *extra: str) -> Command:
    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        return [
            str(bin_dir / "granian"), "--interface", interface, "--workers", str(ws.workers),
            "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--no-ws",
            "--log-level", "warning", *extra, app,
        ]  # fmt: skip

    return argv


def python_module(module: str) -> Command:
    """A module run as `python -m MODULE PORT WORKERS`."""

    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        return [str(bin_dir / "python"), "-m", module, str(port), str(ws.workers)]

    return argv


def admin_load(slow: str, *extra: str) -> Command:
    """serving-runtime serve while `admin load` reloads a slow version (bench/apps/admin_load)."""

    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        module = [str(bin_dir / "python"), "-m", "bench.apps.admin_load"]
        return [*module, str(port), str(ws.workers), slow, *extra]

    return argv


def uvicorn(app: str, *extra: str) -> Command:
    """uvicorn with its own worker processes, as FastAPI's docs deploy it; no access log."""

    def argv(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
        return [
            str(bin_dir / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(ws.workers), "--no-access-log", *extra,
        ]  # fmt: skip

    return argv


def mlserver(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
    """`mlserver start` on a model repository written here: server and model settings files."""
    repo = ws.out / "mlserver"
    model = repo / "bench"
    model.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": port + 100,
        "metrics_port": port + 200,
        "parallel_workers": ws.workers,
        "debug": False,  # production: no per-request access log
    }
    model_settings = {
        "name": "bench",
        "implementation": "bench.apps.mlserver_model.BenchRuntime",
        "parameters": {"uri": str(ws.artifact.path)},
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return [str(bin_dir / "mlserver"), "start", str(repo)]


def bentoml(ws: Workspace, bin_dir: Path, port: int) -> list[str]:
    # The worker count is the service's own setting (workers=2 in its decorator).
    return [
        str(bin_dir / "bentoml"), "serve", "bench.apps.bentoml_service:Bench",
        "--working-dir", str(ws.root), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


STACKS: tuple[Stack, ...] = (
    Stack(
        name="runtime",
        role="runtime",
        port=18701,
        command=serving_runtime(),
        about="serving-runtime serve, its defaults",
    ),
    Stack(
        name=f"runtime-{PREVIOUS}",
        role="previous",
        port=18710,
        command=serving_runtime(),
        about=f"serving runtime {PREVIOUS} (the previous release, from the wheel lls ships), its"
        " defaults, every other package as in the main venv: what this release changed",
        venv=f"runtime-{PREVIOUS}",
    ),
    Stack(
        name="runtime-batched",
        role="batched",
        port=18720,
        command=serving_runtime(config="models-batched.yaml"),
        about="serving-runtime serve with adaptive batching on for the model (batching:"
        " max_rows 32): concurrent requests become one predict call",
    ),
    Stack(
        name="runtime-threads2",
        role="variant",
        port=18719,
        command=serving_runtime("--threads", "2"),
        about="serving-runtime serve --threads 2 (two predicts at once per worker)",
        default=False,
    ),
    Stack(
        name="runtime-max-requests",
        role="variant",
        port=18722,
        command=serving_runtime("--max-requests", "4000"),
        about="serving-runtime serve --max-requests 4000: Gunicorn replaces each worker every"
        " 4 000 requests, about every 2 s here (compare rps with `runtime`: the clients of a"
        " replaced worker must not all stay with the others)",
        default=False,
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
        name="runtime-admin-load",
        role="variant",
        port=18720,
        command=admin_load("sleep"),
        about="`runtime` while `admin load` reloads, back to back, a version whose load waits"
        " 3 s (compare p99 with `runtime`: loading must stay off the request path)",
        default=False,
        p99_within=2.0,
    ),
    Stack(
        name="runtime-admin-load-cpu",
        role="variant",
        port=18721,
        command=admin_load("cpu"),
        about="`runtime-admin-load` with a load that computes for 3 s in Python (holding the"
        " GIL, as unpickling does)",
        default=False,
        p99_within=2.0,
    ),
    Stack(
        name="runtime-niced-load",
        role="variant",
        port=18723,
        command=python_module("bench.apps.niced_load"),
        about="`runtime` beside a process of its own that loads the version of"
        " `runtime-admin-load-cpu` back to back, in Linux's idle scheduling class: whether a load"
        " that computes, done by a process that serves nothing, stays off the request path",
        default=False,
    ),
    Stack(
        name="runtime-granian-serve",
        role="variant",
        port=18718,
        command=serving_runtime("--server", "granian"),
        about="serving-runtime serve --server granian: the same ASGI app on granian",
        default=False,
    ),
    Stack(
        name="flask-gunicorn",
        role="baseline",
        port=18702,
        command=gunicorn("bench.apps.flask_app:app"),
        about="Flask app, Gunicorn sync workers (the seed platform's stack)",
        rps_target={8: 2, 32: 2},
    ),
    Stack(
        name="fastapi-uvicorn",
        role="peer",
        port=18705,
        command=uvicorn("bench.apps.fastapi_app:app"),
        about="FastAPI app (pydantic request and response models, sync `def` route: FastAPI runs"
        " it in its thread pool), `uvicorn --workers 2` with uvloop and httptools",
        venv="fastapi",
        rps_target={1: 1, 8: 1, 32: 1},
    ),
    Stack(
        name="fastapi-uvicorn-async",
        role="variant",
        port=18708,
        command=uvicorn("bench.apps.fastapi_app:app_async"),
        about="the same FastAPI app with an `async def` route: predict runs on the event loop",
        venv="fastapi",
        default=False,
    ),
    Stack(
        name="mlserver",
        role="peer",
        port=18706,
        command=mlserver,
        about="MLServer, a custom MLModel runtime (model-settings.json), parallel_workers 2"
        " (one HTTP front process hands requests to 2 inference processes), V2 JSON request",
        path="/v2/models/bench/infer",
        body=v2_body,
        answer=v2_output_value,
        venv="mlserver",
        rps_target={32: 4},
    ),
    Stack(
        name="bentoml",
        role="peer",
        port=18707,
        command=bentoml,
        about="BentoML, a @bentoml.service (workers=2) with a sync @bentoml.api, `bentoml serve`",
        env={"BENTOML_DO_NOT_TRACK": "true"},
        venv="bentoml",
    ),
    Stack(
        name="asgi-uvicorn",
        role="floor",
        port=18709,
        command=uvicorn("bench.apps.floor_asgi:app", "--loop", "uvloop", "--http", "httptools"),
        about="uvicorn --workers 2 (uvloop, httptools), bare ASGI callable, orjson, predict on"
        " the event loop",
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
