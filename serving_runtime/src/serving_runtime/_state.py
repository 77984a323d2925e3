"""The server's state folder, and the sweep of those whose server was killed.

Each server keeps its plan, its processes' statuses, its metrics files and its sockets in a
folder of its own under the temporary directory (or `/tmp`, when a socket's path under the
temporary directory would be too long for the kernel), removed when it stops. A server killed
outright (SIGKILL, the machine's OOM killer) cannot remove it: the next server to start on the
machine does, once the folder's `server.json` names a process that is gone.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import orjson

PREFIX = "lls-serving-"
_OWNER = "server.json"
LONGEST_SOCKET = 107  # bytes of a socket's path: sun_path's size, less its terminating zero
OFFLOAD_SOCKET = "offload.sock"  # the longest name of a socket the folder holds
_RANDOM = 8  # characters `tempfile.mkdtemp` adds to the prefix


def make_state_dir() -> Path:
    """A new state folder for this process's server, after removing those of dead servers."""
    parent = socket_base(Path(PREFIX + "x" * _RANDOM) / OFFLOAD_SOCKET)
    remove_orphans(parent)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    pid = os.getpid()
    (folder / _OWNER).write_bytes(orjson.dumps({"pid": pid, "started": process_started(pid)}))
    return folder


def socket_base(relative: Path) -> Path:
    """Where a socket at `relative` under the temporary directory goes: the temporary directory,
    or `/tmp` when the path there would pass the kernel's limit on a socket's (a deep $TMPDIR)."""
    base = Path(tempfile.gettempdir())
    return base if fits_socket(base / relative) else Path("/tmp")


def fits_socket(path: Path) -> bool:
    """Whether the kernel takes `path` as a unix socket's."""
    return len(os.fsencode(path)) <= LONGEST_SOCKET


def remove_orphans(parent: Path) -> list[Path]:
    """Remove the state folders in `parent` that this user's dead servers left; the removed.

    A folder of another user, one with no `server.json` (an older runtime's, or one being
    made right now), and anything that is not a folder itself (a link) are left alone.
    """
    removed = []
    for folder in parent.glob(PREFIX + "*"):
        try:
            found = os.lstat(folder)
            if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
                continue
            owner = orjson.loads((folder / _OWNER).read_bytes())
            pid, started = int(owner["pid"]), owner["started"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if process_started(pid) != started:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_started(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])
