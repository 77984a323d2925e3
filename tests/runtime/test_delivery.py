"""Versions declared by the overrides file, by artifact URI and sha256: a running server fetches
each from a real HTTP server, self-tests it, and only then gives it traffic, in every worker and
in workers forked later; one that cannot be fetched or fails its self-tests never serves and is
reported; a slow download holds up neither the requests nor the admin interface."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving_runtime._config import load_config
from serving_runtime._overrides import check_overrides
from serving_runtime._traffic import choose
from tests.model_host import HeldServer, serving

from .conftest import Server, running
from .test_offload import first_offload_pid, metric, wait_for
from .test_overrides import ConfigMapVolume, applied, events, overrides_of, settled
from .test_run_time_changes import ready, states, workers

V4 = json.dumps({"a": 5, "b": 0}).encode()  # passes the canary (5 at (1, 2)); 5 at (1, 0)
WRONG = json.dumps({"a": 2, "b": 2}).encode()  # 6 at (1, 2): misses the canary


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A model host over a folder: its URL, the folder, the paths asked for."""
    folder = tmp_path / "host"
    folder.mkdir()
    with serving(folder) as (url, served):
        yield url, folder, served


def declaring(uri: str, digest: str, **entry: Any) -> dict[str, Any]:
    return {
        "models": {"linear": {"versions": {"v4": {"artifact": uri, "sha256": digest}}, **entry}}
    }


