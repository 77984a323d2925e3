"""Experiments: requests naming no version split between versions at weights, sticky by key.

The split is random without a routing key, so the counts are checked against a wide bound
(binomial, 1 000 draws at 1/2: 400..600 is over 6 standard deviations), never against time.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from serving_runtime._config import load_config
from serving_runtime._errors import BadRequest, ConfigError, Conflict, NotFound
from serving_runtime._overrides import check_overrides
from serving_runtime._plan import (
    ModelPlan,
    PodPlan,
    VersionSpec,
    mark_failed,
    promote,
    rollback,
    set_traffic,
    unload,
)
from serving_runtime._traffic import choose

from .conftest import CONFIG, Server, build_service, linear, running
from .test_offload import first_offload_pid, metric, records, wait_for
from .test_overrides import ConfigMapVolume, events, overrides_of
from .test_overrides import settled as read_settled
from .test_run_time_changes import ready, settled, states

HALF = {"v1": 50, "v2": 50}


def with_traffic(traffic: dict[str, int] | None, **extra: Any) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    if traffic is not None:
        config["models"]["linear"]["traffic"] = traffic
    config.update(extra)
    return config


def infer(server: Server, key: str | None = None, **body: Any) -> httpx.Response:
    """One /infer for (1, 0) on a new connection (so any worker may take it)."""
    if key is not None:
        body["routing_key"] = key
    payload = {"model_id": "linear", "features": [1, 0], **body}
    return httpx.post(server.url + "/infer", json=payload, timeout=60)


def version_of(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    data = answer.json()
    # The arm that answered is the one whose output it is.
    assert data["output"] == [linear(data["version"], 1, 0)]
    return str(data["version"])


def traffic_of(server: Server) -> dict[str, Any] | None:
    listing = httpx.get(server.url + "/models").json()["models"]
    (model,) = [m for m in listing if m["model_id"] == "linear"]
    return model["traffic"]  # type: ignore[no-any-return]


# models.yaml


def check(tmp_path: Path, model: dict[str, Any]) -> str:
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"models": {"m": {"class": "a.b:C", **model}}}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value)


def test_models_yaml_refuses_traffic_that_cannot_apply(tmp_path: Path) -> None:
    versions = {"v1": {}, "v2": {}, "s": {"shadow": True}}
    base = {"primary": "v1", "versions": versions}
    assert "'v9' not among the versions (s, v1, v2)" in check(
        tmp_path, {**base, "traffic": {"v1": 1, "v9": 1}}
    )
    assert "the weights add up to 0" in check(tmp_path, {**base, "traffic": {"v1": 0}})
    assert "weight -5 is negative" in check(tmp_path, {**base, "traffic": {"v1": 5, "v2": -5}})
    assert "not a weight" in check(tmp_path, {**base, "traffic": {"v1": 0.5}})
    assert "'s' is a shadow" in check(tmp_path, {**base, "traffic": {"v1": 1, "s": 1}})


def test_traffic_may_stand_instead_of_primary_which_is_then_the_heaviest(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    model = {"class": "a.b:C", "versions": {"v1": {}, "v2": {}}, "traffic": {"v1": 90, "v2": 10}}
    path.write_text(json.dumps({"models": {"m": model}}))
    loaded = load_config(path).models["m"]
    assert (loaded.primary, loaded.traffic) == ("v1", {"v1": 90, "v2": 10})


# the choice


def test_a_key_chooses_the_same_version_in_any_process() -> None:
    keys = [f"user-{n}" for n in range(300)]
    here = [choose("linear", {"v1": 90, "v2": 10}, key) for key in keys]
    program = (
        "import json, sys\n"
        "from serving_runtime._traffic import choose\n"
        "keys = json.loads(sys.argv[1])\n"
        "print(json.dumps([choose('linear', {'v1': 90, 'v2': 10}, k) for k in keys]))\n"
    )
    for seed in ("1", "2"):  # another process, with another str hash seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        output = subprocess.run(
            [sys.executable, "-c", program, json.dumps(keys)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        assert json.loads(output) == here
    assert 10 <= here.count("v2") <= 60  # about a tenth of 300 keys


def test_growing_the_candidates_share_keeps_the_keys_it_had() -> None:
    keys = [f"user-{n}" for n in range(1000)]
    at_10 = {k for k in keys if choose("m", {"v1": 90, "v2": 10}, k) == "v2"}
    at_50 = {k for k in keys if choose("m", {"v1": 50, "v2": 50}, k) == "v2"}
    assert at_10 < at_50
    assert 400 <= len(at_50) <= 600


# the plan's rules


def plan(traffic: dict[str, int] | None = None) -> PodPlan:
    versions = {v: VersionSpec("m:M", f"{v}.json") for v in ("v1", "v2", "v3")}
    model = ModelPlan(
        "v1", MappingProxyType(versions), configured="v1", traffic=MappingProxyType(traffic or {})
    )
    return PodPlan(MappingProxyType({"m": model}))


def test_a_failed_versions_share_goes_to_the_others_pro_rata() -> None:
    start = plan({"v1": 60, "v2": 20, "v3": 20})
    failed = mark_failed(start, "m", "v3", "failed its self-tests")
    assert failed.models["m"].shares == {"v1": 60, "v2": 20}  # 75 % and 25 %
    assert failed.models["m"].traffic == {"v1": 60, "v2": 20, "v3": 20}  # still asked for
    assert PodPlan.from_dict(failed.as_dict()) == failed


def test_weights_that_cannot_apply_are_refused_with_the_clients_error() -> None:
    with pytest.raises(NotFound, match="'v9' not among the versions"):
        set_traffic(plan(), "m", {"v1": 1, "v9": 1})
    with pytest.raises(BadRequest, match="add up to 0"):
        set_traffic(plan(), "m", {"v1": 0, "v2": 0})
    failed = mark_failed(plan(), "m", "v2", "its artifact is gone")
    with pytest.raises(Conflict, match="its artifact is gone"):
        set_traffic(failed, "m", {"v1": 50, "v2": 50})


def test_a_promotion_or_a_rollback_ends_the_experiment() -> None:
    running = plan({"v1": 90, "v2": 10})
    promoted = promote(running, "m", "v2")
    assert (promoted.models["m"].primary, dict(promoted.models["m"].traffic)) == ("v2", {})
    again = set_traffic(promoted, "m", {"v1": 10, "v2": 90})
    assert dict(rollback(again, "m").models["m"].traffic) == {}
    kept = promote(running, "m", "v1")  # promoting the primary keeps it, experiment over
    assert (kept.models["m"].primary, dict(kept.models["m"].traffic)) == ("v1", {})
    with pytest.raises(Conflict, match="has a share of the traffic"):
        unload(running, "m", "v2")


# a real server


@pytest.fixture(scope="module")
def half(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two workers splitting linear 50/50, recording every answer."""
    root = tmp_path_factory.mktemp("experiment")
    recording = {"path": str(root / "records"), "features": True}
    config = build_service(root, with_traffic(HALF, recording=recording))
    with running(config, workers=2) as server:
        yield server


