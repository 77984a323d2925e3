"""Run-time versions: loaded off the request path, the same in every worker, replaced ones too.

A gated model stands for a slow load: its `load` says it started (a file `<artifact>.loading-
<pid>`) and waits until the test lets that process go on (`<artifact>.go-<pid>`, or
`<artifact>.go-all` for every process), so each test waits for events, never for time.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import Server, build_service, linear, running
from .test_offload import metric, wait_for

GATED = """
import os
import time
from pathlib import Path

from linear_model import Linear


class Gated(Linear):
    def load(self, file):
        Path(f"{file}.loading-{os.getpid()}").touch()
        while not (Path(f"{file}.go-{os.getpid()}").exists() or Path(f"{file}.go-all").exists()):
            time.sleep(0.01)
        super().load(file)
"""
SERVICE = {
    "models": {
        "linear": {
            "class": "linear_model:Linear",
            "primary": "v1",
            "versions": {
                "v1": {"artifact": "artifacts/v1.json"},
                "v2": {"artifact": "artifacts/v2.json", "class": "gated_model:Gated"},
            },
        },
    }
}


def gated_service(root: Path) -> Path:
    config = build_service(root, SERVICE)
    (root / "gated_model.py").write_text(GATED)
    (root / "artifacts" / "v2.json.go-all").touch()  # models.yaml's versions load freely
    return config


def workers(server: Server) -> set[int]:
    """The live workers of the server, from Gunicorn's log (started, if not yet serving)."""
    booted = [r["pid"] for r in server.log_lines() if "Booting worker" in r.get("message", "")]
    return {pid for pid in booted if _alive(pid)}


def ready(server: Server) -> set[int]:
    """The live workers that follow the shared plan and take connections (`worker_ready`)."""
    caught_up = [r["pid"] for r in server.log_lines() if r.get("event") == "worker_ready"]
    return {pid for pid in caught_up if _alive(pid)}


def settled(server: Server) -> dict[str, Any]:
    """The plan once no worker lags behind it (a change reaches every worker by polling)."""
    status: dict[str, Any] = {}

    def every_worker_follows() -> bool:
        status.update(httpx.get(server.url + "/models").json()["plan"])
        return not status["behind"]

    wait_for(every_worker_follows)
    return status


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def loading(artifact: Path) -> set[int]:
    """The processes whose load of `artifact` has started and waits to be let go."""
    return {
        int(p.name.rpartition("-")[2]) for p in artifact.parent.glob(f"{artifact.name}.loading-*")
    }


def let_go(artifact: Path, pid: int) -> None:
    (artifact.parent / f"{artifact.name}.go-{pid}").touch()


def in_background(
    call: Callable[[], httpx.Response],
) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    return thread, answers


def answers(server: Server, count: int, **body: Any) -> list[tuple[int, Any]]:
    """`count` /infer answers for (1, 0), each on a new connection: (status, version)."""
    got = []
    for _ in range(count):
        answer = httpx.post(
            server.url + "/infer",
            json={"model_id": "linear", "features": [1, 0], **body},
            timeout=60,
        )
        version = answer.json().get("version") if answer.status_code == 200 else None
        got.append((answer.status_code, version))
    return got


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


def states(server: Server) -> dict[str, dict[str, Any]]:
    listing = httpx.get(server.url + "/models").json()["models"]
    (linear_model,) = [m for m in listing if m["model_id"] == "linear"]
    return {v["version"]: v for v in linear_model["versions"]}


