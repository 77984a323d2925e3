"""Helpers for a service's own tests: self-tests and drift in one line, a real server.

from serving_runtime.testing import (
    check_batching, check_drift, check_selftests, serve_in_background,
)

def test_selftests():
    check_selftests()

def test_batched_answers_equal_unbatched():
    check_batching()  # concurrent requests batched answer exactly as each alone

def test_no_prediction_drift():
    check_drift()  # drift/<model_id>/baseline.jsonl, see `serving-runtime drift`

def test_infer():
    with serve_in_background() as url:
        ...  # POST f"{url}/infer"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._batching import _Silent
from ._config import find_config, load_config
from ._model import ServedModel
from ._registry import Registry, plan_from_config
from ._report import failed_versions, failure_table


def check_selftests(config: str | Path | None = None) -> None:
    """Load every configured model version and fail with a table of the rows that missed."""
    loaded = load_config(Path(config) if config is not None else find_config())
    registry = Registry(loaded.root)
    registry.apply(plan_from_config(loaded))
    failed = failed_versions(registry.snapshot)
    if failed:
        tables = "\n\n".join(failure_table(entry, version) for entry, version in failed)
        raise AssertionError(f"model self-tests failed:\n{tables}")


def check_drift(config: str | Path | None = None) -> None:
    """Run every model's primary on its committed dataset and fail beyond the baseline."""
    from ._drift import check_drift as compare
    from ._drift import drift_table

    loaded = load_config(Path(config) if config is not None else find_config())
    problems = []
    for result in compare(loaded):
        name = f"{result.model_id} {result.version}"
        if result.problem is not None:
            problems.append(f"{name}: {result.problem}")
        elif not result.passed:
            problems.append(f"{name}: beyond tolerance of the baseline\n{drift_table(result)}")
    if problems:
        raise AssertionError("prediction drift:\n" + "\n\n".join(problems))


def check_batching(
    config: str | Path | None = None, *, requests: int = 200, max_rows: int = 32, seed: int = 0
) -> None:
    """Fail unless concurrent requests, batched, get exactly what each would get alone.

    For every version of every model with feature names (whether models.yaml turns batching
    on for it or not, so a team can turn it on knowing the answers do not move): `requests`
    requests of 1 to 8 rows, drawn from the model's canaries and drift inputs, go to the
    runtime's scheduler at once; batches of up to `max_rows` rows (or the model's own
    `batching.max_rows`) form, and every answer must equal the unbatched one exactly.
    """
    import random

    from ._batching import BatchPolicy, Scheduler
    from ._model import to_json_value

    loaded = load_config(Path(config) if config is not None else find_config())
    registry = Registry(loaded.root)
    registry.apply(plan_from_config(loaded))
    problems = []
    for model_id, entry in registry.snapshot.items():
        settings = loaded.models[model_id].batching
        limit = settings.max_rows if settings is not None else max_rows
        for version, held in entry.versions.items():
            model = held.model
            if model is None or model.spec is None or not held.passed:
                continue
            rows = _sample_rows(model, loaded.root / "drift" / model_id)
            chosen = random.Random(seed)
            asked = [chosen.choices(rows, k=chosen.randint(1, 8)) for _ in range(requests)]
            alone = [to_json_value(model.run(r)) for r in asked]
            calls: list[int] = []
            scheduler = Scheduler(1, {model_id: BatchPolicy(limit, 0.001)}, _Calls(calls))
            together = [to_json_value(out) for out in _all_at_once(scheduler, model, asked)]
            if len(calls) >= requests:
                problems.append(f"{model_id} {version}: no batch formed ({len(calls)} calls)")
            for i, (got, expected) in enumerate(zip(together, alone, strict=True)):
                if got != expected:
                    problems.append(
                        f"{model_id} {version}: request {i} ({len(asked[i])} rows) answered "
                        f"{got!r} batched, {expected!r} alone"
                    )
                    break
    if problems:
        raise AssertionError("batched answers differ:\n" + "\n".join(problems))


def _all_at_once(scheduler: Any, model: ServedModel, asked: list[Any]) -> list[Any]:
    async def gather() -> list[Any]:
        return list(await asyncio.gather(*(scheduler.predict(model, rows) for rows in asked)))

    return asyncio.run(gather())


def _sample_rows(model: ServedModel, drift: Path) -> list[list[float]]:
    rows: list[list[float]] = []
    for row in model.instance.test_data or []:
        features = row["features"] if isinstance(row, dict) else row[0]
        rows += model.prepare(features)
    inputs = drift / "inputs.jsonl"
    if inputs.is_file():
        for line in inputs.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows += model.prepare(json.loads(line)["features"])
    return rows


class _Calls(_Silent):
    def __init__(self, calls: list[int]) -> None:
        self.calls = calls

    def batch(self, model_id: str, version: str, rows: int) -> None:
        self.calls.append(rows)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, kept from other takers for a while.

    A port that is merely free now may be taken before the server binds it: by another test
    asking for a free port at the same moment (tests run side by side), or by any outgoing
    connection, whose local port the kernel picks from the same range. So the port is left
    with a closed connection in TIME_WAIT (60 s on Linux): the kernel then gives it to no
    `bind` to port 0 and to no outgoing connection, while a server that binds it with
    SO_REUSEADDR (Gunicorn, Envoy, Prometheus, Python's HTTP servers) gets it at once.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the port's end closes first, so it is the one left waiting
            client.recv(1)  # its close has arrived: that end is in TIME_WAIT now
    return port


@contextmanager
def serve_in_background(
    config: str | Path | None = None,
    *,
    workers: int = 1,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    wait_for: str = "/readyz",
    log: str | Path | None = None,
) -> Iterator[str]:
    """Start `serving-runtime serve` on a free port, wait until ready, yield its base URL.

    The server's output goes to `log`, or to a temporary file that is removed once the server
    has stopped, unless it failed to start: then the error names it, and it is kept.
    It is stopped with SIGTERM on exit. `wait_for="/livez"` starts a server that is not ready.
    """
    path = Path(config) if config is not None else find_config()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "serving_runtime", "serve", "--config", str(path)]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), *args]
    keep_log = log is not None
    if log is None:
        fd, name = tempfile.mkstemp(prefix="serving-runtime-", suffix=".log")
        os.close(fd)
        log = name
    log_path = Path(log)
    with log_path.open("wb") as output:
        # Its own session: stopping it reaches whatever it forked, and nothing else.
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        _wait_ready(process, url + wait_for, timeout, log_path)
    except BaseException:
        _stop_session(process)
        raise
    try:
        yield url
    finally:
        _stop_session(process)
    if not keep_log:
        log_path.unlink(missing_ok=True)


def _stop_session(process: subprocess.Popen[bytes]) -> None:
    stop(process)
    # Whatever the server forked and left behind (a worker its model library keeps from
    # exiting) goes with it rather than outlive the tests.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM a server (in-flight requests finish), SIGKILL it after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], probe: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}; its log ({log}):\n"
                + log.read_text(errors="replace")
            )
        try:
            with urllib.request.urlopen(probe, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server was not ready within {timeout} s; its log: {log}")