def version_for(server: Server, key: str) -> str:
    answer = httpx.post(
        server.url + "/infer",
        json={"model_id": "linear", "features": [1, 0], "routing_key": key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["version"]
    return version


def keys_reach(server: Server, weights: dict[str, int], count: int = 40) -> bool:
    return all(
        version_for(server, f"customer-{n}") == choose("linear", weights, f"customer-{n}")
        for n in range(count)
    )


def test_a_declared_version_is_fetched_self_tested_then_takes_its_share_everywhere(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    url, folder, served = host
    (folder / "linear-v4.json").write_bytes(V4)
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        weights = {"v1": 50, "v4": 50}
        asked = declaring(f"{url}/linear-v4.json", sha256(V4), traffic=weights)
        digest = volume.write(asked)
        wait_for(lambda: settled(server, digest))
        assert states(server)["v4"]["state"] == "serving"
        assert keys_reach(server, weights)
        fetched = events(server, "version_delivered")
        assert [(e["version"], e["fetched"]) for e in fetched] == [("v4", True)]
        assert len(events(server, "version_fetching")) == 1  # one process fetched, for all
        requests = served.count("/linear-v4.json")
        assert metric(server, "lls_model_selftest_passed", version="v4") == 1

        before = workers(server)  # workers forked later load it from the cache, at once
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(ready(server) - before) == 2)
        assert keys_reach(server, weights)
        assert served.count("/linear-v4.json") == requests

        promoted = volume.write(declaring(f"{url}/linear-v4.json", sha256(V4), primary="v4"))
        wait_for(lambda: settled(server, promoted))
        assert {version_for(server, f"k{n}") for n in range(10)} == {"v4"}

        rolled_back = volume.write({})  # the version removed from the values: gone
        wait_for(lambda: settled(server, rolled_back))
        assert "v4" not in states(server)
        assert {version_for(server, f"k{n}") for n in range(10)} == {"v1"}


def test_the_cache_keeps_only_what_the_file_declares(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    """A pod that is given v4, then v5 instead, over its life holds v5's bytes only: the cache
    is a volume with a size limit, and a pod that fills it is evicted."""
    url, folder, _ = host
    v5 = json.dumps({"a": 3, "b": 1}).encode()  # 5 at (1, 2): passes the canary
    (folder / "linear-v4.json").write_bytes(V4)
    (folder / "linear-v5.json").write_bytes(v5)
    cache = tmp_path / "delivered"
    env = {"SERVING_RUNTIME_DELIVERY_CACHE": str(cache)}
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=1, env=env) as server:
        first = volume.write(declaring(f"{url}/linear-v4.json", sha256(V4), primary="v4"))
        wait_for(lambda: settled(server, first))
        assert sorted(p.name for p in cache.iterdir()) == [sha256(V4)]
        (cache / sha256(V4) / ".partial-killed").write_bytes(b"a fetch killed midway")
        declared = {"v5": {"artifact": f"{url}/linear-v5.json", "sha256": sha256(v5)}}
        second = volume.write({"models": {"linear": {"versions": declared, "primary": "v5"}}})
        wait_for(lambda: settled(server, second))
        assert states(server)["v5"]["state"] == "serving"
        assert sorted(p.name for p in cache.iterdir()) == [sha256(v5)]
        assert [p.name for p in (cache / sha256(v5)).iterdir()] == ["linear-v5.json"]


def test_a_declared_version_that_cannot_serve_never_does_and_is_reported(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    url, folder, _ = host
    (folder / "wrong.json").write_bytes(WRONG)
    (folder / "v4.json").write_bytes(V4)
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    env = {"SERVING_RUNTIME_DELIVERY_MAX_BYTES": str(len(V4) + 1)}
    with running(fresh_service, "--overrides", str(volume.path), workers=2, env=env) as server:
        cases = {
            "a wrong checksum": (f"{url}/v4.json", sha256(WRONG), "has sha256"),
            "unreachable": (f"{url}/gone.json", sha256(V4), "cannot fetch"),
            "failed canaries": (f"{url}/wrong.json", sha256(WRONG), "failed its self-tests"),
        }
        for case, (uri, digest, problem) in cases.items():
            written = volume.write(declaring(uri, digest, traffic={"v1": 50, "v4": 50}))
            wait_for(lambda written=written: settled(server, written))  # type: ignore[misc]
            found = states(server)["v4"]
            assert found["state"] == "failed", case
            assert problem in found["problem"], (case, found)
            assert {version_for(server, f"k{n}") for n in range(20)} == {"v1"}, case
            refused = httpx.get(server.url + "/models").json()["plan"]["overrides"]["problems"]
            assert "v4" in refused["linear"], case
            assert metric(server, "lls_overrides_refused", model_id="linear") == 1
        assert metric(server, "lls_model_selftest_passed", version="v4") == 0
        failed = events(server, "version_delivery_failed")
        assert len(failed) == 3
        assert all(e["version"] == "v4" for e in failed)

        (folder / "big.json").write_bytes(V4 + b" " * 64)  # valid JSON, over the bound
        written = volume.write(declaring(f"{url}/big.json", sha256(V4 + b" " * 64)))
        wait_for(lambda: settled(server, written))
        assert "larger than the" in states(server)["v4"]["problem"]


@pytest.fixture
def held() -> Iterator[Callable[[bytes | None], HeldServer]]:
    """Artifact servers that hold their requests until released; closed after the test."""
    made: list[HeldServer] = []

    def make(body: bytes | None = None) -> HeldServer:
        made.append(HeldServer(body))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_a_stalled_download_holds_up_neither_requests_nor_admin(
    fresh_service: Path, tmp_path: Path, held: Callable[[bytes | None], HeldServer]
) -> None:
    stalling = held(None)
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        volume.write(declaring(f"{stalling.url}/v4.json", sha256(V4), primary="v4"))
        wait_for(stalling.connected.is_set)
        try:
            promoted = server.post("/admin/models/linear/promote", {"version": "v2"})
            assert promoted.status_code == 200, promoted.text
            assert "pending" not in promoted.json()  # every worker took it meanwhile
            assert {version_for(server, f"k{n}") for n in range(10)} == {"v2"}
        finally:
            stalling.release.set()
        wait_for(lambda: states(server)["v4"]["state"] != "arriving")
        assert states(server)["v4"]["state"] == "failed"
        # The file applied, without the primary it asked for: the pod keeps what it served.
        assert {version_for(server, f"k{n}") for n in range(10)} == {"v2"}


def echo_version_for(server: Server, key: str) -> str:
    answer = httpx.post(
        server.url + "/infer",
        json={"model_id": "echo", "features": "hello", "routing_key": key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    version: str = answer.json()["version"]
    return version


def echo_states(server: Server) -> dict[str, dict[str, Any]]:
    listing = httpx.get(server.url + "/models").json()["models"]
    (echo,) = [m for m in listing if m["model_id"] == "echo"]
    return {v["version"]: v for v in echo["versions"]}


def samples(server: Server, name: str, **labels: str) -> list[float]:
    """The values of the samples of `name` whose labels include `labels`."""
    return [
        sample.value
        for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def test_a_slow_declared_version_holds_back_no_other_part_of_the_file(
    fresh_service: Path, tmp_path: Path, held: Callable[[bytes | None], HeldServer]
) -> None:
    """In an incident: one change of the file declares echo's version 2 (whose artifact
    server stalls) with a share, and rolls linear back. The rollback serves at once; echo's
    version 2 takes its share once its bytes have come and passed its self-tests."""
    body = b"{}"  # echo's load() reads nothing of it; its canary passes
    server_of_2 = held(body)
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({"models": {"linear": {"primary": "v2"}}})  # the release to roll back
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        assert {version_for(server, f"k{n}") for n in range(10)} == {"v2"}
        weights = {"1": 50, "2": 50}
        declared = {"2": {"artifact": f"{server_of_2.url}/echo-2.json", "sha256": sha256(body)}}
        content = {
            "models": {
                "echo": {"versions": declared, "traffic": weights},
                "linear": {"primary": "v1"},
            }
        }
        digest = volume.write(content)
        wait_for(server_of_2.connected.is_set)
        keys = [f"customer-{n}" for n in range(40)]
        try:
            wait_for(lambda: applied(server, digest))
            assert {version_for(server, f"k{n}") for n in range(10)} == {"v1"}
            found = echo_states(server)["2"]
            assert found["state"] == "arriving", found
            assert found["uri"] == declared["2"]["artifact"]
            # Until it arrives, its share goes to the primary, as a failed version's does.
            assert {echo_version_for(server, key) for key in keys} == {"1"}
            assert not samples(server, "lls_model_selftest_passed", model_id="echo", version="2")
            arriving = {"model_id": "echo", "version": "2", "state": "arriving"}
            assert samples(server, "lls_model_version_loaded", **arriving) == [0.0]
            assert overrides_of(server)["problems"] == {}
        finally:
            server_of_2.release.set()
        wait_for(lambda: settled(server, digest))
        assert echo_states(server)["2"]["state"] == "serving"
        assert all(echo_version_for(server, key) == choose("echo", weights, key) for key in keys)
        assert {echo_version_for(server, key) for key in keys} == {"1", "2"}
        assert metric(server, "lls_model_selftest_passed", model_id="echo", version="2") == 1
        assert [e["version"] for e in events(server, "version_delivered")] == ["2"]
        assert not events(server, "version_delivery_failed")


def test_a_starting_server_waits_for_a_declared_version_no_longer_than_its_budget(
    fresh_service: Path, tmp_path: Path, held: Callable[[bytes | None], HeldServer]
) -> None:
    """A new pod whose artifact server stalls becomes ready within its startup budget,
    serving what it can, and goes on fetching in the background."""
    server_of_v4 = held(V4)
    volume = ConfigMapVolume(tmp_path / "overrides")
    weights = {"v1": 50, "v4": 50}
    digest = volume.write(declaring(f"{server_of_v4.url}/v4.json", sha256(V4), traffic=weights))
    env = {"SERVING_RUNTIME_DELIVERY_STARTUP_BUDGET": "1"}
    with running(fresh_service, "--overrides", str(volume.path), workers=2, env=env) as server:
        try:
            assert server_of_v4.connected.is_set()
            assert states(server)["v4"]["state"] == "arriving"
            assert states(server)["v1"]["state"] == "serving"
            assert {version_for(server, f"customer-{n}") for n in range(20)} == {"v1"}
            (deferred,) = events(server, "version_delivery_deferred")
            assert (deferred["model_id"], deferred["version"]) == ("linear", "v4")
            assert not events(server, "version_delivery_failed")
        finally:
            server_of_v4.release.set()
        wait_for(lambda: settled(server, digest))
        assert states(server)["v4"]["state"] == "serving"
        assert keys_reach(server, weights)
        assert server_of_v4.connections == 2  # the starting fetch, then the one in the background


def test_a_failed_declaration_is_not_fetched_again_until_the_operator_asks(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    url, folder, served = host
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        wait_for(lambda: len(ready(server)) == 2)
        asked = declaring(f"{url}/v4.json", sha256(V4), traffic={"v1": 50, "v4": 50})
        first = volume.write(asked)  # not on the host yet: a 404
        wait_for(lambda: settled(server, first))
        assert states(server)["v4"]["state"] == "failed"
        assert served.count("/v4.json") == 1
        (folder / "v4.json").write_bytes(V4)  # a fetch now would succeed: none is made

        unrelated = {"models": {**asked["models"], "echo": {"primary": "1"}}}
        second = volume.write(unrelated)
        wait_for(lambda: settled(server, second))
        assert states(server)["v4"]["state"] == "failed"
        assert served.count("/v4.json") == 1
        assert len(events(server, "version_delivery_failed")) == 1
        assert "v4" in overrides_of(server)["problems"]["linear"]
        loaded = server.post("/admin/models/linear/load", {"version": "v4"})
        assert loaded.status_code == 409, loaded.text  # the file's to fetch, not admin's
        assert "declare it anew" in loaded.json()["error"]["message"]

        # Asking again: the version removed from the file, then declared again.
        removed = volume.write({"models": {"echo": {"primary": "1"}}})
        wait_for(lambda: settled(server, removed))
        assert "v4" not in states(server)
        again = volume.write(unrelated)
        wait_for(lambda: settled(server, again))
        assert states(server)["v4"]["state"] == "serving"
        assert served.count("/v4.json") == 2
        assert overrides_of(server)["problems"] == {}


def test_check_overrides_knows_declared_versions(fresh_service: Path) -> None:
    config = load_config(fresh_service)
    uri, digest = "https://models.example.com/v4.json", "0" * 64

    def check(content: dict[str, Any]) -> dict[str, str]:
        return check_overrides(config, json.dumps(content), "overrides.yaml")

    assert check(declaring(uri, digest, traffic={"v1": 90, "v4": 10})) == {}
    assert check(declaring(uri, digest, primary="v4")) == {}
    local = check(declaring("artifacts/v2.json", digest))
    assert "is not a URI" in local[""]
    assert "names no object" in check(declaring("https://models.example.com/a/..", digest))[""]
    taken = check({"models": {"linear": {"versions": {"v1": {"artifact": uri, "sha256": digest}}}}})
    assert "already declared by models.yaml" in taken["linear"]
    classed = {"artifact": uri, "sha256": digest, "class": "os:System"}
    foreign = check({"models": {"linear": {"versions": {"v4": classed}}}})
    assert "not one models.yaml names" in foreign["linear"]
    assert "null" not in check({"models": {"linear": {"traffic": None}}})


def test_a_server_started_later_fetches_the_declared_versions_before_it_is_ready(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    url, folder, _ = host
    (folder / "v4.json").write_bytes(V4)
    volume = ConfigMapVolume(tmp_path / "overrides")
    weights = {"v1": 50, "v4": 50}
    volume.write(declaring(f"{url}/v4.json", sha256(V4), traffic=weights))
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert keys_reach(server, weights)  # from its first answer on
        assert states(server)["v4"]["state"] == "serving"


def test_a_declared_shadow_runs_in_the_background_process(
    fresh_service: Path, tmp_path: Path, host: tuple[str, Path, list[str]]
) -> None:
    url, folder, _ = host
    (folder / "v4.json").write_bytes(V4)
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write({})
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        content = declaring(f"{url}/v4.json", sha256(V4))
        content["models"]["linear"]["versions"]["v4"]["shadow"] = True
        digest = volume.write(content)
        wait_for(lambda: settled(server, digest))
        assert states(server)["v4"]["state"] == "shadow"
        labels = {"model_id": "linear", "primary_version": "v1", "shadow_version": "v4"}

        def compared() -> float:
            return metric(server, "lls_shadow_comparisons_total", **labels)

        # The background process follows the plan on its own: once it compares one request,
        # it compares every one.
        wait_for(lambda: version_for(server, "any") == "v1" and compared() > 0)
        before = compared()
        assert {version_for(server, f"k{n}") for n in range(5)} == {"v1"}
        wait_for(lambda: compared() == before + 5)
        # v4 answers 5 where v1 answers 1, at (1, 0): each comparison disagrees
        assert metric(server, "lls_shadow_comparisons_total", outcome="agree", **labels) == 0
