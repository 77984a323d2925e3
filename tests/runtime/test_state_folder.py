"""The server's state folder: removed when it stops, and by the next server when it was killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving_runtime import ServingRuntimeError, create_app
from serving_runtime._state import LONGEST_SOCKET, PREFIX, process_started, remove_orphans

from .conftest import build_service, running, wait_for
from .test_offload import ECHO_RECORDED, offload_pids, parent_of, state_folder_of


def state_folders(temporary: Path) -> set[Path]:
    return set(temporary.glob(PREFIX + "*"))


def owner(folder: Path) -> int:
    return int(orjson.loads((folder / "server.json").read_bytes())["pid"])


def test_a_killed_servers_folder_is_removed_by_the_next_server(
    fresh_service: Path, short_tmp: Path
) -> None:
    temporary = short_tmp
    env = {"TMPDIR": str(temporary)}
    with running(fresh_service, env=env) as killed:
        (folder,) = state_folders(temporary)
        master = owner(folder)
        assert (folder / "plan.json").exists()
        os.killpg(master, signal.SIGKILL)  # the server, its workers, its offload process
        wait_for(lambda: process_started(master) is None)
        assert killed.log.exists()
    assert state_folders(temporary) == {folder}  # nothing could remove it
    with running(fresh_service, env=env):
        (new,) = state_folders(temporary)
        assert new != folder
        assert owner(new) != master
    assert state_folders(temporary) == set()  # a clean stop removes its own


def test_only_folders_of_dead_servers_of_this_user_go(tmp_path: Path) -> None:
    alive = tmp_path / f"{PREFIX}alive"
    dead = tmp_path / f"{PREFIX}dead"
    older = tmp_path / f"{PREFIX}older"  # an older runtime's, or one being made: no server.json
    elsewhere = tmp_path / "elsewhere"
    for folder in (alive, dead, older, elsewhere):
        folder.mkdir()
    me = os.getpid()
    (alive / "server.json").write_bytes(orjson.dumps({"pid": me, "started": process_started(me)}))
    (dead / "server.json").write_bytes(orjson.dumps({"pid": me, "started": -1}))  # pid reused
    (elsewhere / "server.json").write_bytes((dead / "server.json").read_bytes())
    link = tmp_path / f"{PREFIX}link"
    link.symlink_to(dead)
    assert remove_orphans(tmp_path) == [dead]
    assert {p.name for p in tmp_path.iterdir()} == {alive.name, older.name, "elsewhere", link.name}


def test_workers_replaced_over_a_pods_life_leave_no_files_behind_and_lose_no_count(
    fresh_service: Path, short_tmp: Path
) -> None:
    # Each process of a server counts in files of its own and says which plan it serves in
    # another: a pod whose workers are replaced, here every 20 or so requests, must not keep them
    # all, and its counters must still count every request.
    temporary = short_tmp
    args = ("--max-requests", "20")
    with running(fresh_service, *args, env={"TMPDIR": str(temporary)}) as server:
        (folder,) = state_folders(temporary)

        def booted() -> int:
            return sum("Booting worker" in r.get("message", "") for r in server.log_lines())

        # A worker stops once past its 20 to 22 requests, as uvicorn sees it every 0.1 s:
        # so until 10 workers have come, however fast the requests.
        sent = 0
        with httpx.Client(timeout=30) as client:  # keep-alive: a replaced worker closes it
            while sent % 20 or booted() < 10:
                assert sent < 20_000, "workers were not replaced"
                body = {"model_id": "linear", "features": [sent, 0]}
                assert client.post(server.url + "/infer", json=body).status_code == 200
                sent += 1

        def pids(names: list[str]) -> set[int]:
            return {int(n.rsplit("_", 1)[-1].split(".")[0]) for n in names}

        def only_live_processes_have_files() -> bool:
            metrics = [p.name for p in (folder / "metrics").glob("*.db")]
            numbered = [n for n in metrics if not n.endswith("_archive.db")]
            statuses = [p.name for p in (folder / "processes").glob("*.json")]
            live = {pid for pid in pids(numbered + statuses) if process_started(pid) is not None}
            return pids(numbered) <= live and pids(statuses) <= live

        wait_for(only_live_processes_have_files, what="files of exited workers are left")
        assert len(list((folder / "metrics").glob("*.db"))) <= 2 * 3 + 2  # 2 workers, 1 offload
        scraped = httpx.get(server.url + "/metrics").text
    counted = {
        s.name: s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.labels.get("model_id") == "linear" and s.labels.get("version") == "v1"
    }
    assert counted["lls_requests_total"] == sent
    assert counted["lls_request_duration_seconds_count"] == sent


def deep_folder(parent: Path) -> Path:
    """A folder under `parent` deep enough that a state folder's sockets in it pass the kernel's
    limit on a socket's path, as a long home or build directory's temporary folder may."""
    deep = parent / ("d" * (LONGEST_SOCKET - len(str(parent)) - 10))  # 10 short of the limit
    deep.mkdir(parents=True)
    return deep


def test_under_a_deep_temporary_directory_the_state_folder_goes_to_tmp(tmp_path: Path) -> None:
    # Its background process listens on a unix socket in the state folder: a folder under a
    # deep $TMPDIR would make its path too long to bind, and the process would never start.
    config = build_service(tmp_path, ECHO_RECORDED)
    temporary = deep_folder(tmp_path / "tmp")
    with running(config, env={"TMPDIR": str(temporary)}) as server:
        wait_for(lambda: offload_pids(server), what="the background process did not start")
        folder = state_folder_of(server)
        assert folder.parent == Path("/tmp")
        assert owner(folder) == parent_of(offload_pids(server)[0])  # the server's master
        assert state_folders(temporary) == set()
        response = httpx.post(server.url + "/infer", json={"model_id": "echo", "features": "x"})
        assert response.json()["output"] == "x"
    assert not folder.exists()  # a clean stop removes it, in /tmp too


def test_a_state_folder_whose_sockets_cannot_be_bound_is_refused_up_front(
    fresh_service: Path, tmp_path: Path
) -> None:
    deep = deep_folder(tmp_path / "state")
    with pytest.raises(ServingRuntimeError, match="too long for the kernel"):
        create_app(fresh_service, state_dir=deep)
