"""A version loaded at run time reaches the workers by replacing them, one at a time: no
serving worker loads it beside its requests (`_replace.py`).

The gated model of test_run_time_changes.py stands for a slow load: each process's load waits
until the test lets it go, so the test sees which processes load, and in which order.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from .conftest import running
from .test_offload import parent_of, wait_for
from .test_run_time_changes import (
    _alive,
    answers,
    gated_service,
    in_background,
    let_go,
    loading,
    ready,
    states,
    workers,
)

BODY = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}


def idle_scheduled(pid: int) -> bool:
    """Whether a thread of process `pid` runs in Linux's idle scheduling class (SCHED_IDLE)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if os.sched_getscheduler(int(task.name)) == os.SCHED_IDLE:
                return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


def test_admin_load_replaces_each_worker_by_one_that_loaded_it_before_serving(
    tmp_path: Path,
) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        old = ready(server)
        call, done = in_background(lambda: server.post("/admin/models/linear/load", BODY))
        # A third worker starts and loads v3, at the lowest CPU priority, before it serves;
        # no serving worker loads it (the offload process does, in its own, as before).
        wait_for(lambda: bool(loading(artifact) & (workers(server) - old)))
        (first,) = loading(artifact) & (workers(server) - old)
        assert not loading(artifact) & old
        assert idle_scheduled(first)
        assert set(answers(server, 20)) == {(200, "v1")}  # the old workers answer meanwhile
        let_go(artifact, first)
        for pid in loading(artifact) - old - {first}:  # the offload process
            let_go(artifact, pid)
        # Once it serves, one old worker retires; then the other is replaced the same way.
        wait_for(lambda: len(loading(artifact) & (workers(server) - old - {first})) == 1)
        (second,) = loading(artifact) & (workers(server) - old - {first})
        assert not done  # the call answers once every worker holds v3
        assert len(old & workers(server)) == 1
        assert set(answers(server, 20)) == {(200, "v1")}
        let_go(artifact, second)
        call.join()
        assert done[0].status_code == 200, done[0].text
        wait_for(lambda: ready(server) == {first, second})
        assert states(server)["v3"]["state"] == "loaded"
        promoted = server.post("/admin/models/linear/promote", {"version": "v3"})
        assert promoted.status_code == 200, promoted.text
        assert set(answers(server, 20)) == {(200, "v3")}
        events = [r.get("event") for r in server.log_lines()]
        assert events.count("worker_replaced") == 2
        assert "worker_waits_replacement" in events


def test_a_version_that_fails_in_the_new_worker_is_refused_and_the_old_workers_stay(
    tmp_path: Path,
) -> None:
    config = gated_service(tmp_path)
    (tmp_path / "artifacts" / "v3.json").write_text("not a model")
    (tmp_path / "artifacts" / "v3.json.go-all").touch()
    with running(config, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        old = ready(server)
        refused = server.post("/admin/models/linear/load", BODY)
        assert refused.status_code == 422, refused.text
        assert states(server)["v3"]["state"] == "failed"
        # The version failed in the worker that loaded it: nothing is left to load, so the
        # old workers serve on (one of them may have been replaced by the one that tried).
        assert len(old & ready(server)) >= 1
        assert set(answers(server, 20)) == {(200, "v1")}
        assert server.post("/admin/models/linear/promote", {"version": "v3"}).status_code == 409


def test_load_in_place_keeps_the_workers(tmp_path: Path) -> None:
    config = gated_service(tmp_path)
    (tmp_path / "artifacts" / "v3.json.go-all").touch()
    with running(config, "--load-in-place", workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        old = ready(server)
        assert server.post("/admin/models/linear/load", BODY).status_code == 200
        assert workers(server) == old
        answer = httpx.post(
            server.url + "/infer",
            json={"model_id": "linear", "version": "v3", "features": [1, 0]},
        )
        assert answer.status_code == 200, answer.text


def test_a_server_stopped_during_a_replacement_stops_without_waiting_for_the_load(
    tmp_path: Path,
) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, "--graceful-timeout", "120", workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        old = ready(server)
        master = parent_of(min(old))
        call, _ = in_background(lambda: server.post("/admin/models/linear/load", BODY))
        wait_for(lambda: bool(loading(artifact) & (workers(server) - old)))  # never let go
        os.kill(master, signal.SIGTERM)
        # The worker that took the call stops waiting for its replacement: the server is gone
        # well before the graceful timeout, with no process left.
        wait_for(lambda: not _alive(master), timeout=60)
        assert not [pid for pid in old | workers(server) if _alive(pid)]
        call.join()
