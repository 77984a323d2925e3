"""What stands for the cluster around the pods: a Service, its endpoints, and its clients.

The Service is an Envoy TCP proxy, like kube-proxy a layer-4 balancer: it picks a ready pod for
each new connection, and a connection once made stays with its pod until one side closes it,
whatever happens to the endpoints. Its endpoints come from a file that Envoy watches (EDS over
a path), rewritten as pods become ready, unready or terminating; every change is waited for
until Envoy has applied it, so a terminating pod is out of the Service before its preStop runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving_runtime.testing import free_port, stop

from .conftest import VENV_BIN

CLUSTER = "pods"


def _eds(ports: list[int]) -> dict[str, Any]:
    return {
        "version_info": str(time.monotonic_ns()),
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": "127.0.0.1", "port_value": p}
                                    }
                                }
                            }
                            for p in sorted(ports)
                        ]
                    }
                ],
            }
        ],
    }


def _bootstrap(port: int, admin: int, eds: Path) -> dict[str, Any]:
    tcp_proxy = {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "service",
            "cluster": CLUSTER,
        },
    }
    return {
        "node": {"id": "service", "cluster": "service"},  # EDS from a file asks for both
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "service",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [tcp_proxy]}],
                }
            ],
            "clusters": [
                {
                    "name": CLUSTER,
                    "type": "EDS",
                    "connect_timeout": "1s",
                    "eds_cluster_config": {
                        "eds_config": {
                            "resource_api_version": "V3",
                            "path_config_source": {
                                "path": str(eds),
                                "watched_directory": {"path": str(eds.parent)},
                            },
                        }
                    },
                }
            ],
        },
    }


class Service:
    """A ClusterIP Service in front of pods: `url` is its address; endpoints follow the pods."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port, self.admin = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._eds = directory / "eds.json"
        self._eds.write_text(json.dumps(_eds([])))
        config = directory / "service.json"
        config.write_text(json.dumps(_bootstrap(self.port, self.admin, self._eds)))
        self.log = directory / "service-envoy.log"
        with self.log.open("wb") as out:
            self._envoy = subprocess.Popen(
                [VENV_BIN / "envoy", "-c", config, "--disable-hot-restart", "--concurrency", "1"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._lock = threading.Condition()
        self._endpoints: dict[str, int] = {}  # pod name -> its Envoy's ingress port
        self.changes: list[tuple[float, str]] = []  # (when, "+pod" or "-pod")
        self.error: BaseException | None = None  # from a pod's thread, raised to the test

    def close(self) -> None:
        stop(self._envoy)

    def follow(self, pod: Any, port: int) -> None:
        """Keep `pod` (a pod runner's Pod) in the endpoints while it is ready."""
        pod.on_change.append(lambda p: self._sync(p.name, port, p.ready))
        self._sync(pod.name, port, pod.ready)

    def _sync(self, name: str, port: int, ready: bool) -> None:
        try:
            self._apply(name, port, ready)
        except BaseException as error:
            with self._lock:
                self.error = error
                self._lock.notify_all()
            raise

    def _apply(self, name: str, port: int, ready: bool) -> None:
        with self._lock:
            if ready == (name in self._endpoints):
                return
            if ready:
                self._endpoints[name] = port
            else:
                del self._endpoints[name]
            self.changes.append((time.monotonic(), ("+" if ready else "-") + name))
            wanted = sorted(self._endpoints.values())
            staged = self._eds.with_suffix(".new")
            staged.write_text(json.dumps(_eds(wanted)))
            os.replace(staged, self._eds)  # a move: what Envoy's directory watch reacts to
            self._wait_applied(wanted)
            self._lock.notify_all()

    def wait(self, name: str, present: bool, seconds: float = 600) -> None:
        """Until pod `name` is (or is no longer) an endpoint the Service's Envoy uses."""
        with self._lock:
            done = self._lock.wait_for(
                lambda: self.error is not None or (name in self._endpoints) == present, seconds
            )
            if self.error is not None:
                raise AssertionError("the Service failed") from self.error
            if not done:
                raise AssertionError(f"{name} {'never' if present else 'still'} an endpoint")

    def _wait_applied(self, ports: list[int], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self._envoy.poll() is not None:
                raise AssertionError(f"the Service's Envoy exited\n{self.log.read_text()}")
            if self.endpoints() == ports:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the Service never had endpoints {ports}")
            time.sleep(0.02)  # polling Envoy's admin: the change has no other signal

    def endpoints(self) -> list[int]:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.admin}/clusters?format=json", timeout=5
        ) as answer:
            clusters = json.load(answer)["cluster_statuses"]
        hosts = next(c for c in clusters if c["name"] == CLUSTER).get("host_statuses", [])
        return sorted(h["address"]["socket_address"]["port_value"] for h in hosts)


@dataclass
class Answer:
    client: int
    started: float
    ended: float
    status: int | None  # None: no answer (a socket error)
    error: str | None = None
    closed: bool = False  # the answer said `Connection: close`
    body: Any = None


@dataclass
class Clients:
    """Keep-alive clients, each sending one request after another at a steady pace."""

    url: str
    body: Callable[[int], Any]
    clients: int = 4
    pause: float = 0.01  # between one answer and the next request
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._in_flight = 0
        self._lock = threading.Condition()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, count: int, timeout: float = 120) -> None:
        """Until `count` more answers have come back (whatever they are)."""
        with self._lock:
            target = len(self.answers) + count
            if not self._lock.wait_for(lambda: len(self.answers) >= target, timeout):
                raise AssertionError(f"only {len(self.answers)} answers of {target}")

    @contextmanager
    def between_requests(self) -> Iterator[None]:
        """Every client holds its next request (its connection stays open) for the block."""
        self._go.clear()
        try:
            with self._lock:
                assert self._lock.wait_for(lambda: self._in_flight == 0, 60)
            yield
        finally:
            self._go.set()

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status is None or not 200 <= a.status < 300]

    def _client(self, n: int) -> None:
        # No retries anywhere: a failure here is one a caller of the Service would see.
        with httpx.Client(timeout=30, transport=httpx.HTTPTransport(retries=0)) as client:
            i = n
            while not self._stop.is_set():
                with self._lock:
                    self._in_flight += 1
                if not self._go.is_set():
                    with self._lock:
                        self._in_flight -= 1
                        self._lock.notify_all()
                    self._go.wait()
                    continue
                started = time.monotonic()
                try:
                    response = client.post(self.url, json=self.body(i))
                    answer = Answer(
                        n,
                        started,
                        time.monotonic(),
                        response.status_code,
                        closed=response.headers.get("connection") == "close",
                        body=response.text,
                    )
                except httpx.HTTPError as error:
                    answer = Answer(n, started, time.monotonic(), None, type(error).__name__)
                with self._lock:
                    self._in_flight -= 1
                    self.answers.append(answer)
                    self._lock.notify_all()
                i += self.clients
                self._stop.wait(self.pause)


def summary(answers: list[Answer]) -> dict[str, int]:
    """Answers counted by status (or error name), as the closing figures are given."""
    counts: dict[str, int] = {}
    for answer in answers:
        key = str(answer.status) if answer.status is not None else f"error {answer.error}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 120) -> None:
    """Poll for an event that has no other signal (a file written, a process gone)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
