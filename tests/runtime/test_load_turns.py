"""Loads at run time take turns among a pod's workers, and hand the interpreter to requests.

The gated model of test_run_time_changes.py stands for a slow load: each process's load waits
until the test lets it go, so the test sees which workers load at once.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

from serving_runtime._locks import exclusive
from serving_runtime._turns import LOADING_SWITCH_INTERVAL, batch_scheduled, yielding_to_requests

from .conftest import Server, running
from .test_offload import wait_for
from .test_run_time_changes import gated_service, in_background, let_go, loading, ready


def waiting_turn(server: Server, version: str) -> set[int]:
    """The processes that logged waiting for their turn to load `version`."""
    lines = server.log_lines()
    return {
        r["pid"] for r in lines if r.get("event") == "load_waits_turn" and r["version"] == version
    }


def test_workers_loading_in_place_load_a_run_time_version_one_at_a_time(tmp_path: Path) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, "--load-in-place", workers=3) as server:
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
