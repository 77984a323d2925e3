"""Drive wrk with bench/post.lua and read back its exact numbers."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors_status: int  # responses with a status >= 400 (what wrk counts as non-2xx/3xx)
    errors_socket: int  # connect + read + write + timeout
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        return self.errors_status + self.errors_socket


def run_wrk(url: str, body: bytes, connections: int, seconds: int) -> WrkResult:
    # One wrk thread: the two cores are shared with the server under test.
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
        "-s", str(LUA), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": body.decode()}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.removeprefix(MARKER))
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        errors_status=raw["status"],
        errors_socket=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        mean_ms=raw["mean_us"] / 1e3,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
    )
