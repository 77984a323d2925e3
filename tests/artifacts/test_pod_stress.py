"""The pod under the four stresses that used to break it, rerun with the pod runner.

The `custom` service is copied with a model that the test can hold: a row whose first feature
is HOLD waits in `predict` until the test releases it, and one whose first feature is CRASH
kills its own worker, as a segfault in native code would. Every call of `predict` is written
to a file, so that the test sees what the runtime really predicted.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .cluster import wait_until
from .conftest import Renders, pod_runner

HOLD, CRASH = -1001.0, -1002.0
STRESSED = '''
"""The generated model, held or crashed on request by the pod tests."""

import os
import signal
import time
from pathlib import Path

from .model import DemoModel

CONTROL = Path(__file__).resolve().parent.parent / "control"


class Stressed(DemoModel):
    def predict(self, features):
        first = features[0][0]
        with (CONTROL / "calls").open("a") as calls:
            calls.write(f"{os.getpid()} {first}\\n")
        if first == {hold}:
            while not (CONTROL / "release").exists():
                time.sleep(0.01)
        if first == {crash}:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().predict(features)
'''


class Stressed:
    """A pod of the copied service, and the control of its model."""

    def __init__(self, pod: Any, values: dict[str, Any], control: Path) -> None:
        self.pod, self.values, self.control = pod, values, control
        self.url = f"http://127.0.0.1:{values['envoy']['port']}"
        self.workers = int(values_of(pod)["SERVING_RUNTIME_WORKERS"])

    def calls(self, first: float) -> list[int]:
        """Pids of the workers that ran `predict` on rows starting with `first`."""
        lines = (self.control / "calls").read_text().splitlines()
        return [int(pid) for pid, row in (x.split() for x in lines) if float(row) == first]

    def wait_calls(self, first: float, count: int, *, distinct: bool = False) -> None:
        def enough() -> bool:
            calls = self.calls(first)
            return len(set(calls) if distinct else calls) >= count

        wait_until(enough, f"{count} predicts of {first}")

    def release(self) -> None:
        (self.control / "release").touch()


def values_of(pod: Any) -> dict[str, str]:
    """The runtime's environment from the chart (its ConfigMap)."""
    (source,) = pod["runtime"].spec["envFrom"]
    config: dict[str, str] = pod.config_map(source["configMapRef"]["name"])
    return config


@pytest.fixture
def stressed(render: Renders, pod_venv: Path, tmp_path: Path) -> Iterator[Stressed]:
    service = tmp_path / "service"
    shutil.copytree(render("custom"), service)
    model = STRESSED.replace("{hold}", repr(HOLD)).replace("{crash}", repr(CRASH))
    (service / "demo_model" / "stressed.py").write_text(model)
    models = service / "models.yaml"
    models.write_text(
        models.read_text().replace("demo_model.model:DemoModel", "demo_model.stressed:Stressed")
    )
    control = service / "control"
    control.mkdir()
    (control / "calls").touch()
    runner = pod_runner(service)
    values = runner.free_ports(service)
    pod = runner.service_pod(service, pod_venv, tmp_path / "pod", values)
    pod.start()
    try:
        pod.wait(lambda: pod.ready, 120, "ready")
        yield Stressed(pod, values, control)
    finally:
        (control / "release").touch()
        pod.delete()


def post(url: str, first: float, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model_id": "demo-model", "features": [[first, 0.0, 0.0, 0.0]]}
    return httpx.post(f"{url}/infer", json=body, headers=headers, timeout=30)


def hold_every_worker(stressed: Stressed) -> list[threading.Thread]:
    """Requests held in predict until released, on every worker (and queued behind them)."""
    held = [
        threading.Thread(target=post, args=(stressed.url, HOLD))
        for _ in range(2 * stressed.workers)
    ]
    for thread in held:
        thread.start()
    stressed.wait_calls(HOLD, stressed.workers, distinct=True)
    return held


def test_a_request_that_kills_its_worker_is_answered_once_and_not_replayed(
    stressed: Stressed,
) -> None:
    answer = post(stressed.url, CRASH)
    assert answer.status_code == 503, answer.text
    assert len(stressed.calls(CRASH)) == 1  # Envoy did not send it on to kill another worker
    assert post(stressed.url, 0.5).status_code == 200  # Gunicorn replaced the worker


@pytest.mark.xfail(strict=True, reason="predicts run on the worker's event loop (issue 16)")
def test_probes_and_scrapes_answer_while_every_worker_is_busy(stressed: Stressed) -> None:
    held = hold_every_worker(stressed)
    try:
        for path in ("/livez", "/readyz", "/metrics"):
            answer = httpx.get(stressed.url + path, timeout=10)
            assert answer.status_code == 200, (path, answer.text)
        assert not (stressed.control / "release").exists()  # answered while still held
    finally:
        stressed.release()
        for thread in held:
            thread.join()


@pytest.mark.xfail(strict=True, reason="the runtime predicts requests nobody waits for (issue 16)")
def test_a_request_whose_deadline_passed_is_not_predicted(stressed: Stressed) -> None:
    held = hold_every_worker(stressed)
    try:
        late = post(stressed.url, 0.25)  # queued behind the held predicts, past its timeout
        assert late.status_code == 504, late.text
    finally:
        stressed.release()
        for thread in held:
            thread.join()
    # every worker has moved on past the late request (each answers again)
    for _ in range(4 * stressed.workers):
        assert post(stressed.url, 0.5).status_code == 200
    assert stressed.calls(0.25) == []