def test_requests_without_a_key_split_at_the_weights(half: Server) -> None:
    counts = Counter(version_of(infer(half)) for _ in range(1000))
    assert set(counts) == {"v1", "v2"}
    assert 400 <= counts["v1"] <= 600, counts
    # Each arm is counted apart, in the metrics and in the request log.
    assert metric(half, "lls_requests_total", model_id="linear", version="v2") >= counts["v2"]
    logged = Counter(
        r["version"] for r in half.log_lines() if r["event"] == "request" and r["path"] == "/infer"
    )
    assert logged["v1"] >= counts["v1"]
    assert logged["v2"] >= counts["v2"]
    assert traffic_of(half) == {"weights": HALF, "shares": {"v1": 50.0, "v2": 50.0}}
    assert {v: s["state"] for v, s in states(half).items()}["v2"] == "serving"


def test_the_same_key_reaches_the_same_version_in_every_worker(half: Server) -> None:
    keys = [f"user-{n}" for n in range(40)]
    expected = {key: choose("linear", HALF, key) for key in keys}  # as any process computes it
    assert set(expected.values()) == {"v1", "v2"}
    for key in keys:
        body_key = {version_of(infer(half, key)) for _ in range(3)}
        header = {"x-routing-key": key}
        payload = {"model_id": "linear", "features": [1, 0]}
        by_header = version_of(
            httpx.post(half.url + "/infer", json=payload, headers=header, timeout=60)
        )
        v2 = httpx.post(
            half.url + "/v2/models/linear/infer",
            json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 0]}]},
            headers=header,
            timeout=60,
        )
        assert v2.status_code == 200, v2.text
        assert body_key == {by_header} == {v2.json()["model_version"]} == {expected[key]}
    answered_by = {r["pid"] for r in half.log_lines() if r.get("path") == "/infer"}
    assert len(answered_by) >= 1  # whichever worker took each connection answered the same