def test_a_slow_load_in_place_keeps_every_other_worker_answering_and_answers_once_all_have_it(
    tmp_path: Path,
) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    with running(config, "--load-in-place", workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        pids = ready(server)
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        call, done = in_background(lambda: server.post("/admin/models/linear/load", body))
        wait_for(lambda: len(loading(artifact)) == 1)  # the worker that took the call
        (first,) = loading(artifact)
        assert first in pids
        let_go(artifact, first)
        wait_for(lambda: pids <= loading(artifact))  # the other one, in its own thread
        (other,) = pids - {first}
        wait_for(lambda: len(loading(artifact)) == 3)  # and the offload process, in its own
        (offload,) = loading(artifact) - pids
        let_go(artifact, offload)
        # The other worker is still loading: it and the first answer on, with what they had.
        assert set(answers(server, 20)) == {(200, "v1")}
        assert not done  # the change is not done until every worker has it
        let_go(artifact, other)
        call.join()
        assert done[0].status_code == 200, done[0].text
        promoted = server.post("/admin/models/linear/promote", {"version": "v3"})
        assert promoted.json()["primary"] == "v3"
        assert set(answers(server, 20)) == {(200, "v3")}


def test_a_replaced_worker_loads_the_run_time_versions_before_it_takes_a_request(
    tmp_path: Path,
) -> None:
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    (tmp_path / "artifacts" / "v3.json.go-all").touch()
    with running(config, workers=2) as server:
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        assert server.post("/admin/models/linear/load", body).status_code == 200
        assert server.post("/admin/models/linear/promote", {"version": "v3"}).status_code == 200
        # Both workers (one may have been forked after the change) and the offload process
        # (which a change does not wait for) have started on v3 while it loads freely.
        wait_for(lambda: len(ready(server)) == 2)
        wait_for(lambda: len(loading(artifact)) == 3)
        (tmp_path / "artifacts" / "v3.json.go-all").unlink()
        before, loaded = ready(server), loading(artifact)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        # Its replacement catches up (loads v3) before it accepts: meanwhile the other answers.
        wait_for(lambda: bool(loading(artifact) - loaded))
        (replacement,) = loading(artifact) - loaded
        assert set(answers(server, 20)) == {(200, "v3")}
        let_go(artifact, replacement)
        wait_for(lambda: ready(server) == (before - {victim}) | {replacement})
        (tmp_path / "artifacts" / "v3.json.go-all").touch()
        os.kill(min(before - {victim}), signal.SIGKILL)  # the other one too: all are new
        assert set(answers(server, 20)) == {(200, "v3")}


def test_a_worker_entering_the_rotation_is_handed_a_share_of_the_kept_alive_clients(
    tmp_path: Path,
) -> None:
    """Persistent clients (the pod's Envoy) stay with the workers they reached: without a
    rebalance, the clients of a replaced worker (or one back from a load) stay on the others."""
    config = gated_service(tmp_path)
    artifact = tmp_path / "artifacts" / "v3.json"
    (artifact.parent / f"{artifact.name}.go-all").touch()
    with running(config, workers=2) as server:
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "gated_model:Gated"}
        assert server.post("/admin/models/linear/load", body).status_code == 200
        wait_for(lambda: len(ready(server)) == 2)
        wait_for(lambda: len(loading(artifact)) == 3)  # both workers and the offload process
        (artifact.parent / f"{artifact.name}.go-all").unlink()
        before, loaded = ready(server), loading(artifact)
        victim = min(before)
        (survivor,) = before - {victim}
        os.kill(victim, signal.SIGKILL)
        # Its replacement loads v3 before it serves: meanwhile every client reaches the other.
        wait_for(lambda: bool(loading(artifact) - loaded))
        (replacement,) = loading(artifact) - loaded
        kept = [httpx.Client(base_url=server.url, timeout=30) for _ in range(4)]
        assert [served_by(server, client) for client in kept] == [(survivor, False)] * 4
        let_go(artifact, replacement)
        told: set[int] = set()

        def half_told_to_reconnect() -> bool:
            for i, client in enumerate(kept):
                if i not in told and served_by(server, client)[1]:
                    told.add(i)
            return len(told) >= 2

        wait_for(half_told_to_reconnect)
        assert len(told) == 2
        assert replacement in ready(server)
        # The others keep their connection; the two told reconnect and are answered.
        stayed = [served_by(server, kept[i]) for i in range(4) if i not in told]
        assert stayed == [(survivor, False)] * 2
        assert all(served_by(server, kept[i])[0] in before | {replacement} for i in told)
        for client in kept:
            client.close()


def test_a_run_time_version_whose_artifact_is_gone_falls_back_in_every_worker(
    fresh_service: Path,
) -> None:
    # The issue's repro: load from a file, promote it, lose the file, have the workers replaced.
    copy = fresh_service.parent / "artifacts" / "x.json"
    shutil.copy(fresh_service.parent / "artifacts" / "v2.json", copy)
    with running(fresh_service, workers=2) as server:
        body = {"version": "v9", "artifact": "artifacts/x.json"}
        assert server.post("/admin/models/linear/load", body).status_code == 200
        assert server.post("/admin/models/linear/promote", {"version": "v9"}).status_code == 200
        assert set(answers(server, 10)) == {(200, "v9")}
        copy.unlink()
        wait_for(lambda: len(ready(server)) == 2)
        before = ready(server)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(ready(server) - before) == 2)
        # Never a 503: the pod falls back to the configured primary, every worker alike.
        assert set(answers(server, 20)) == {(200, "v1")}
        v9 = states(server)["v9"]
        assert v9["state"] == "failed"
        assert "x.json" in v9["problem"]
        assert states(server)["v1"]["state"] == "serving"
        failed = {"model_id": "linear", "version": "v9", "state": "failed"}
        assert metric(server, "lls_model_version_loaded", **failed) == 1
        events = [
            r
            for r in server.log_lines()
            if r["event"] in {"version_unservable", "primary_fallback"}
        ]
        assert {r["event"] for r in events} == {"version_unservable", "primary_fallback"}
        fallback = next(r for r in events if r["event"] == "primary_fallback")
        assert (fallback["version"], fallback["instead_of"]) == ("v1", "v9")
        # Putting the file back and loading it again serves it again.
        shutil.copy(fresh_service.parent / "artifacts" / "v2.json", copy)
        assert server.post("/admin/models/linear/load", body).status_code == 200
        assert server.post("/admin/models/linear/promote", {"version": "v9"}).status_code == 200
        assert set(answers(server, 10)) == {(200, "v9")}


