"""`serve --no-preload`, for libraries that are not fork-safe: no model is loaded in the master.

Each process that serves or shadows loads its models itself, after it was forked: the
workers, and the background process (a shadow makes it load one more version).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import httpx

from .conftest import Server, build_service, running
from .test_offload import metric, wait_for

PID_MODEL = """
    import json
    import os
    from pathlib import Path

    class Linear:
        feature_names = ["a", "b"]
        test_data = [{"features": {"a": 1, "b": 2}, "expected": [5.0]}]

        def load(self, file):
            # Which process loaded which artifact: one line each, appended whole.
            line = json.dumps({"pid": os.getpid(), "artifact": file.name}) + "\\n"
            with open(Path(file).parent.parent / "loads.jsonl", "a") as out:
                out.write(line)
            self.w = json.loads(file.read_text())

        def predict(self, rows):
            return [self.w["a"] * a + self.w["b"] * b for a, b in rows]
"""


def pids_of(server: Server, message: str) -> set[int]:
    return {
        line["pid"]
        for line in server.log_lines()
        if message in line.get("message", "") or line.get("event") == message
    }


def test_no_preload_loads_every_model_after_fork_and_none_in_the_master(tmp_path: Path) -> None:
    config = build_service(
        tmp_path / "service",
        {
            "models": {
                "linear": {
                    "class": "pid_model:Linear",
                    "primary": "v1",
                    "versions": {
                        "v1": {"artifact": "artifacts/v1.json"},
                        "v2": {"artifact": "artifacts/v2.json", "shadow": True},
                    },
                }
            }
        },
    )
    (config.parent / "pid_model.py").write_text(textwrap.dedent(PID_MODEL))
    loads = config.parent / "loads.jsonl"
    with running(config, "--no-preload", workers=2) as server:
        # listening once it has loaded its models: a job sent before would be dropped
        wait_for(lambda: len(pids_of(server, "offload_started")) == 1)
        # and both workers follow the plan (Gunicorn spawns them some time apart)
        wait_for(lambda: len(pids_of(server, "worker_ready")) == 2)
        answer = httpx.post(
            server.url + "/infer", json={"model_id": "linear", "features": [1, 2]}, timeout=30
        )
        assert answer.json()["output"] == [5.0]
        # the shadow ran in the background process, on its own loaded copy of v2
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total") == 1)
        (master,) = pids_of(server, "Listening at")
        workers = pids_of(server, "worker_ready")
        (offload,) = pids_of(server, "offload_started")
        # killed, it is forked again from the master, which still has no model: it loads them
        os.kill(offload, signal.SIGKILL)
        wait_for(lambda: len(pids_of(server, "offload_started")) == 2)
        (restarted,) = pids_of(server, "offload_started") - {offload}
    loaded: dict[int, set[str]] = {}
    for line in loads.read_text().splitlines():
        record = json.loads(line)
        loaded.setdefault(record["pid"], set()).add(record["artifact"])
    assert master not in loaded, loaded
    assert set(loaded) == {*workers, offload, restarted}
    assert all(artifacts == {"v1.json", "v2.json"} for artifacts in loaded.values()), loaded
