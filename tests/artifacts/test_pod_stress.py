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
from contextlib import contextmanager
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


@pytest.fixture
def stressed(render: Renders, pod_venv: Path, tmp_path: Path) -> Iterator[Stressed]:
    # One worker: holding one predict makes the whole runtime busy.
    service = tmp_path / "service"
    shutil.copytree(render("custom-one-worker", {"framework": "custom", "workers": 1}), service)
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
    # a row in the example's feature order: f0 to f3, then its category
    body = {"model_id": "demo-model", "features": [[first, 0.0, 0.0, 0.0, "retail"]]}
    return httpx.post(f"{url}/infer", json=body, headers=headers, timeout=30)


@contextmanager
def busy(stressed: Stressed) -> Iterator[None]:
    """The runtime's one worker held in a predict for the block."""
    held = threading.Thread(target=post, args=(stressed.url, HOLD))
    held.start()
    try:
        stressed.wait_calls(HOLD, 1)
        yield
    finally:
        stressed.release()
        held.join()


def test_a_request_that_kills_its_worker_is_answered_once_and_not_replayed(
    stressed: Stressed,
) -> None:
    answer = post(stressed.url, CRASH)
    assert answer.status_code == 503, answer.text
    assert len(stressed.calls(CRASH)) == 1  # Envoy did not send it on to kill another worker
    assert post(stressed.url, 0.5).status_code == 200  # Gunicorn replaced the worker


def test_probes_and_scrapes_answer_while_every_worker_is_busy(stressed: Stressed) -> None:
    runtime = stressed.pod["runtime"]
    metrics = f"http://127.0.0.1:{stressed.values['envoy']['statsPort']}/metrics"
    with busy(stressed):
        for url in (f"{stressed.url}/livez", f"{stressed.url}/readyz", metrics):
            answer = httpx.get(url, timeout=10)
            assert answer.status_code == 200, (url, answer.text)
        # as many liveness probes as it takes to restart a container, all while it is busy
        seen = runtime.probed["livenessProbe"]
        needed = runtime.spec["livenessProbe"]["failureThreshold"]
        stressed.pod.wait(
            lambda: runtime.probed["livenessProbe"] >= seen + needed, 300, "probed for liveness"
        )
    assert runtime.restarts == 0
    assert not [e for e in stressed.pod.events if e.what.startswith("livenessProbe failed")]


def test_a_request_whose_deadline_passed_is_not_predicted(stressed: Stressed) -> None:
    with busy(stressed):
        # queued behind the held predict until Envoy's route timeout has passed
        late = post(stressed.url, 0.25, {"x-request-id": "late-request"})
        assert late.status_code == 504, late.text
    log = stressed.pod.root / "runtime.log"
    wait_until(lambda: "late-request" in log.read_text(), "the runtime never logged it")
    assert stressed.calls(0.25) == []
