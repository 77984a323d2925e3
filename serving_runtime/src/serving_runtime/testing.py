"""Helpers for a service's own tests: self-tests and drift in one line, a real server.

from serving_runtime.testing import check_drift, check_selftests, serve_in_background

def test_selftests():
    check_selftests()

def test_no_prediction_drift():
    check_drift()  # drift/<model_id>/baseline.jsonl, see `serving-runtime drift`

def test_infer():
    with serve_in_background() as url:
        ...  # POST f"{url}/infer"
"""

from __future__ import annotations

import contextlib
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

from ._config import find_config, load_config
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
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
