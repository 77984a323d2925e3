"""The admin socket: where admin calls reach the server without a token, and how to call it.

Admin calls change what every worker serves, and loading a version runs code: they are not
authorised by a peer's address (a proxy on the same host relays strangers from 127.0.0.1).
They come through a Unix socket that is never exposed: the file is its owner's only (0600, in a
folder of the owner's own when it is the default one), and the kernel's word on the peer's
user is checked too. Over TCP, only a bearer token (`--admin-token`) authorises them.

By default `serve` and `serving-runtime admin` both place it after the port of the server's
first `--bind` ($SERVING_RUNTIME_BIND), so inside a pod, where both read the chart's
environment, `kubectl exec ... -- serving-runtime admin ...` finds it without a flag.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path

from ._errors import ServingRuntimeError
from ._state import fits_socket, socket_base

DEFAULT_BIND = "127.0.0.1:8080"
_NAME = "admin.sock"


def default_socket(bind: str) -> Path:
    """The admin socket of a server whose first bind is `bind` (`HOST:PORT`).

    In a folder of its own, which the server makes and removes: servers that start and stop
    side by side never remove a folder another one is about to bind in.
    """
    port = bind.rpartition(":")[2]
    if not port.isdigit():  # a unix: bind; a name that cannot meet a port's
        port = hashlib.sha256(bind.encode()).hexdigest()[:12]
    relative = Path(f"serving-runtime-{os.getuid()}-{port}") / _NAME
    return socket_base(relative) / relative


def _bases() -> list[Path]:
    # Where `default_socket` may put the folder (`socket_base`).
    return [Path(tempfile.gettempdir()), Path("/tmp")]


def _is_default(path: Path) -> bool:
    folder = path.parent
    return (
        path.name == _NAME
        and folder.parent in _bases()
        and folder.name.startswith(f"serving-runtime-{os.getuid()}-")
    )


def claim(path: Path) -> None:
    """Make `path` ready for the server to bind: its folder there, no live server on it.

    The default folder is made the owner's alone (0700), and refused if it is anyone else's or
    open to others: a socket there is reachable by its folder's users only. A socket file left
    by a server that was killed is removed; one a running server answers on is refused.
    """
    if _is_default(path):
        _own_folder(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not fits_socket(path):
        raise ServingRuntimeError(f"--admin-socket {path}: the path is too long for a socket")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServingRuntimeError(f"--admin-socket {path}: a file that is not a socket is there")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # nothing listens: left by a server that did not stop cleanly
            path.unlink(missing_ok=True)
            return
    raise ServingRuntimeError(
        f"--admin-socket {path} is in use by another running server: stop it, or give this "
        "one another --admin-socket"
    )


def _own_folder(folder: Path) -> None:
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ServingRuntimeError(f"{folder} is not a folder of this user's: pass --admin-socket")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ServingRuntimeError(f"{folder} is open to other users: pass --admin-socket")


def release(path: Path) -> None:
    """After the server stopped: the socket goes, and its default folder."""
    path.unlink(missing_ok=True)
    if _is_default(path):
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def peer_may_administer(sock: socket.socket) -> bool:
    """Whether the process at the other end of a Unix socket runs as this user (or root)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in {os.geteuid(), 0}


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 to a server's admin socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            why = "no server listens there" if exc.errno in _GONE else exc.strerror
            raise ServingRuntimeError(
                f"cannot reach the admin socket {self.path} ({why}): is the server running "
                "on this port (--socket, or $SERVING_RUNTIME_BIND, names another)?"
            ) from None
        self.sock = sock


_GONE = {errno.ENOENT, errno.ECONNREFUSED}
