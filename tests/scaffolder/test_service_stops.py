"""Every framework's service stops on SIGTERM by itself, and leaves no process behind.

The graceful timeout is set far above any stop so that Gunicorn's master never has to kill a
worker: a worker that cannot exit by itself (a model library waiting at exit on threads that
only the process it was forked from had) keeps the server from stopping, and the test fails.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest

from serving_runtime.testing import free_port

from .conftest import FRAMEWORKS, Service, wait_ready

pytestmark = pytest.mark.slow
NEVER = 3600  # seconds: the graceful timeout, so the master never kills a worker itself
HANG = 300  # seconds: far above any stop, even on a busy machine; only a hang gets there


def session_processes(session: int) -> list[str]:
    """The processes still in `session`, with their command lines."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_text().replace("\0", " "))
    return found


@pytest.mark.parametrize("service", FRAMEWORKS, indirect=True)
def test_sigterm_stops_the_service_with_no_process_left(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert service.tested.returncode == 0, service.tested.output
    port = free_port()
    log = tmp_path / "serve.log"
    command = [str(service.bin / "serving-runtime"), "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "2", "--graceful-timeout", str(NEVER)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=service.path,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", server, HANG, log)
        canary = json.loads((service.path / "demo_model" / "test_data.json").read_text())[0]
        body = json.dumps({"model_id": "demo-model", "features": canary["features"]}).encode()
        for _ in range(4):  # the framework predicts in each worker, not only in the master
            request = urllib.request.Request(
                url + "/infer", body, {"content-type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
        # As Envoy keeps its connections to the runtime: one kept alive, idle, at SIGTERM.
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG)
        kept.request("POST", "/infer", body, {"content-type": "application/json"})
        assert kept.getresponse().read()
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            stuck = session_processes(server.pid)
            raise AssertionError(f"still running after SIGTERM: {stuck}") from None
        took = time.monotonic() - signalled
        with capsys.disabled():  # the figure, in the suite's output (a measure, not a bound)
            print(f"\n{service.framework}: stopped {took:.2f} s after SIGTERM", flush=True)
        assert code == 0, log.read_text()
        assert session_processes(server.pid) == []
        assert kept.sock is not None
        assert kept.sock.recv(1) == b""  # the kept connection was closed, not left hanging
        kept.close()
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
