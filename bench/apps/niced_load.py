"""`serving-runtime serve` beside a process that loads the slow version at the lowest priority.

    python -m bench.apps.niced_load PORT WORKERS [serve arguments]

A process that serves nothing loads the benchmark model with the class that computes for 3 s
while it loads (bench/apps/slow_load.py, `cpu`), back to back, for as long as the server runs,
at the lowest priority: what a worker that catches up with the plan before it serves would
cost the requests if it loaded that way. Compare p99 with `runtime` and with
`runtime-admin-load-cpu`, where the serving workers load the same version themselves. It
prints how many loads it made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.apps.admin_load import serve_command


def load_forever(artifact: Path) -> None:
    # The lowest priority Linux has: the idle class, which a task of any other class preempts
    # as it wakes up. (Nice 19 alone, measured once, left p99 at 1 connection 2.5 times the
    # runtime's, and at 32 connections 6 to 7 times in two rounds of three.)
    os.nice(19)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    os.environ["BENCH_SLOW_LOAD"] = "cpu"
    from bench.apps.slow_load import SlowLoad

    loads = 0
    while True:
        SlowLoad().load(artifact)
        loads += 1
        print(f"niced_load: {loads} loads done", flush=True)


def main(argv: list[str]) -> int:
    if argv[0] == "--loader":
        load_forever(Path(argv[1]))
        return 0
    port, workers, *extra = argv
    config = Path(os.environ["SERVING_RUNTIME_CONFIG"])
    server = subprocess.Popen([*serve_command(config, port, workers), *extra])
    artifact = config.with_name("model.joblib")
    loader = subprocess.Popen(
        [sys.executable, "-m", "bench.apps.niced_load", "--loader", str(artifact)]
    )

    def stop(*_: object) -> None:
        loader.kill()
        server.terminate()

    signal.signal(signal.SIGTERM, stop)
    code = server.wait()
    loader.kill()
    loader.wait()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
