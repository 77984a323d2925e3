"""The server's state folder: removed when it stops, and by the next server when it was killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson

from serving_runtime._state import PREFIX, process_started, remove_orphans

from .conftest import running
from .test_offload import wait_for


def state_folders(temporary: Path) -> set[Path]:
    return set(temporary.glob(PREFIX + "*"))


def owner(folder: Path) -> int:
    return int(orjson.loads((folder / "server.json").read_bytes())["pid"])


def test_a_killed_servers_folder_is_removed_by_the_next_server(fresh_service: Path) -> None:
    temporary = fresh_service.parent / "tmp"
    temporary.mkdir()
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
