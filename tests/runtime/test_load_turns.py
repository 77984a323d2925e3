"""Loads at run time take turns among a pod's workers, and hand the interpreter to requests.

The gated model of test_run_time_changes.py stands for a slow load: each process's load waits
until the test lets it go, so the test sees which workers load at once.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from serving_runtime._locks import exclusive
from serving_runtime._turns import LOADING_SWITCH_INTERVAL, batch_scheduled, yielding_to_requests

from .conftest import Server, running
from .test_offload import wait_for
from .test_run_time_changes import gated_service, in_background, let_go, loading, ready


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


def test_a_loading_worker_steps_aside_and_the_other_serves_its_clients(tmp_path: Path) -> None:
    config = gated_service(tmp_path)
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
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: len(loading(artifact) & workers) == 1)
        (first,) = loading(artifact) & workers
        (second,) = workers - {first}
        # While the first loads, its kept-alive client is told to reconnect after its next
        # answer, and every new connection goes to the second.
        assert served_by(server, kept[first]) == (first, True)
        assert served_by(server, kept[second]) == (second, False)
        assert new_connections(server, 10) == {second}
        let_go(artifact, first)
        wait_for(lambda: second in loading(artifact))  # its turn: now the first serves all
        assert served_by(server, kept[second]) == (second, True)
        assert new_connections(server, 10) == {first}
        (artifact.parent / f"{artifact.name}.go-all").touch()  # the second, and the offload
        call.join()
        assert done[0].status_code == 200, done[0].text
        assert new_connections(server, 20) == workers  # both take connections again
        stepped = [r["pid"] for r in server.log_lines() if r.get("event") == "load_steps_aside"]
        assert sorted(stepped) == sorted(workers)
        for client in kept.values():
            client.close()


def test_a_loading_worker_with_many_clients_keeps_them(tmp_path: Path) -> None:
    # Handing many clients to the others would halve the pod's capacity while it loads.
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        workers = ready(server)
        kept: dict[int, list[httpx.Client]] = {pid: [] for pid in workers}

        def three_on_each() -> bool:
            client = httpx.Client(base_url=server.url, timeout=30)
            pid, _ = served_by(server, client)
            if len(kept[pid]) < 3:
                kept[pid].append(client)
            else:
                client.close()
            return all(len(clients) == 3 for clients in kept.values())

        wait_for(three_on_each)
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: len(loading(artifact) & workers) == 1)
        (first,) = loading(artifact) & workers
        assert [served_by(server, client) for client in kept[first]] == [(first, False)] * 3
        (artifact.parent / f"{artifact.name}.go-all").touch()
        call.join()
        assert done[0].status_code == 200, done[0].text
        assert "load_steps_aside" not in [r.get("event") for r in server.log_lines()]
        for clients in kept.values():
            for client in clients:
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
