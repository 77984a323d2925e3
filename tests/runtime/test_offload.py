"""Shadow versions and output recording: off the request path, never failing a request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, build_service, linear, running, wait_for

SHADOWS = """
import time

from linear_model import Linear


class SlowShadow(Linear):
    def predict(self, rows):
        if rows != [[1.0, 2.0]]:  # the canary row stays quick
            time.sleep(2)
        return super().predict(rows)


class RaisingShadow(Linear):
    def predict(self, rows):
        if rows != [[1.0, 2.0]]:
            raise RuntimeError("the shadow broke")
        return super().predict(rows)


class FailingSink:
    def __init__(self, config):
        pass

    def write(self, records):
        raise OSError("disk full")

    def close(self):
        pass
"""


def service(root: Path, shadow: dict[str, Any], recording: dict[str, Any] | None) -> Path:
    config: dict[str, Any] = {
        "models": {
            "linear": {
                "class": "linear_model:Linear",
                "primary": "v1",
                "versions": {"v1": {"artifact": "artifacts/v1.json"}, "v2": shadow},
            }
        }
    }
    if recording is not None:
        config["recording"] = recording
    path = build_service(root, config)
    (root / "shadows.py").write_text(SHADOWS)
    return path


def metric(server: Server, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def records(config: Path, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "serving_runtime", "records", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_shadow_sees_every_request_is_compared_and_recorded(tmp_path: Path) -> None:
    shadow = {"artifact": "artifacts/v2.json", "shadow": True}
    recording = {"path": "records", "features": True}
    config = service(tmp_path, shadow, recording)
    with running(config, workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        states = {
            v["version"]: v["state"]
            for v in httpx.get(server.url + "/models").json()["models"][0]["versions"]
        }
        assert states == {"v1": "serving", "v2": "shadow"}
        ids = []
        for features in ([1, 2], [1, 0], [2, 0]):  # v2 agrees on the first only
            answer = server.post("/infer", {"model_id": "linear", "features": features})
            assert answer.json()["version"] == "v1"
            assert answer.json()["output"] == [linear("v1", *features)]
            ids.append(answer.json()["request_id"])
        labels = {"model_id": "linear", "primary_version": "v1", "shadow_version": "v2"}
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total", **labels) == 3)
        assert metric(server, "lls_shadow_comparisons_total", outcome="agree", **labels) == 1
        assert metric(server, "lls_shadow_comparisons_total", outcome="disagree", **labels) == 2
        wait_for(lambda: len(records(config)) == 6)
    primary = records(config, "--kind", "primary")
    assert [r["request_id"] for r in primary] == ids
    assert [r["output"] for r in primary] == [[5.0], [1.0], [2.0]]
    assert primary[1]["features"] == [[1.0, 0.0]]
    shadows = {r["request_id"]: r for r in records(config, "--kind", "shadow")}
    assert shadows[ids[1]]["output"] == [linear("v2", 1, 0)]
    assert [shadows[i]["agree"] for i in ids] == [True, False, False]
    command = [sys.executable, "-m", "serving_runtime", "records", "--config", str(config)]
    command += ["--as-test-data", "--limit", "2"]
    test_data = json.loads(
        subprocess.run(command, capture_output=True, text=True, check=True).stdout
    )
    assert test_data == [
        {"features": [[1.0, 0.0]], "expected": [1.0]},
        {"features": [[2.0, 0.0]], "expected": [2.0]},
    ]


def test_a_slow_shadow_never_delays_the_client(tmp_path: Path) -> None:
    shadow = {"artifact": "artifacts/v1.json", "class": "shadows:SlowShadow", "shadow": True}
    config = service(tmp_path, shadow, None)
    with running(config, workers=1) as server:
        took = []
        for i in range(10):
            started = time.perf_counter()
            answer = server.post("/infer", {"model_id": "linear", "features": [i, 1]})
            took.append(time.perf_counter() - started)
            assert answer.json()["output"] == [linear("v1", i, 1)]
        # each shadow prediction sleeps 2 s: had the client waited, this would take 20 s
        assert max(took) < 0.5, took


def test_a_raising_shadow_changes_nothing_for_the_client(tmp_path: Path) -> None:
    shadow = {"artifact": "artifacts/v1.json", "class": "shadows:RaisingShadow", "shadow": True}
    config = service(tmp_path, shadow, None)
    with running(config, workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        for i in range(5):
            answer = server.post("/infer", {"model_id": "linear", "features": [i, 3]})
            assert answer.status_code == 200
            assert answer.json()["output"] == [linear("v1", i, 3)]
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total", outcome="error") == 5)
        log = server.log_lines()
    assert any(r["event"] == "shadow_failed" and "the shadow broke" in r["error"] for r in log)


def test_a_failing_sink_drops_records_counted_and_logged_and_fails_no_request(
    tmp_path: Path,
) -> None:
    recording = {"path": "records", "sink": "shadows:FailingSink"}
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, recording)
    with running(config, workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        for i in range(8):
            assert server.post("/infer", {"model_id": "linear", "features": [i, 0]}).is_success
        wait_for(lambda: metric(server, "lls_offload_dropped_total", reason="sink_error") == 8)
        log = server.log_lines()
    assert any(r["event"] == "records_dropped" and "disk full" in r["error"] for r in log)


def test_records_rotate_within_their_bound(tmp_path: Path) -> None:
    recording = {"path": "records", "max_bytes": 2048, "backups": 2, "features": True}
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, recording)
    with running(config, workers=1) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        with httpx.Client() as client:
            for i in range(200):
                client.post(server.url + "/infer", json={"model_id": "linear", "features": [i, 0]})
        wait_for(lambda: metric(server, "lls_records_written_total") == 200)
    files = sorted(p.name for p in (tmp_path / "records").iterdir())
    assert files == ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    assert all((tmp_path / "records" / f).stat().st_size <= 2048 for f in files)
    kept = records(config)
    outputs = [r["output"][0] for r in kept]
    assert outputs == sorted(outputs)  # oldest first, newest last
    assert outputs[-1] == 199.0


def test_sampling_records_about_the_asked_share(tmp_path: Path) -> None:
    recording = {"path": "records", "sample": 0.25}
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, recording)
    with running(config, workers=1) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        with httpx.Client() as client:
            for i in range(400):
                client.post(server.url + "/infer", json={"model_id": "linear", "features": [i, 0]})
        time.sleep(1.5)
        written = metric(server, "lls_records_written_total")
    assert 50 <= written <= 150  # 100 expected; 6 standard deviations of room


def test_a_shadow_loaded_at_run_time_is_compared_then_promoted(tmp_path: Path) -> None:
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, None)
    with running(config, workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        command = [sys.executable, "-m", "serving_runtime", "admin", "load", "linear", "v3"]
        command += ["--artifact", "artifacts/v3.json", "--shadow"]
        command += ["--socket", str(server.admin_socket)]
        loaded = subprocess.run(command, capture_output=True, text=True, check=False)
        assert loaded.returncode == 0, loaded.stderr
        for _ in range(4):
            server.post("/infer", {"model_id": "linear", "features": [1, 0]})
        labels = {"primary_version": "v1", "shadow_version": "v3", "outcome": "disagree"}
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total", **labels) == 4)
        server.post("/admin/models/linear/promote", {"version": "v3"})
        answer = server.post("/infer", {"model_id": "linear", "features": [1, 0]}).json()
        assert (answer["version"], answer["output"]) == ("v3", [linear("v3", 1, 0)])
        states = {
            v["version"]: v["state"]
            for v in httpx.get(server.url + "/models").json()["models"][0]["versions"]
        }
        assert states == {"v1": "loaded", "v2": "loaded", "v3": "serving"}


ECHO_RECORDED = {
    "models": {"echo": {"class": "echo_model:Echo", "primary": "1", "versions": {"1": {}}}},
    "recording": {"path": "records"},
}


def offload_pids(server: Server) -> list[int]:
    """The offload processes the server started, oldest first."""
    return [r["pid"] for r in server.log_lines() if r["event"] == "offload_started"]


def state_folder_of(server: Server) -> Path:
    """The server's state folder: where its background process said it listens."""
    wait_for(lambda: offload_pids(server))
    started = next(r for r in server.log_lines() if r["event"] == "offload_started")
    return Path(started["socket"]).parent


