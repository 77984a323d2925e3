"""The background process for shadows and records, and the supervisor that keeps it alive.

The server forks it before its workers (`start_process`). It follows the shared plan like a
worker (`_sync.py`: a thread of its own takes in every change, loading what it needs), runs at
the lowest CPU priority so that under load it is the shadow that waits, not the client, reads
the workers' jobs from a Unix socket (`_offload.py`), runs every shadow version on the
primary's inputs, compares the outputs, and writes records to the sink in batches.

The process that forked it keeps it alive (`OffloadSupervisor`): a dead one is forked again,
from the same loaded models, after a backoff; the workers' threads reconnect by themselves.
Under `serve --no-preload` the server loads no model: each process loads its own once forked.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._logs import JsonLog
from ._metrics import Metrics, forget_worker
from ._model import ServedModel, close, to_json_value
from ._offload import FRAME, Job, Offload
from ._recording import RecordSink, make_sink
from ._registry import ModelEntry
from ._sync import Follower

if TYPE_CHECKING:
    from .http import App

_BATCH = 256
_FLUSH_SECONDS = 0.5
_RESTART_FIRST = 0.5  # seconds before a dead process is forked again; doubles while it keeps dying
_RESTART_MAX = 30.0
_RESTART_STEADY = 60.0  # a process that lived this long is restarted after the first delay again
_STOP_SECONDS = 3.0  # a stopping server waits this long for the last records, then kills


class OffloadSupervisor:
    """Keeps the background process alive, from the process that forked it.

    The server calls `poll` from its main loop (not from a thread, so forking is as safe as
    forking a worker): a dead process is reaped, then forked again once its backoff is over.
    `in_child` runs first in each new process, to let go of what the server holds there.
    """

    def __init__(self, source: Callable[[], App], metrics: Metrics, log: JsonLog) -> None:
        self._source = source  # the app whose models it uses: loaded already, or once forked
        self._metrics = metrics
        self._log = log
        self.in_child: Callable[[], None] = lambda: None
        self.exited: Callable[[int], None] = forget_worker  # told each dead process's pid
        self.pid = 0
        self.stopping = False
        self._started = 0.0
        self._delay = _RESTART_FIRST
        self._restart_at = 0.0
        self._death: dict[str, Any] | None = None  # how the last process ended, until replaced

    def start(self) -> None:
        """Fork the process."""
        self.pid = start_process(self._source, self._log, self.in_child)
        self._started = time.monotonic()

    def reap(self) -> None:
        """Notice the process's death (before anything else waits for any child)."""
        if not self.pid:
            return
        status: int | None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by another waitpid of the server: status lost
            pid, status = self.pid, None
        if not pid:
            return
        now = time.monotonic()
        if now - self._started >= _RESTART_STEADY:
            self._delay = _RESTART_FIRST
        self._restart_at = now + self._delay
        self._delay = min(self._delay * 2, _RESTART_MAX)
        self._death = {"previous_pid": pid, **_ending(status)}
        self.pid = 0
        self.exited(pid)

    def poll(self) -> None:
        """Reap a dead process, and fork a new one when its backoff is over."""
        self.reap()
        if self.pid or self.stopping or self._death is None:
            return
        if time.monotonic() < self._restart_at:
            return
        death, self._death = self._death, None
        self.start()
        self._metrics.offload_restarted()
        self._log.event("warning", "offload_restarted", pid=self.pid, **death)

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        """Stop for good: SIGTERM (the last records are written), SIGKILL after `timeout`."""
        self.stopping = True
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid and time.monotonic() < deadline:
            time.sleep(0.02)
            self.reap()
        if self.pid:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0


def _ending(status: int | None) -> dict[str, Any]:
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return {"signal": signal.Signals(number).name}
        except ValueError:
            return {"signal": str(number)}
    if status is not None and os.WIFEXITED(status):
        return {"exit_status": os.WEXITSTATUS(status)}
    return {"exit_status": None}


