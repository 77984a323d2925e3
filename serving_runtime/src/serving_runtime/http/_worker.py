"""The Gunicorn worker: uvicorn (uvloop, httptools) serving the runtime's ASGI app.

Gunicorn's master keeps what it is good at (the models loaded before fork, a dead worker
replaced, `--max-requests`, a graceful SIGTERM); `uvicorn-worker`'s worker runs uvicorn in
each process. On top of it: the protocol with the runtime's limits (`_protocol.py`), a
heartbeat withheld while a predict is stuck past `--timeout` (predicts run on threads, so the
event loop alone would go on telling the master all is well), a share of the kept-alive
clients handed to a worker that joins the pod (`_Rotation`), and, when stopping, the
connections already queued on the listening socket taken and answered rather than reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.config import Config
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from serving_runtime._settings import HttpSettings

from ._protocol import LimitedProtocol, Limits, protocol_for

_UNLIMITED = 1 << 30
# What uvicorn imports in each worker as it starts: imported here, before fork, so that the
# workers share these modules' pages instead of each holding its own copy.
for _module in ("uvloop", "uvicorn.loops.uvloop", "uvicorn.lifespan.on", "concurrent.futures"):
    importlib.import_module(_module)


class RuntimeWorker(UvicornWorker):  # type: ignore[misc]
    """Gunicorn worker class of `serving-runtime serve`."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (uvicorn-worker's own name and type)
        "loop": "uvloop",
        "http": "httptools",
        "ws": "none",
        "lifespan": "on",
        "proxy_headers": False,  # the peer's address is the peer's, in logs
        "server_header": False,
    }

    async def _serve(self) -> None:
        app = self.wsgi  # Gunicorn's name for the loaded app, here an ASGI one
        settings = getattr(app, "settings", None)
        if not isinstance(settings, HttpSettings):
            settings = HttpSettings()
        cfg = self.cfg
        limits = Limits(
            settings.body_timeout,
            cfg.limit_request_line or _UNLIMITED,
            cfg.limit_request_fields or _UNLIMITED,
            cfg.limit_request_field_size or _UNLIMITED,
        )
        self.config.app = app
        self.config.http = protocol_for(limits, settings.admin_socket)
        self._stuck_logged = 0.0
        server = _Server(self.config, self.sockets)
        dataplane = getattr(app, "dataplane", None)
        if dataplane is not None:
            dataplane.follower.stopping = lambda: server.should_exit
            # uvicorn keeps a task for each request under way, from its headers on.
            tasks = server.server_state.tasks
            dataplane.scheduler.in_flight = lambda: len(tasks)
        if dataplane is not None and cfg.workers > 1:
            server.rotation = _Rotation(dataplane.follower.store.folder / "rotation", cfg.workers)
        self._install_sigquit_handler()
        # uvicorn closes the sockets it serves when it stops, and Gunicorn closes its own
        # listeners as the worker exits: given copies (the same listening sockets), neither
        # closes a descriptor the other already closed, or by then another file's.
        copies = [socket.socket(fileno=os.dup(listener.fileno())) for listener in self.sockets]
        await server.serve(sockets=copies)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    async def callback_notify(self) -> None:
        """Tell the master this worker lives, unless a predict is stuck past --timeout."""
        scheduler = getattr(getattr(self.wsgi, "dataplane", None), "scheduler", None)
        stuck = scheduler.stuck_for() if scheduler is not None else 0.0
        if stuck > self.cfg.timeout:
            now = time.monotonic()
            if now - self._stuck_logged > self.cfg.timeout:
                self._stuck_logged = now
                self.log.error(
                    "A predict has run for %.0f s, past --timeout: letting the master replace "
                    "this worker",
                    stuck,
                )
            return
        self.notify()


class _Rotation:
    """The workers that take the pod's connections, and a share of them for one that joins.

    Persistent clients (the pod's Envoy, a client's pool) stay with the worker that accepted
    them. When a worker is replaced (it crashed, `--max-requests`), its clients reconnect at
    once, before the new one serves: the others take them all, and would keep them, leaving
    the new worker idle and the pod on fewer cores. So a worker that starts serving touches a
    file in the state folder; each other worker, looking every `SECONDS`, tells its share of
    its kept-alive clients to reconnect after their next answer, and the kernel gives some of
    them to the newcomer.
    """

    SECONDS = 0.1  # how often a worker looks for a newcomer: a stat() each time

    def __init__(self, path: Path, workers: int) -> None:
        self.path = path
        self.workers = workers
        self._seen = 0

    def join(self) -> None:
        with contextlib.suppress(OSError):  # the others keep their clients, nothing worse
            self.path.touch()
        self._seen = self._stamp()

    def joined(self) -> bool:
        """Whether a worker joined since this one last looked."""
        before, self._seen = self._seen, self._stamp()
        return self._seen != before

    def _stamp(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:  # none joined yet (or the folder is gone: none will be seen)
            return 0

    def share(self, connections: list[LimitedProtocol]) -> list[LimitedProtocol]:
        """What this worker hands over of its kept-alive `connections`: what the newcomer would
        hold were they spread evenly (none of one)."""
        return connections[1 :: self.workers]


class _Server(Server):
    def __init__(self, config: Config, listeners: list[socket.socket]) -> None:
        super().__init__(config)
        self._listeners = listeners
        self.rotation: _Rotation | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.rotation is not None and self.started:
            self.rotation.join()
            asyncio.get_running_loop().call_later(_Rotation.SECONDS, self._look_for_newcomers)

    def _look_for_newcomers(self) -> None:
        if self.should_exit or self.rotation is None:
            return
        if self.rotation.joined():
            mine = [c for c in self.server_state.connections if isinstance(c, LimitedProtocol)]
            for connection in self.rotation.share(mine):
                connection.hand_over()
        asyncio.get_running_loop().call_later(_Rotation.SECONDS, self._look_for_newcomers)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Connections the kernel already queued for this worker would be reset when the last
        # copy of the listening socket closes: take them, so their requests are answered.
        await self._take_queued()
        await super().shutdown(sockets)

    async def _take_queued(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return made

        taken = []
        for listener in self._listeners:
            listener.setblocking(False)
            while True:
                try:
                    sock, _ = listener.accept()
                except OSError:  # BlockingIOError: none left
                    break
                sock.setblocking(False)
                taken.append(loop.connect_accepted_socket(protocol, sock))
        if taken:
            await asyncio.gather(*taken, return_exceptions=True)
