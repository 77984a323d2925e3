"""Loads at run time take turns among a pod's workers, and hand the interpreter to requests.

The gated model of test_run_time_changes.py stands for a slow load: each process's load waits
until the test lets it go, so the test sees which workers load at once.
"""

from __future__ import annotations

import copy
import fcntl
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving_runtime._locks import exclusive
from serving_runtime._turns import (
    LOADING_SWITCH_INTERVAL,
    WATCH_SECONDS,
    _aside_while_computing,
    batch_scheduled,
    yielding_to_requests,
)

from .conftest import Server, build_service, running
from .test_offload import wait_for
from .test_run_time_changes import SERVICE, gated_service, in_background, let_go, loading, ready


def served_by(server: Server, client: httpx.Client) -> tuple[int, bool]:
    """Send one /infer on `client`'s connection: the worker that answered it (from the request's
    log line), and whether it said to close the connection."""
    request_id = uuid.uuid4().hex
    answer = client.post(
        "/infer",
        json={"model_id": "linear", "features": [1, 0]},
        headers={"x-request-id": request_id},
    )
    assert answer.status_code == 200, answer.text
    found: list[int] = []

    def logged() -> bool:
        found[:] = [r["pid"] for r in server.log_lines() if r.get("request_id") == request_id]
        return bool(found)

    wait_for(logged)
    return found[0], answer.headers.get("connection") == "close"


def new_connections(server: Server, count: int) -> set[int]:
    """The workers that answered `count` requests, each on a connection of its own."""
    pids = set()
    for _ in range(count):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            pids.add(served_by(server, client)[0])
    return pids


SPINNING = """
import os
from pathlib import Path

from linear_model import Linear


class Spinning(Linear):
    def load(self, file):  # computes until let go, as unpickling a large model does
        Path(f"{file}.loading-{os.getpid()}").touch()
        go = (Path(f"{file}.go-{os.getpid()}"), Path(f"{file}.go-all"))
        while not (go[0].exists() or go[1].exists()):
            sum(range(20000))
        super().load(file)
"""


def spinning_service(root: Path) -> Path:
    """The gated service, its v2 (loaded freely) of the class that computes while it loads."""
    service: dict[str, Any] = copy.deepcopy(SERVICE)
    service["models"]["linear"]["versions"]["v2"]["class"] = "spinning_model:Spinning"
    config = build_service(root, service)
    (root / "spinning_model.py").write_text(SPINNING)
    (root / "artifacts" / "v2.json.go-all").touch()
    return config


def stepped_aside(server: Server) -> list[int]:
    """The processes that logged stepping aside for a load, in order."""
    return [r["pid"] for r in server.log_lines() if r.get("event") == "load_steps_aside"]


def waiting_turn(server: Server, version: str) -> set[int]:
    """The processes that logged waiting for their turn to load `version`."""
    lines = server.log_lines()
    return {
        r["pid"] for r in lines if r.get("event") == "load_waits_turn" and r["version"] == version
    }


@pytest.mark.parametrize("worker", ["fast", "threads"])
def test_workers_load_a_run_time_version_one_at_a_time(tmp_path: Path, worker: str) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, workers=3, env={"SERVING_RUNTIME_WORKER": worker}) as server:
        wait_for(lambda: len(ready(server)) == 3)
        workers = ready(server)
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: len(loading(artifact)) == 1)  # the worker that took the call
        (first,) = loading(artifact)
        let_go(artifact, first)
        # The two others see the new plan; one loads, the other waits for its turn. The
        # offload process (lowest CPU priority, no change waits for it) takes no turn.
        wait_for(lambda: len(loading(artifact) & workers) == 2 and waiting_turn(server, "v3"))
        (second,) = (loading(artifact) & workers) - {first}
        (third,) = workers - {first, second}
        assert waiting_turn(server, "v3") == {third}
        wait_for(lambda: len(loading(artifact) - workers) == 1)  # at its own pace, beside them
        (offload,) = loading(artifact) - workers
        let_go(artifact, offload)
        assert not done
        let_go(artifact, second)
        wait_for(lambda: third in loading(artifact))  # its turn came when the second's ended
        let_go(artifact, third)
        call.join()
        assert done[0].status_code == 200, done[0].text
        events = [r.get("event") for r in server.log_lines()]
        assert "load_turn_not_given" not in events


