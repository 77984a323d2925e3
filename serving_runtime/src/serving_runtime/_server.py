"""The prefork server: Gunicorn, with the models loaded once before the workers fork.

Each worker process runs uvicorn over the runtime's ASGI app (see `http/_worker.py`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from ._admin_socket import claim, release
from ._errors import ServingRuntimeError
from ._settings import HttpSettings, ServerSettings
from ._state import make_state_dir

if TYPE_CHECKING:
    from ._background import OffloadSupervisor
    from ._replace import Replacements

# Inference libraries start one thread per core by default; with one worker per core that
# oversubscribes the CPU, and an OpenMP pool started before fork can hang the workers.
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _Arbiter(Arbiter):  # type: ignore[misc]
    """Gunicorn's master, also keeping the offload process alive until the server stops."""

    def __init__(
        self, app: Any, offload: OffloadSupervisor | None, replacements: Replacements | None
    ) -> None:
        super().__init__(app)
        self.offload = offload
        self.replacements = replacements
        if offload is not None:
            offload.in_child = self._in_offload_child

    def spawn_worker(self) -> int:
        # A new worker runs with the master's signal handlers until it installs its own: a
        # SIGTERM then would be lost, and the worker serve on until killed. Blocked across the
        # fork, stop signals wait in the worker until its own handlers are in.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = int(super().spawn_worker())
        except SystemExit as stopped:  # in the worker, once it has stopped serving
            _leave_worker(stopped.code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # the master, after the fork
        return pid

    def reap_workers(self) -> None:
        if self.offload is not None:  # first: Gunicorn's waitpid(-1) would take its status
            self.offload.reap()
        super().reap_workers()

    def manage_workers(self) -> None:
        if self.replacements is not None:
            self.replacements.step(self)
        super().manage_workers()
        if self.offload is not None:
            self.offload.poll()

    def stop(self, graceful: bool = True) -> None:
        if self.offload is not None:
            self.offload.stopping = True
        super().stop(graceful)
        if self.offload is not None:  # after the workers, so their last jobs are handled
            self.offload.stop()

    def _in_offload_child(self) -> None:
        # A process forked from the running master must not keep the listening sockets open (a
        # stopping worker closes its copy to refuse new connections), nor the workers' files,
        # nor the master's signal handlers.
        for listener in self.LISTENERS:
            listener.close()
        for worker in self.WORKERS.values():
            worker.tmp.close()
        for number in (*self.SIGNALS, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)


def _leave_worker(code: object) -> NoReturn:
    """End a forked worker as multiprocessing ends its forked children: output flushed, then
    `os._exit`, without the exit handlers that native libraries register with the C runtime.

    Some of those (onnxruntime's) wait on threads that only the process the worker was forked
    from had: run in the worker, they hang it until the master kills it at the graceful timeout,
    and forever if the master is gone.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code is None:
        os._exit(0)
    os._exit(code if isinstance(code, int) else 1)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        load: Any,
        options: dict[str, Any],
        offload: OffloadSupervisor | None,
        replacements: Replacements | None,
    ) -> None:
        self._load = load
        self._options = options
        self._offload = offload
        self._replacements = replacements
        super().__init__()

    def run(self) -> None:
        try:
            _Arbiter(self, self._offload, self._replacements).run()
        except RuntimeError as exc:  # as Gunicorn's own `run`: a message, not a traceback
            raise ServingRuntimeError(str(exc)) from None

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # Newer Gunicorn opens a control socket under $HOME: nothing here uses it, and
            # the container's root filesystem is read-only.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        return self._load()


def _start_offload(app: Any, load: Any) -> OffloadSupervisor | None:
    """The background process for shadows and records, forked while nothing else runs.

    Without `app` (--no-preload), the server loads no model: the process loads its own.
    """
    from ._background import OffloadSupervisor

    if app is None:
        from ._logs import JsonLog
        from ._metrics import Metrics

        # Only to count and log its restarts here; it has the models' metrics of its own.
        supervisor = OffloadSupervisor(load, Metrics(dict), JsonLog())
    elif app.dataplane.offload is None:
        return None
    else:
        supervisor = OffloadSupervisor(lambda: app, app.metrics, app.log)
    supervisor.start()
    return supervisor


def _post_worker_init(worker: Any, *, replaced_to_load: bool = False) -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # its own handlers are in
    # Before its first connection, a worker (one forked later too) serves what the others
    # serve: the shared plan, loaded here, at the lowest CPU priority (it serves nothing yet).
    # It tells the master it is alive meanwhile.
    dataplane = getattr(worker.wsgi, "dataplane", None)
    if dataplane is None:
        return
    done = threading.Event()

    def beat() -> None:
        while not done.wait(max(worker.timeout / 4, 0.5)):
            worker.notify()

    threading.Thread(target=beat, name="lls-boot-heartbeat", daemon=True).start()
    try:
        dataplane.follower.ensure_running(idle=True)
        dataplane.sync_now()
    finally:
        done.set()
    if replaced_to_load:  # from now on, a version to load means a new worker (`_replace.py`)
        dataplane.follower.replaced_to_load = worker.cfg.workers


def serve(config_path: Path, server: ServerSettings, http: HttpSettings) -> None:
    """Load the models, then serve them until SIGTERM (in-flight requests finish first)."""
    admin_socket = Path(http.admin_socket) if http.admin_socket else None
    if admin_socket is not None:
        claim(admin_socket)  # before the models load: a server already on it stops this one
    state_dir = make_state_dir()
    owner = os.getpid()
    try:
        _serve(config_path, server, http, state_dir)
    finally:
        # Gunicorn's workers leave its loop by SystemExit too, through here: only the process
        # that made the folder (the server, once its workers are gone) removes it.
        if os.getpid() == owner:
            shutil.rmtree(state_dir, ignore_errors=True)
            if admin_socket is not None:
                release(admin_socket)


def _serve(config_path: Path, server: ServerSettings, http: HttpSettings, state_dir: Path) -> None:
    metrics_dir = state_dir / "metrics"
    metrics_dir.mkdir()
    # Before anything imports prometheus_client: counters are shared by every worker.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    for name in _ONE_THREAD:
        os.environ.setdefault(name, "1")
    from ._app import create_app
    from .http._worker import RuntimeWorker

    def load() -> Any:
        return create_app(
            config_path,
            http,
            state_dir,
            threads=server.threads,
            inline_predict_ms=server.inline_predict_ms,
        )

    from ._metrics import forget_worker
    from ._sync import PlanStore

    store = PlanStore(state_dir)

    def exited(pid: int) -> None:
        """A process of the server (a worker, the background process) is gone: its files go,
        its counts kept (`forget_worker`)."""
        forget_worker(pid)
        store.forget(pid)

    app = load() if server.preload else None
    offload = _start_offload(app, load)
    if offload is not None:
        offload.exited = exited
    replacements = None
    if not server.load_in_place:
        from ._logs import JsonLog
        from ._replace import Replacements

        replacements = Replacements(store, JsonLog())

    def child_exit(server: Any, worker: Any) -> None:
        exited(worker.pid)

    def post_worker_init(worker: Any) -> None:
        _post_worker_init(worker, replaced_to_load=replacements is not None)

    # What is loaded stays out of the collector's reach: the workers forked next share its
    # pages, which a collection would otherwise write to (and so copy) in each of them.
    gc.freeze()
    if server.server == "granian":  # granian's own master runs the loop: no restarts there
        _serve_granian(app if app is not None else load(), server)
        return
    binds = list(server.bind)
    if http.admin_socket:
        binds.append(f"unix:{http.admin_socket}")
    options = {
        "bind": binds,
        "umask": 0o177,  # the admin socket (and the workers' files) are this user's alone
        "workers": server.workers,
        "worker_class": RuntimeWorker,
        "timeout": server.timeout,
        "graceful_timeout": server.graceful_timeout,
        "keepalive": server.keepalive,
        "max_requests": server.max_requests,
        "max_requests_jitter": server.max_requests // 10,
        "preload_app": server.preload,
        "worker_tmp_dir": str(state_dir),
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "proc_name": f"serving-runtime:{config_path.parent.name}",
        "accesslog": None,
        "logconfig_dict": _LOGGING,
    }
    _Gunicorn((lambda: app) if app is not None else load, options, offload, replacements).run()


def _serve_granian(app: Any, server: ServerSettings) -> None:
    # granian forks its workers on Linux: handing it the app built here shares the models.
    try:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces
    except ImportError:
        raise ServingRuntimeError(
            "--server granian needs granian: install lls-serving-runtime[granian]"
        ) from None

    (bind,) = server.bind
    host, _, port = bind.rpartition(":")
    granian = Granian(
        "serving_runtime:create_app",  # named in granian's logs only; the loader gives the app
        address=host.strip("[]") or "0.0.0.0",
        port=int(port),
        interface=Interfaces.ASGI,
        workers=server.workers,
        http=HTTPModes.http1,
        websockets=False,
        respawn_failed_workers=True,
        workers_kill_timeout=server.graceful_timeout,
        log_dictconfig=_GRANIAN_LOGGING,
    )
    granian.serve(target_loader=lambda _target: app)


_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "serving_runtime._logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": "WARNING", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        "uvicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}

_GRANIAN_LOGGING: dict[str, Any] = {
    **_LOGGING,
    "loggers": {"_granian": {"level": "INFO", "handlers": ["stdout"], "propagate": False}},
}
