"""Predictions off the event loop: probes never wait behind them, and no work is done for a
request nobody waits for (its client left, or its deadline passed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, build_service, running
from .test_offload import metric, wait_for

# A model whose predict, for a token, says it started (a file) and holds until the gate opens:
# the tests know exactly which predicts run, and when.
GATE = """
import os
import time
from pathlib import Path


class Gate:
    test_data = [("pass", "pass")]

    def load(self, file):
        self.folder = Path(file).parent

    def predict(self, features):
        if features == "pass":
            return features
        token = features["token"]
        (self.folder / f"started-{token}").write_text(str(os.getpid()))
        while not (self.folder / "open").exists():
            time.sleep(0.01)
        return token
"""
GATED = {
    "models": {
        "gate": {
            "class": "gate_model:Gate",
            "primary": "1",
            "versions": {"1": {"artifact": "gate/artifact"}},
        }
    }
}


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    config = build_service(tmp_path / "service", GATED)
    (config.parent / "gate_model.py").write_text(GATE)
    (config.parent / "gate").mkdir()
    (config.parent / "gate" / "artifact").write_text("")
    return config


def started(config: Path) -> dict[str, int]:
    """token -> pid of the worker whose predict started for it."""
    folder = config.parent / "gate"
    return {
        p.name.removeprefix("started-"): int(p.read_text() or 0)
        for p in folder.glob("started-*")
        if p.read_text()
    }


def open_gate(config: Path) -> None:
    (config.parent / "gate" / "open").write_text("")


def gate_body(token: str) -> dict[str, Any]:
    return {"model_id": "gate", "features": {"token": token}}


@contextmanager
def in_background(server: Server, *bodies: dict[str, Any], **kwargs: Any) -> Iterator[list[Any]]:
    """Post each body from its own thread; yields the answers (or errors) as they come."""
    answers: list[Any] = []

    def post(body: dict[str, Any]) -> None:
        try:
            answers.append(server.post("/infer", body, **kwargs))
        except httpx.HTTPError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        for thread in threads:
            thread.join()


def test_probes_answer_while_every_worker_is_busy_predicting(gated: Path) -> None:
    # One worker: which worker the kernel hands a connection to is not the test's to choose,
    # so "every worker busy" is made certain with one.
    with running(gated, workers=1) as server:
        tokens = [f"slow-{n}" for n in range(4)]
        with in_background(server, *(gate_body(t) for t in tokens)) as answers:
            # The worker's one predict thread is held until the gate opens; the rest queue.
            wait_for(lambda: len(started(gated)) == 1)
            probes = ("/livez", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")
            for _ in range(10):
                for path in probes:
                    assert httpx.get(server.url + path, timeout=30).status_code == 200
            # The probes were answered while no predict had finished: none waited for one.
            assert answers == []
            open_gate(gated)
        assert sorted(a.json()["output"] for a in answers) == sorted(tokens)


def test_a_request_past_its_envoy_deadline_is_answered_504_and_never_predicted(
    gated: Path,
) -> None:
    with running(gated, workers=1) as server:
        with in_background(server, gate_body("first")) as first:
            wait_for(lambda: "first" in started(gated))  # the one predict thread is held
            late = server.post(
                "/infer",
                gate_body("late"),
                headers={"x-envoy-expected-rq-timeout-ms": "300", "x-request-id": "late-1"},
            )
            assert first == []  # answered while the predict before it was still held
            assert late.status_code == 504
            assert late.json()["error"]["code"] == "deadline_exceeded"
            labels = {"model_id": "gate", "reason": "deadline"}
            assert metric(server, "lls_requests_abandoned_total", **labels) == 1
            open_gate(gated)
        assert first[0].json()["output"] == "first"
        assert server.post("/infer", gate_body("after")).json()["output"] == "after"
        assert "late" not in started(gated)
        (line,) = [r for r in server.log_lines() if r.get("request_id") == "late-1"]
        assert (line["status"], line["error"]) == (504, "deadline_exceeded")


def test_the_runtime_deadline_applies_without_a_proxy(gated: Path) -> None:
    with running(gated, "--request-timeout", "0.5", workers=1) as server:
        with in_background(server, gate_body("first")) as first:
            wait_for(lambda: "first" in started(gated))
            late = server.post("/infer", gate_body("late"))
            assert late.status_code == 504
            open_gate(gated)
        assert "late" not in started(gated)
        # The one whose predict was running when its deadline passed was answered 504 too.
        assert first[0].status_code == 504
        assert first[0].json()["error"]["code"] == "deadline_exceeded"


def test_a_client_that_left_while_its_request_waited_is_never_predicted(gated: Path) -> None:
    with running(gated, workers=1) as server:
        with in_background(server, gate_body("first")) as first:
            wait_for(lambda: "first" in started(gated))
            host, port = server.url.removeprefix("http://").split(":")
            body = json.dumps(gate_body("gone")).encode()
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"X-Request-Id: gone-1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                # It waits for the one predict thread, held by the first.
                wait_for(lambda: metric(server, "lls_requests_waiting", model_id="gate") == 1)
            # The connection is closed; the server notices while the request waits.
            labels = {"model_id": "gate", "reason": "client_gone"}
            wait_for(lambda: metric(server, "lls_requests_abandoned_total", **labels) == 1)
            open_gate(gated)
        assert first[0].json()["output"] == "first"
        assert server.post("/infer", gate_body("after")).json()["output"] == "after"
        assert "gone" not in started(gated)
        wait_for(lambda: any(r.get("request_id") == "gone-1" for r in server.log_lines()))
        (line,) = [r for r in server.log_lines() if r.get("request_id") == "gone-1"]
        assert (line["status"], line["error"]) == (499, "client_gone")


def test_the_latency_objective_is_a_bound_of_the_latency_histogram(fresh_service: Path) -> None:
    with running(fresh_service, "--latency-objective-ms", "250", workers=1) as server:
        assert server.post("/infer", {"model_id": "linear", "features": [1, 2]}).is_success
        scrape = httpx.get(server.url + "/metrics").text
    bounds = {
        line.split('le="')[1].split('"')[0]
        for line in scrape.splitlines()
        if line.startswith("lls_request_duration_seconds_bucket{") and 'model_id="linear"' in line
    }
    assert {"0.25", "60.0", "+Inf"} <= bounds


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--request-timeout", "30", "--timeout", "30"), "must be at least 0 and below --timeout"),
        (("--latency-objective-ms", "90000"), "not within 1 to 60000"),
        (("--inline-predict-ms", "-1"), "--inline-predict-ms -1 is not within 0 to 1000"),
        (("--inline-predict-ms", "1001"), "--inline-predict-ms 1001 is not within 0 to 1000"),
    ],
)
def test_deadline_and_objective_settings_are_checked_before_serving(
    fresh_service: Path, args: tuple[str, ...], needle: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serving_runtime", "serve", "--config", str(fresh_service), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1  # one line