def test_a_request_naming_a_version_gets_it_and_a_bad_key_is_a_400(half: Server) -> None:
    assert {version_of(infer(half, "user-1", version="v2")) for _ in range(20)} == {"v2"}
    assert {version_of(infer(half, version="v1")) for _ in range(20)} == {"v1"}
    wrong = infer(half, routing_key=7)
    assert wrong.status_code == 400
    assert "routing_key must be a string" in wrong.json()["error"]["message"]


def test_each_record_says_which_arm_answered(half: Server) -> None:
    for n in range(20):
        version_of(infer(half, f"record-{n}"))
    config = half.config

    def recorded() -> list[dict[str, Any]]:
        return [r for r in records(config, "--model", "linear") if r.get("kind") == "primary"]

    wait_for(lambda: len(recorded()) >= 20)
    arms = {r["version"]: r["output"] for r in recorded()}
    assert arms == {"v1": [linear("v1", 1, 0)], "v2": [linear("v2", 1, 0)]}


def test_a_version_that_fails_its_self_tests_gets_no_traffic(tmp_path: Path) -> None:
    # "bad" answers 6 where its canary expects 5: it never serves, v1 takes its share.
    config = build_service(tmp_path, with_traffic({"v1": 25, "v2": 25, "bad": 50}))
    with running(config, workers=2) as server:
        counts = Counter(version_of(infer(server)) for _ in range(400))
        assert set(counts) == {"v1", "v2"}
        assert 140 <= counts["v1"] <= 260, counts
        assert traffic_of(server) == {
            "weights": {"v1": 25, "v2": 25, "bad": 50},
            "shares": {"v1": 50.0, "v2": 50.0},
        }
        assert states(server)["bad"]["state"] == "failed"
        assert metric(server, "lls_traffic_share", model_id="linear", version="v1") == 0.5
        assert metric(server, "lls_traffic_share", model_id="linear", version="bad") == 0
        (said,) = {json.dumps(e["shares"]) for e in events(server, "traffic_redistributed")}
        assert json.loads(said) == {"v1": 25, "v2": 25}
        for key in ("a", "b", "c", "d"):  # a key whose band was bad's goes elsewhere, stably
            assert len({version_of(infer(server, key)) for _ in range(3)}) == 1


