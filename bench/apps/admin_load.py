"""`serving-runtime serve` while `admin load` reloads a slow-loading version, back to back.

    python -m bench.apps.admin_load PORT WORKERS SLOW [serve arguments]

SLOW is `sleep` or `cpu` (bench/apps/slow_load.py). The served models.yaml (written beside the
benchmark's) has the benchmark model's version v1, primary, and names the slow class (a version
`slow`, so that admin load may use it). Once the server answers, a thread loads new versions of
the same artifact with that class (`s1`, `s2`, ..., each unloaded after the next has loaded),
with `admin load`, back to back, for as long as it runs: at every moment of the measurement
some worker is loading and self-testing one. What the primary's clients see of that is this
variant's latency, to be compared with the plain runtime's in the same run. It prints how many
loads it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

MODELS = """\
models:
  bench:
    class: bench.apps.runtime_model:BenchModel
    primary: v1
    versions:
      v1:
        artifact: model.joblib
      slow:
        artifact: model.joblib
        class: bench.apps.slow_load:SlowLoad
"""
TOKEN = "bench-admin-load"


def reload_forever(url: str, stop: threading.Event) -> None:
    loads = 0
    while not stop.is_set():
        body = {
            "version": f"s{loads + 1}",
            "artifact": "artifacts/model.joblib",
            "class": "bench.apps.slow_load:SlowLoad",
        }
        try:
            _post(f"{url}/admin/models/bench/load", body)
            if loads:
                _post(f"{url}/admin/models/bench/unload", {"version": f"s{loads}"})
            loads += 1
            print(f"admin_load: {loads} loads done", flush=True)
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)  # not up yet, or stopping


def _post(url: str, body: dict[str, str]) -> None:
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=600) as answer:
        answer.read()


def serve_command(config: Path, port: str, workers: str) -> list[str]:
    """`serving-runtime serve` of this venv on `config`, on 127.0.0.1:`port`."""
    command = [str(Path(sys.executable).with_name("serving-runtime")), "serve"]
    return [*command, "--config", str(config), "--bind", f"127.0.0.1:{port}", "--workers", workers]


def main(argv: list[str]) -> int:
    port, workers, slow, *extra = argv
    config = Path(os.environ["SERVING_RUNTIME_CONFIG"]).with_name("models-admin-load.yaml")
    config.write_text(MODELS)
    artifacts = config.with_name("artifacts")  # where admin load may read from
    artifacts.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.link(config.with_name("model.joblib"), artifacts / "model.joblib")
    env = {**os.environ, "BENCH_SLOW_LOAD": slow}
    command = serve_command(config, port, workers)
    command += ["--admin-token", TOKEN]  # admin over TCP, as the loads here are
    server = subprocess.Popen([*command, *extra], env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    stop = threading.Event()
    threading.Thread(
        target=reload_forever, args=(f"http://127.0.0.1:{port}", stop), daemon=True
    ).start()
    code = server.wait()
    stop.set()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