def test_a_worker_whose_load_computes_steps_aside_and_the_other_serves_its_clients(
    tmp_path: Path,
) -> None:
    config = spinning_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        workers = ready(server)
        # Kept-alive clients, until each worker holds one.
        kept: dict[int, httpx.Client] = {}

        def one_on_each() -> bool:
            client = httpx.Client(base_url=server.url, timeout=30)
            pid, _ = served_by(server, client)
            if kept.setdefault(pid, client) is not client:
                client.close()
            return set(kept) == workers

        wait_for(one_on_each)
        spinning = "spinning_model:Spinning"
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": spinning}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: len(loading(artifact) & workers) == 1)
        (first,) = loading(artifact) & workers
        (second,) = workers - {first}
        # Once its load is seen computing, the first's kept-alive client is told to reconnect
        # after its next answer, and every new connection goes to the second.
        wait_for(lambda: stepped_aside(server) == [first])
        assert served_by(server, kept[first]) == (first, True)
        assert served_by(server, kept[second]) == (second, False)
        assert new_connections(server, 10) == {second}
        let_go(artifact, first)
        wait_for(lambda: stepped_aside(server) == [first, second])  # its turn, then aside
        assert served_by(server, kept[second]) == (second, True)
        assert new_connections(server, 10) == {first}
        (artifact.parent / f"{artifact.name}.go-all").touch()  # the second, and the offload
        call.join()
        assert done[0].status_code == 200, done[0].text
        assert new_connections(server, 20) == workers  # both take connections again
        for client in kept.values():
            client.close()


def test_a_lone_worker_serves_on_while_it_loads(tmp_path: Path) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, workers=1) as server:
        wait_for(lambda: len(ready(server)) == 1)
        (worker,) = ready(server)
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: worker in loading(artifact))
        assert new_connections(server, 3) == {worker}  # no one else to hand its clients to
        (artifact.parent / f"{artifact.name}.go-all").touch()
        call.join()
        assert done[0].status_code == 200, done[0].text
        assert "load_steps_aside" not in [r.get("event") for r in server.log_lines()]


def test_a_load_steps_aside_while_it_computes_and_not_while_it_waits() -> None:
    entered: list[bool] = []
    left: list[bool] = []

    @contextmanager
    def aside() -> Iterator[bool]:
        entered.append(True)
        yield True
        left.append(True)

    stepped = threading.Event()
    with _aside_while_computing(aside, stepped.set):
        assert entered == [True]  # at once: a load mostly begins by computing
        assert stepped.is_set()
        while not left:  # it waits: back in the rotation after a few readings
            time.sleep(WATCH_SECONDS)
        while len(entered) < 2:  # it computes again: aside again
            sum(range(20000))
        assert left == [True]
    assert left == [True, True]


def test_a_turn_never_given_delays_a_load_by_the_wait_and_no_longer(tmp_path: Path) -> None:
    lock = tmp_path / "load.lock"
    waited = []
    with open(lock, "a+b") as held_elsewhere:
        fcntl.flock(held_elsewhere, fcntl.LOCK_EX)
        with exclusive(lock, 0.05, busy=lambda: waited.append(True)) as got:
            assert got is False  # the block runs without the lock
        assert waited == [True]
    with exclusive(lock, 0.05, busy=lambda: waited.append(True)) as got:
        assert got is True
    assert waited == [True]  # a free lock is not waited for


def test_while_a_load_runs_the_process_hands_the_interpreter_over_sooner() -> None:
    normal = sys.getswitchinterval()
    assert normal > LOADING_SWITCH_INTERVAL
    inside = threading.Event()
    leave = threading.Event()

    def load() -> None:
        with yielding_to_requests():
            inside.set()
            leave.wait()

    other = threading.Thread(target=load)
    other.start()
    inside.wait()
    with yielding_to_requests():  # two loads at once: the first to end keeps it short
        assert sys.getswitchinterval() == LOADING_SWITCH_INTERVAL
    assert sys.getswitchinterval() == LOADING_SWITCH_INTERVAL
    leave.set()
    other.join()
    assert sys.getswitchinterval() == normal


def test_a_loading_thread_is_scheduled_as_a_batch_job_and_then_as_before() -> None:
    seen: list[int] = []

    def load() -> None:
        before = os.sched_getscheduler(0)
        with batch_scheduled():
            seen.append(os.sched_getscheduler(0))
        seen.append(os.sched_getscheduler(0))
        seen.append(before)

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    inside, after, before = seen
    assert inside == os.SCHED_BATCH
    assert after == before == os.SCHED_OTHER