def test_admin_sets_the_weights_in_every_worker_and_a_promotion_ends_it(
    fresh_service: Path,
) -> None:
    with running(fresh_service, workers=2) as server:
        assert {version_of(infer(server)) for _ in range(20)} == {"v1"}
        call = server.post("/admin/models/linear/traffic", {"weights": {"v1": 0, "v2": 100}})
        assert call.status_code == 200, call.text
        assert call.json()["traffic"] == {"weights": {"v1": 0, "v2": 100}, "shares": {"v2": 100}}
        settled(server)
        assert {version_of(infer(server)) for _ in range(20)} == {"v2"}
        for body, status, says in [
            ({"weights": {"v1": 50, "v9": 50}}, 404, "'v9' not among the versions"),
            ({"weights": {"v1": 0}}, 400, "add up to 0"),
            ({"weights": {"v1": 50, "bad": 50}}, 409, "failed its self-tests"),
            ({"weights": {"v1": "half"}}, 400, "whole number"),
            ({"weights": [1]}, 400, "weights must be an object"),
        ]:
            refused = server.post("/admin/models/linear/traffic", body)
            assert refused.status_code == status, refused.text
            assert says in refused.json()["error"]["message"]
        assert {version_of(infer(server)) for _ in range(20)} == {"v2"}  # nothing changed
        command = ["admin", "traffic", "linear", "v1=50", "v2=50", "--socket"]
        cli = subprocess.run(
            [sys.executable, "-m", "serving_runtime", *command, str(server.admin_socket)],
            check=False,
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout == "linear: traffic done; traffic v1=50% v2=50%\n"
        promoted = server.post("/admin/models/linear/promote", {"version": "v2"})
        assert promoted.status_code == 200, promoted.text
        assert "traffic" not in promoted.json()
        settled(server)
        assert traffic_of(server) is None
        assert metric(server, "lls_traffic_share") == 0  # no experiment: no share exported
        assert {version_of(infer(server, f"k{n}")) for n in range(20)} == {"v2"}


def test_the_overrides_file_sets_the_weights(fresh_service: Path, tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        digest = volume.write({"models": {"linear": {"traffic": {"v1": 0, "v2": 100}}}})
        wait_for(lambda: read_settled(server, digest))
        assert {version_of(infer(server)) for _ in range(20)} == {"v2"}
        digest = volume.write({"models": {"linear": {"traffic": {"v1": 50, "v9": 50}}}})
        wait_for(lambda: read_settled(server, digest))
        assert overrides_of(server)["problems"] == {
            "linear": "model 'linear' traffic: 'v9' not among the versions (bad, v1, v2)"
        }
        # Refused: the model keeps the split it had, as for a primary the file cannot have.
        assert {version_of(infer(server)) for _ in range(20)} == {"v2"}
        digest = volume.write({})
        wait_for(lambda: read_settled(server, digest))
        assert traffic_of(server) is None  # models.yaml's: no experiment
        assert {version_of(infer(server)) for _ in range(20)} == {"v1"}


def test_a_worker_started_later_splits_as_the_others(fresh_service: Path) -> None:
    with running(fresh_service, workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        call = server.post("/admin/models/linear/traffic", {"weights": {"v1": 0, "v2": 100}})
        assert call.status_code == 200, call.text
        before = ready(server)
        os.kill(min(before), signal.SIGKILL)
        wait_for(lambda: len(ready(server) - before) == 1)  # its replacement follows the plan
        (replacement,) = ready(server) - before
        said = [
            r
            for r in server.log_lines()
            if r.get("event") == "worker_ready" and r["pid"] == replacement
        ]
        assert said
        assert settled(server)["generation"] == said[-1]["generation"]
        assert {version_of(infer(server, f"k{n}")) for n in range(20)} == {"v2"}


def test_check_overrides_tells_before_a_deploy_whether_the_weights_apply(tmp_path: Path) -> None:
    config = load_config(build_service(tmp_path))
    good = "models: {linear: {traffic: {v1: 90, v2: 10}}}"
    assert check_overrides(config, good, "o.yaml") == {}
    assert check_overrides(config, "models: {linear: {traffic: {v1: 90, v3: 10}}}", "o.yaml") == {
        "linear": "model 'linear' traffic: 'v3' not among the versions (bad, v1, v2)"
    }
    (problem,) = check_overrides(config, "models: {linear: {traffic: {v1: -1}}}", "o.yaml").values()
    assert "weight -1 is negative" in problem


def test_a_shadow_runs_on_the_primarys_requests_only_not_on_another_arms(tmp_path: Path) -> None:
    """The shadow's agreement answers "what if it replaced the primary": it is compared with
    the primary alone, and an arm's requests are measured by their own series instead."""
    config = with_traffic(HALF)
    config["models"]["linear"]["versions"]["v3"] = {"artifact": "artifacts/v3.json", "shadow": True}
    path = build_service(tmp_path / "service", config)
    with running(path, workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        answered = Counter(version_of(infer(server, f"customer-{n}")) for n in range(40))
        assert set(answered) == {"v1", "v2"}
        compared = {"model_id": "linear", "shadow_version": "v3"}
        on_v1 = {**compared, "primary_version": "v1"}
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total", **on_v1) == answered["v1"])
        on_v2 = {**compared, "primary_version": "v2"}
        assert metric(server, "lls_shadow_comparisons_total", **on_v2) == 0
