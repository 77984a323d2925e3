"""The overrides file: the one lever for which version serves, applied at start and on change.

The file is mounted the way the kubelet mounts a ConfigMap: `overrides.yaml` is a symlink to
`..data/overrides.yaml`, and an update writes a new timestamped folder and swaps `..data` to it
in one rename. Nothing here sleeps: each test waits for the answers it expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from .conftest import Server, running
from .test_offload import metric, wait_for
from .test_run_time_changes import answers, states, workers


class ConfigMapVolume:
    """A folder as the kubelet keeps a mounted ConfigMap, with one key: overrides.yaml."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "overrides.yaml"
        self._updates = 0
        folder.mkdir(parents=True)

    def write(self, content: Any) -> str:
        """Update the key as the kubelet does: a new folder, then `..data` swapped to it.

        Returns the sha256 of the content, which the server reports once it has read it.
        """
        self._updates += 1
        fresh = self.folder / f"..2026_11_29_{self._updates:06d}"
        fresh.mkdir()
        text = content if isinstance(content, str) else json.dumps(content)  # JSON is YAML
        (fresh / "overrides.yaml").write_text(text)
        old = (self.folder / "..data").resolve() if (self.folder / "..data").exists() else None
        (self.folder / "..data_tmp").symlink_to(fresh.name)
        os.replace(self.folder / "..data_tmp", self.folder / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/overrides.yaml")
        if old is not None:
            (old / "overrides.yaml").unlink()
            old.rmdir()
        return hashlib.sha256(text.encode()).hexdigest()


def primary(version: str | None) -> dict[str, Any]:
    return {"models": {"linear": {"primary": version}}} if version else {}


def serving(server: Server, version: str, count: int = 10) -> bool:
    return set(answers(server, count)) == {(200, version)}


def overrides_of(server: Server) -> dict[str, Any]:
    listing: dict[str, Any] = httpx.get(server.url + "/models").json()
    return listing["plan"]["overrides"]


def applied(server: Server, digest: str) -> bool:
    """The server has read the file with this content, and every worker serves what it made
    (a version it declares may still be arriving)."""
    plan = httpx.get(server.url + "/models").json()["plan"]
    return bool(plan["overrides"]["digest"] == digest and plan["behind"] == [])


def settled(server: Server, digest: str) -> bool:
    """The content is applied, and every version it declares has arrived (or failed)."""
    listing = httpx.get(server.url + "/models").json()
    plan = listing["plan"]
    arriving = [v for m in listing["models"] for v in m["versions"] if v["state"] == "arriving"]
    return bool(plan["overrides"]["digest"] == digest and plan["behind"] == [] and not arriving)


def events(server: Server, name: str) -> list[dict[str, Any]]:
    return [r for r in server.log_lines() if r["event"] == name]


def test_the_overrides_file_sets_the_primary_at_start_and_on_every_change(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write(primary("v2"))
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert serving(server, "v2", 20)
        assert httpx.get(server.url + "/readyz").json()["models"]["linear"]["version"] == "v2"
        assert overrides_of(server)["problems"] == {}
        removed = volume.write(primary(None))  # the value removed: back to models.yaml's
        wait_for(lambda: settled(server, removed))
        assert serving(server, "v1", 20)
        again = volume.write(primary("v2"))
        wait_for(lambda: settled(server, again))
        assert serving(server, "v2", 20)
        applied = events(server, "overrides_applied")
        assert [r["primaries"]["linear"] for r in applied] == ["v2", "v1", "v2"]


def test_workers_and_servers_started_later_serve_what_the_file_says(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write(primary(None))
    env = {"SERVING_RUNTIME_OVERRIDES": str(volume.path)}
    with running(fresh_service, workers=2, env=env) as server:
        assert serving(server, "v1")
        changed = volume.write(primary("v2"))
        wait_for(lambda: settled(server, changed))
        assert serving(server, "v2")
        wait_for(lambda: len(workers(server)) == 2)
        before = workers(server)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(workers(server) - before) == 2)
        assert serving(server, "v2", 20)
        with running(fresh_service, workers=1, env=env) as later:  # another pod, started later
            assert serving(later, "v2", 10)


def test_an_override_that_cannot_apply_is_refused_and_reported_and_nothing_changes(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write(primary("v2"))
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert serving(server, "v2")
        unknown_model = {"models": {"linear": {"primary": "v2"}, "nope": {"primary": "v1"}}}
        refusals = [
            (primary("v9"), "linear", "has no version 'v9'"),
            (primary("bad"), "linear", "failed its self-tests"),
            (unknown_model, "nope", "unknown model 'nope'"),
            ("models: [not, a, mapping", "", "not valid YAML"),
            ({"models": {"linear": {"primary": "v1", "weight": 3}}}, "", "unknown key"),
        ]
        for content, model_id, why in refusals:
            digest = volume.write(content)
            wait_for(lambda d=digest: settled(server, d))
            assert why in overrides_of(server)["problems"][model_id]
            assert metric(server, "lls_overrides_refused", model_id=model_id) == 1
            assert serving(server, "v2", 10)
        refused = events(server, "overrides_refused")
        assert {r["model_id"] for r in refused} == {"linear", "nope", ""}
        good = volume.write(primary("v1"))  # a good file again applies, and clears the reports
        wait_for(lambda: settled(server, good))
        assert serving(server, "v1")
        assert overrides_of(server)["problems"] == {}
        assert metric(server, "lls_overrides_refused") == 0


def test_a_bad_override_at_start_serves_models_yaml_and_says_why(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write(primary("bad"))
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert serving(server, "v1")
        assert "failed its self-tests" in overrides_of(server)["problems"]["linear"]
        assert states(server)["bad"]["state"] == "failed"


def test_a_missing_file_serves_models_yaml_and_is_applied_once_it_appears(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert serving(server, "v1")
        assert overrides_of(server)["digest"] is None
        assert events(server, "overrides_missing")
        appeared = volume.write(primary("v2"))
        wait_for(lambda: settled(server, appeared))
        assert serving(server, "v2")


def test_a_run_time_rollback_lasts_until_the_file_changes(
    fresh_service: Path, tmp_path: Path
) -> None:
    volume = ConfigMapVolume(tmp_path / "overrides")
    volume.write(primary("v2"))
    with running(fresh_service, "--overrides", str(volume.path), workers=2) as server:
        assert server.post("/admin/models/linear/rollback", None).json()["primary"] == "v1"
        assert serving(server, "v1")
        # Any change of the file applies all of it: every pod serves what the chart says.
        both = volume.write({"models": {"linear": {"primary": "v2"}, "echo": {"primary": "1"}}})
        wait_for(lambda: settled(server, both))
        assert serving(server, "v2")
        listing = httpx.get(server.url + "/models").json()["models"]
        echo = next(m for m in listing if m["model_id"] == "echo")
        assert echo["override"] == {"primary": "1", "refused": None}


def test_check_validates_an_overrides_file_against_models_yaml(
    fresh_service: Path, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(json.dumps(primary("v2")))
    bad.write_text(json.dumps({"models": {"linear": {"primary": "v9"}, "nope": {}}}))
    command = [sys.executable, "-m", "serving_runtime", "check", "--config", str(fresh_service)]
    ok = subprocess.run(
        [*command, "--overrides", str(good)], check=False, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        [*command, "--overrides", str(bad)], check=False, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "linear: model 'linear' has no version 'v9'" in refused.stderr
    assert "nope: unknown model 'nope'" in refused.stderr