def test_a_version_whose_artifact_changed_is_not_served_by_a_replaced_worker(
    fresh_service: Path,
) -> None:
    copy = fresh_service.parent / "artifacts" / "x.json"
    shutil.copy(fresh_service.parent / "artifacts" / "v2.json", copy)
    with running(fresh_service, workers=2) as server:
        body = {"version": "v9", "artifact": "artifacts/x.json"}
        assert server.post("/admin/models/linear/load", body).status_code == 200
        assert server.post("/admin/models/linear/promote", {"version": "v9"}).status_code == 200
        shutil.copy(fresh_service.parent / "artifacts" / "v3.json", copy)  # other weights
        wait_for(lambda: len(ready(server)) == 2)
        before = ready(server)
        os.kill(min(before), signal.SIGKILL)
        # The replacement refuses v9 before it takes a connection; the other worker follows.
        wait_for(lambda: len(ready(server) - before) == 1)
        assert settled(server)["generation"] > 1
        assert set(answers(server, 20)) == {(200, "v1")}
        assert "not the one loaded at run time" in states(server)["v9"]["problem"]


FLAKY = """
from pathlib import Path

from linear_model import Linear


class Flaky(Linear):
    def load(self, file):
        if file.name == "v3.json":  # v3 loads in the first process that tries, no other
            if Path(f"{file}.first").exists():
                raise RuntimeError("only the first process loads it")
            Path(f"{file}.first").touch()
        super().load(file)
"""


def test_a_version_that_fails_in_another_worker_is_refused_for_the_pod(tmp_path: Path) -> None:
    config = {"models": {"linear": {**SERVICE["models"]["linear"]}}}
    config["models"]["linear"]["versions"] = {
        **SERVICE["models"]["linear"]["versions"],
        "f": {"artifact": "artifacts/v1.json", "class": "flaky_model:Flaky"},
    }
    path = build_service(tmp_path, config)
    (tmp_path / "gated_model.py").write_text(GATED)
    (tmp_path / "artifacts" / "v2.json.go-all").touch()
    (tmp_path / "flaky_model.py").write_text(FLAKY)
    with running(path, workers=2) as server:
        # A worker forked after a change follows the plan (and marks v3 failed) on its own;
        # here both are up, so the call itself finds that v3 fails in the other one.
        wait_for(lambda: len(ready(server)) == 2)
        body = {"version": "v3", "artifact": "artifacts/v3.json", "class": "flaky_model:Flaky"}
        refused = server.post("/admin/models/linear/load", body)
        assert refused.status_code == 422, refused.text
        assert "only the first process loads it" in refused.json()["error"]["message"]
        assert states(server)["v3"]["state"] == "failed"
        assert server.post("/admin/models/linear/promote", {"version": "v3"}).status_code == 409
        assert set(answers(server, 10)) == {(200, "v1")}


def test_admin_load_reads_only_the_artifact_folder_and_classes_models_yaml_names(
    fresh_service: Path, tmp_path: Path
) -> None:
    root = fresh_service.parent
    outside = tmp_path / "outside.json"
    shutil.copy(root / "artifacts" / "v2.json", outside)
    (root / "artifacts" / "escape.json").symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "artifacts" / "v2.json", elsewhere / "v7.json")
    load = "/admin/models/linear/load"
    with running(fresh_service, workers=1) as server:
        for artifact in (str(outside), "../outside.json", "artifacts/../../outside.json",
                         "artifacts/escape.json"):  # fmt: skip
            refused = server.post(load, {"version": "v7", "artifact": artifact})
            assert refused.status_code == 403, (artifact, refused.text)
            assert "not in the service's artifact folder" in refused.json()["error"]["message"]
        other_class = {"version": "v7", "artifact": "artifacts/v2.json", "class": "shutil:Error"}
        refused = server.post(load, other_class)
        assert refused.status_code == 403
        assert "'shutil:Error' is not one models.yaml names" in refused.json()["error"]["message"]
        assert "v7" not in states(server)
        absolute = server.post(load, {"version": "v7", "artifact": str(root / "artifacts/v2.json")})
        assert absolute.status_code == 200, absolute.text
    with running(fresh_service, "--artifact-dir", str(elsewhere), workers=1) as server:
        loaded = server.post(load, {"version": "v7", "artifact": str(elsewhere / "v7.json")})
        assert loaded.status_code == 200, loaded.text
        refused = server.post(load, {"version": "v8", "artifact": "artifacts/v2.json"})
        assert refused.status_code == 403


def test_a_change_waits_for_no_dead_worker(fresh_service: Path) -> None:
    with running(fresh_service, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        before = ready(server)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(ready(server) - before) == 2)
        # The dead workers' statuses are still on disk: a change must not wait for them.
        promoted = server.post("/admin/models/linear/promote", {"version": "v2"})
        assert promoted.json() == {"model_id": "linear", "operation": "promote", "primary": "v2"}
        answered = httpx.post(
            server.url + "/infer", json={"model_id": "linear", "features": [1, 0]}, timeout=60
        ).json()
        assert (answered["version"], answered["output"]) == ("v2", [linear("v2", 1, 0)])
