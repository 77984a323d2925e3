"""Start a stack, time its cold start, check its answer, read its memory, stop it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stacks import Stack, Workspace

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.005


@dataclass(frozen=True)
class Running:
    stack: Stack
    proc: subprocess.Popen[bytes]
    url: str
    body: bytes
    cold_start_s: float  # spawn -> first successful prediction

    def pss_mib(self) -> float:
        return sum(_pss_kib(pid) for pid in _process_tree(self.proc.pid)) / 1024

    def cpu_s(self) -> float:
        """CPU time (user + system) the server's processes have used so far, those gone too."""
        return sum(_cpu_ticks(pid) for pid in _process_tree(self.proc.pid)) / CLOCK_TICKS


def server_env(ws: Workspace, stack: Stack) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ws.root),
        "BENCH_MODEL": str(ws.artifact.path),
        "BENCH_CANARY": str(ws.artifact.canary),
        "SERVING_RUNTIME_CONFIG": str(ws.config),
        "BENCH_WORKERS": str(ws.workers),
        "BENTOML_HOME": str(ws.out / "bentoml"),  # its model store and config, not ~/bentoml
        **stack.env,
    }


@contextmanager
def serve(stack: Stack, ws: Workspace) -> Iterator[Running]:
    if not _port_frees(stack.port, timeout_s=10):
        raise RuntimeError(f"{stack.name}: port {stack.port} is already in use")
    body = stack.body(ws.artifact.row)
    log = (ws.out / f"{stack.name}.log").open("ab")
    start = time.perf_counter()
    # Its own session, so stopping it reaches every worker it forked and nothing else.
    proc = subprocess.Popen(
        stack.command(ws, ws.bin_of(stack), stack.port),
        env=server_env(ws, stack),
        cwd=ws.out,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        answer = _first_prediction(proc, stack, body, start)
        cold_start = time.perf_counter() - start
        got = stack.answer(answer)
        if abs(got - ws.artifact.expected) > 1e-9:
            raise RuntimeError(
                f"{stack.name} answered {got}, expected {ws.artifact.expected}: {answer}"
            )
        url = f"http://127.0.0.1:{stack.port}{stack.path}"
        yield Running(stack=stack, proc=proc, url=url, body=body, cold_start_s=cold_start)
    finally:
        _stop(proc)
        log.close()
        _port_frees(stack.port, timeout_s=10)


def _first_prediction(
    proc: subprocess.Popen[bytes], stack: Stack, body: bytes, start: float
) -> Any:
    headers = {"content-type": "application/json"}
    while time.perf_counter() - start < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"{stack.name} exited with {proc.returncode}; see its log")
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=5)
        try:
            conn.request("POST", stack.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 200:
                return json.loads(payload)
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"{stack.name} gave no successful prediction in {START_TIMEOUT_S:g} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    tree = {pid: _start_time(pid) for pid in _process_tree(proc.pid)}
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Workers that outlived their master (or left its process group) still hold the port.
    for pid, started in tree.items():
        if started is not None and _start_time(pid) == started:  # not a recycled pid
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the third (state) on: the name before may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22, starttime


def _cpu_ticks(pid: int) -> int:
    """The process's CPU time and that of its children it has reaped (a worker Gunicorn
    replaced): fields 14-17, utime, stime, cutime and cstime."""
    fields = _stat_fields(pid)
    return sum(int(f) for f in fields[11:15]) if fields else 0


def _port_frees(port: int, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while _port_in_use(port):
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_in_use(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.connect()
    except OSError:
        return False
    finally:
        conn.close()
    return True


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return pids


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Pss:")), 0)
