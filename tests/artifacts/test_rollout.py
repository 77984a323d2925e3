"""A rollout under load, through the Service: what callers of a generated service see.

Pods of the rendered chart run as the kubelet runs them (scripts/pod.py), behind a Service that
balances connections over the ready ones. Keep-alive clients send requests at a steady pace
while every pod is replaced as the Deployment rolls it (a new pod ready, then an old one
deleted), a Gunicorn worker is killed, and a runtime container is restarted as the kubelet
restarts it when its liveness probe fails. Not one answer may be an error, and not one
request may meet a socket error.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import Clients, Service, summary, wait_until
from .conftest import Renders, pod_runner
from .test_pod import canary


class Deployment:
    """Pods of one chart, replaced one at a time as the Deployment controller rolls them."""

    def __init__(self, service: Path, venv: Path, root: Path, front: Service) -> None:
        self.service, self.venv, self.root, self.front = service, venv, root, front
        self.runner = pod_runner(service)
        self.pods: list[Any] = []
        self.gone: list[Any] = []
        self._deleting: list[threading.Thread] = []

    def add(self) -> Any:
        values = self.runner.free_ports(self.service)
        name = f"p{len(self.pods) + len(self.gone)}"
        pod = self.runner.service_pod(self.service, self.venv, self.root / name, values)
        self.front.follow(pod, values["envoy"]["port"])
        self.pods.append(pod.start())
        self.front.wait(pod.name, present=True)
        return pod

    def delete(self, pod: Any) -> None:
        """Delete without waiting for the pod to finish terminating, as the controller does."""
        self.pods.remove(pod)
        self.gone.append(pod)
        thread = threading.Thread(target=pod.delete)
        thread.start()
        self._deleting.append(thread)

    def roll(self) -> None:
        for old in list(self.pods):
            self.add()  # maxSurge: the new pod first, maxUnavailable 0: the old one after
            self.delete(old)
        self.settle()

    def settle(self) -> None:
        for thread in self._deleting:
            thread.join()

    def close(self) -> None:
        for pod in list(self.pods):
            self.delete(pod)
        self.settle()


def workers(pod: Any) -> list[int]:
    """Pids of the runtime's Gunicorn workers that are alive."""
    log = (pod.root / "runtime.log").read_text()
    booted = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)]
    return [p for p in booted if Path(f"/proc/{p}").exists() and _zombie(p) is False]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def closing_towards(port: int) -> list[str]:
    """Connections to 127.0.0.1:`port` whose far end has closed (CLOSE_WAIT on this side)."""
    close_wait = "08"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [r[1] for r in rows if r[2].endswith(f":{port:04X}") and r[3] == close_wait]


@pytest.fixture
def deployment(render: Renders, pod_venv: Path, tmp_path: Path) -> Iterator[Deployment]:
    front = Service(tmp_path / "service")
    deployment = Deployment(render("custom"), pod_venv, tmp_path, front)
    try:
        yield deployment
    finally:
        try:
            deployment.close()
        finally:
            front.close()


def test_a_rollout_a_worker_kill_and_a_liveness_restart_under_load_fail_no_request(
    deployment: Deployment,
) -> None:
    front = deployment.front
    for _ in range(2):  # the chart's minReplicas for these answers
        deployment.add()
    body, _ = canary(deployment.service)
    with Clients(f"{front.url}/infer", lambda i: body, clients=4) as clients:
        clients.wait_for(100)
        phases: dict[str, tuple[int, int]] = {}

        start = len(clients.answers)
        deployment.roll()
        clients.wait_for(100)
        phases["rollout"] = (start, len(clients.answers))

        start = len(clients.answers)
        pod = deployment.pods[0]
        port = int(pod["runtime"].env["SERVING_RUNTIME_BIND"].rpartition(":")[2])
        with clients.between_requests():
            killed = workers(pod)[0]
            os.kill(killed, signal.SIGKILL)
            # A request Envoy sends on a connection of the dead worker before it has read that
            # connection's end would be lost: Envoy cannot tell it from a request that killed
            # its worker, and replays neither. Here Envoy reads it before the next request.
            wait_until(lambda: not closing_towards(port), "Envoy never closed its connections")
        wait_until(lambda: len(workers(pod)) == 2 and killed not in workers(pod), "no new worker")
        clients.wait_for(100)
        phases["worker kill"] = (start, len(clients.answers))

        start = len(clients.answers)
        runtime = pod["runtime"]
        runtime.restart("livenessProbe failed 3 times (made to by the test)")
        front.wait(pod.name, present=False)
        front.wait(pod.name, present=True)
        clients.wait_for(100)
        phases["liveness restart"] = (start, len(clients.answers))
    figures = {name: summary(clients.answers[a:b]) for name, (a, b) in phases.items()}
    assert clients.failures() == [], figures
    assert runtime.restarts == 1