def start_process(
    source: Callable[[], App], log: JsonLog, in_child: Callable[[], None] = lambda: None
) -> int:
    """Fork the background process, which runs with `source()`'s models; returns its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        in_child()
        app = source()
        offload = app.dataplane.offload
        assert isinstance(offload, Offload)  # a supervisor is made only for an app with one
        _Process(app.dataplane.follower, offload, app.metrics, app.log, parent).run()
    except BaseException:
        code = 1
        import traceback

        log.event("error", "offload_crashed", traceback=traceback.format_exc())
    finally:
        os._exit(code)


class _Process:
    """The background process's loop: read jobs, shadow and record them."""

    def __init__(
        self, follower: Follower, offload: Offload, metrics: Metrics, log: JsonLog, parent: int
    ) -> None:
        self.follower = follower
        self.recording = offload.recording
        self.metrics = metrics
        self.log = log
        self.parent = parent
        self.socket_path = offload.socket_path
        self.batch: list[dict[str, Any]] = []
        self.sink: RecordSink | None = None
        self.stopping = False
        self._last_complaint = 0.0

    def run(self) -> None:
        with contextlib.suppress(OSError):
            os.nice(19)  # the clients' requests come first
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        # Listening first: a worker's jobs wait in the socket until this process reads them.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.socket_path)
        server.listen(64)
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytearray] = {}
        self.follower.role = "offload"  # follows the plan, but no change waits for it
        self.follower.ensure_running()
        if self.recording is not None:
            self.sink = make_sink(self.recording, self.follower.registry.root)
        self.log.event("info", "offload_started", socket=self.socket_path)
        flushed = time.monotonic()
        while not self.stopping and os.getppid() == self.parent:
            for key, _ in selector.select(timeout=_FLUSH_SECONDS):
                if key.data is None:  # a worker connects
                    conn, _ = server.accept()
                    selector.register(conn, selectors.EVENT_READ, True)
                    buffers[conn] = bytearray()
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                data = conn.recv(1 << 20)
                if not data:
                    selector.unregister(conn)
                    conn.close()
                    del buffers[conn]
                    continue
                buffer = buffers[conn]
                buffer += data
                # Jobs are handled with the newest plan (a shadow loaded a moment ago): here,
                # unlike in a worker, waiting for a change to load delays no client.
                self.follower.catch_up()
                while len(buffer) >= FRAME.size:
                    (size,) = FRAME.unpack_from(buffer)
                    if len(buffer) < FRAME.size + size:
                        break
                    job = Job.decode(buffer[FRAME.size : FRAME.size + size])
                    del buffer[: FRAME.size + size]
                    self.handle(job)
            if self.batch and (
                len(self.batch) >= _BATCH or time.monotonic() - flushed >= _FLUSH_SECONDS
            ):
                self.flush()
                flushed = time.monotonic()
        self.flush()
        if self.sink is not None:
            self.sink.close()

    def handle(self, job: Job) -> None:
        entry = self.follower.registry.snapshot.get(job.model_id)
        if entry is None:
            return
        keep_features = self.recording is not None and self.recording.features
        if job.record:
            self.batch.append(self._record(job, job.version, job.output, keep_features))
        if job.shadow:
            for shadow in entry.shadows:
                self.compare(entry, shadow, job, keep_features)

    def compare(
        self, entry: ModelEntry, shadow: ServedModel, job: Job, keep_features: bool
    ) -> None:
        started = time.perf_counter()
        try:
            output = to_json_value(shadow.run(job.inputs))
        except Exception as exc:
            self.metrics.shadow(entry.model_id, job.version, shadow.version, "error")
            self._complain("shadow_failed", version=shadow.version, error=repr(exc))
            return
        primary = entry.versions.get(job.version)
        instance = primary.model.instance if primary and primary.model else None
        tolerance = float(getattr(instance, "tolerance", 1e-6))
        agree = close(output, job.output, tolerance)
        self.metrics.shadow(
            entry.model_id, job.version, shadow.version, "agree" if agree else "disagree"
        )
        if job.record:
            record = self._record(job, shadow.version, output, keep_features)
            record.update(
                kind="shadow",
                primary_version=job.version,
                agree=agree,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            self.batch.append(record)

    @staticmethod
    def _record(job: Job, version: str, output: Any, features: bool) -> dict[str, Any]:
        record = {
            "ts": job.ts,
            "kind": "primary",
            "request_id": job.request_id,
            "model_id": job.model_id,
            "version": version,
            "output": output,
            "latency_ms": job.latency_ms,
        }
        if features:
            record["features"] = job.inputs
        return record

    def flush(self) -> None:
        if not self.batch or self.sink is None:
            self.batch.clear()
            return
        batch, self.batch = self.batch, []
        try:
            self.sink.write(batch)
        except Exception as exc:
            self.metrics.dropped("record", "sink_error", len(batch))
            self._complain("records_dropped", count=len(batch), error=repr(exc))
        else:
            self.metrics.records_written(len(batch))

    def _complain(self, event: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= 10.0:  # one line per 10 s, not one per request
            self._last_complaint = now
            self.log.event("warning", event, **fields)
