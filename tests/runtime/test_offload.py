"""Shadow versions and output recording: off the request path, never failing a request."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, build_service, linear, running

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


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


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
        for i in range(8):
            assert server.post("/infer", {"model_id": "linear", "features": [i, 0]}).is_success
        wait_for(lambda: metric(server, "lls_offload_dropped_total", reason="sink_error") == 8)
        log = server.log_lines()
    assert any(r["event"] == "records_dropped" and "disk full" in r["error"] for r in log)


def test_records_rotate_within_their_bound(tmp_path: Path) -> None:
    recording = {"path": "records", "max_bytes": 2048, "backups": 2, "features": True}
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, recording)
    with running(config, workers=1) as server:
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
        with httpx.Client() as client:
            for i in range(400):
                client.post(server.url + "/infer", json={"model_id": "linear", "features": [i, 0]})
        time.sleep(1.5)
        written = metric(server, "lls_records_written_total")
    assert 50 <= written <= 150  # 100 expected; 6 standard deviations of room


def test_a_shadow_loaded_at_run_time_is_compared_then_promoted(tmp_path: Path) -> None:
    config = service(tmp_path, {"artifact": "artifacts/v2.json"}, None)
    with running(config, workers=2) as server:
        command = [sys.executable, "-m", "serving_runtime", "admin", "load", "linear", "v3"]
        command += ["--artifact", "artifacts/v3.json", "--shadow", "--url", server.url]
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