def first_offload_pid(server: Server) -> int:
    """The first offload process, once it has said so: it may start after the server is ready."""
    wait_for(lambda: len(offload_pids(server)) >= 1)
    return offload_pids(server)[0]


def slow_request(
    server: Server, seconds: float, tmp_path: Path
) -> tuple[threading.Thread, list[httpx.Response]]:
    """An echo request that sleeps in predict; returns once its predict has begun."""
    started = tmp_path / f"started-{time.monotonic_ns()}"
    answers: list[httpx.Response] = []
    body = {"model_id": "echo", "features": {"sleep": seconds, "started": str(started)}}
    request = threading.Thread(target=lambda: answers.append(server.post("/infer", body)))
    request.start()
    wait_for(started.exists)
    return request, answers


def master_handling_sigterm(server: Server) -> bool:
    return any(r.get("message") == "Handling signal: term" for r in server.log_lines())


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def exited(pid: int) -> bool:
    """Gone, or a zombie that its parent (this test, for a server) has yet to wait for."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextmanager
def clients(server: Server) -> Iterator[list[str]]:
    """Two clients posting /infer in a loop until the block ends; yields their failures."""
    failures: list[str] = []
    answered = [0]
    done = threading.Event()

    def loop(a: int) -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                body = {"model_id": "linear", "features": [a, 1]}
                try:
                    answer = client.post(server.url + "/infer", json=body)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200 or answer.json()["output"] != [linear("v1", a, 1)]:
                    failures.append(f"{answer.status_code} {answer.text}")
                answered[0] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=loop, args=(a,)) for a in (3, 4)]
    for thread in threads:
        thread.start()
    try:
        yield failures
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert answered[0] > 50, answered


def test_a_killed_offload_process_is_replaced_and_no_request_fails(tmp_path: Path) -> None:
    shadow = {"artifact": "artifacts/v2.json", "shadow": True}
    config = service(tmp_path, shadow, {"path": "records"})
    with running(config, workers=2) as server:
        first = first_offload_pid(server)
        master = parent_of(first)
        state = state_folder_of(server)
        with clients(server) as failures:
            wait_for(lambda: metric(server, "lls_records_written_total") > 0)
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: len(offload_pids(server)) == 2)
            second = offload_pids(server)[1]
            # The old process is gone: whatever counts from here on, the new one counted.
            compared = metric(server, "lls_shadow_comparisons_total")
            written = metric(server, "lls_records_written_total")
            wait_for(lambda: metric(server, "lls_shadow_comparisons_total") > compared + 20)
            wait_for(lambda: metric(server, "lls_records_written_total") > written + 20)
        assert failures == []
        assert parent_of(second) == master
        assert metric(server, "lls_offload_restarts_total") == 1
        # The dead process left no file: its status went, its counts into the archive.
        assert not (state / "processes" / f"{first}.json").exists()
        assert list((state / "metrics").glob(f"*_{first}.db")) == []
        ids = [
            server.post("/infer", {"model_id": "linear", "features": [1, 0]}).json()["request_id"]
            for _ in range(3)
        ]
        wait_for(
            lambda: {r["request_id"] for r in records(config, "--kind", "primary")} >= set(ids)
        )
        (restart,) = [r for r in server.log_lines() if r["event"] == "offload_restarted"]
        assert (restart["previous_pid"], restart["pid"], restart["signal"]) == (
            first,
            second,
            "SIGKILL",
        )
    # `running` stopped the server with SIGTERM and waited for it: nothing of it is left
    assert not alive(master)
    assert not alive(first)
    assert not alive(second)
    assert len(offload_pids(server)) == 2


def test_a_stopping_server_does_not_restart_its_offload_process(tmp_path: Path) -> None:
    config = build_service(tmp_path, ECHO_RECORDED)
    with running(config, workers=1) as server:
        offload = first_offload_pid(server)
        master = parent_of(offload)
        request, slow = slow_request(server, 3, tmp_path)
        os.kill(master, signal.SIGTERM)
        wait_for(lambda: master_handling_sigterm(server))
        os.kill(offload, signal.SIGKILL)  # dies while the worker drains, as under OOM
        request.join()
        wait_for(lambda: exited(master))
        assert [answer.status_code for answer in slow] == [200]
        assert offload_pids(server) == [offload]
        assert not [r for r in server.log_lines() if r["event"] == "offload_restarted"]
        assert not alive(offload)


def test_sigterm_stops_the_offload_process_after_the_workers_and_before_the_server_exits(
    tmp_path: Path,
) -> None:
    config = build_service(tmp_path, ECHO_RECORDED)
    with running(config, workers=1) as server:
        offload = first_offload_pid(server)
        master = parent_of(offload)
        request, slow = slow_request(server, 2, tmp_path)
        os.kill(master, signal.SIGTERM)
        request.join()
        wait_for(lambda: exited(master))
        assert not alive(offload)  # stopped and waited for by the server, not left behind
        assert [answer.status_code for answer in slow] == [200]
        (answered,) = [r for r in records(config) if r["output"] == "slept"]
        assert answered["request_id"] == slow[0].json()["request_id"]
