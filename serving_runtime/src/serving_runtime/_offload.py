"""Work that must never touch the request path: shadow predictions and output recording.

A worker appends each job to a bounded in-memory queue (well under a microsecond); a thread
of the worker ships the queue, framed, over a Unix stream socket to one background process.
When that process falls behind and the queue is full, jobs are dropped and counted, never
waited for. The process runs at the lowest CPU priority, so under load it is the shadow that
waits, not the client. It follows the same plan as the workers, runs every shadow version on
the primary's inputs, compares the outputs, and writes records to the sink in batches.

The process that forked it keeps it alive (`OffloadSupervisor`): a dead one is forked again,
from the same loaded models, after a backoff; the workers' threads reconnect by themselves.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ._config import RecordingConfig
from ._dataplane import DataPlane
from ._logs import JsonLog
from ._metrics import Metrics, forget_worker
from ._model import ServedModel, close, to_json_value
from ._recording import RecordSink, make_sink
from ._registry import ModelEntry

QUEUE_LIMIT = 10_000  # jobs a worker holds for the background process before dropping
_FRAME = struct.Struct("!I")
_BATCH = 256
_FLUSH_SECONDS = 0.5
_RECONNECT_SECONDS = 0.2  # a worker finding no process retries this much later, dropping meanwhile
_RESTART_FIRST = 0.5  # seconds before a dead process is forked again; doubles while it keeps dying
_RESTART_MAX = 30.0
_RESTART_STEADY = 60.0  # a process that lived this long is restarted after the first delay again
_STOP_SECONDS = 3.0  # a stopping server waits this long for the last records, then kills


class Offload:
    """The workers' side: decides per request what to hand off, and hands it off."""

    def __init__(
        self, socket_path: Path, recording: RecordingConfig | None, metrics: Metrics
    ) -> None:
        self.socket_path = str(socket_path)
        self.recording = recording
        self._sample = recording.sample if recording else 0.0
        self._metrics = metrics
        self._pid = 0  # the process whose queue and thread these are
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()

    def after_predict(
        self,
        entry: ModelEntry,
        model: ServedModel,
        inputs: Any,
        output: Any,
        *,
        request_id: str,
        seconds: float,
    ) -> None:
        """Hand off the shadows and the record of one answered request, if any is due."""
        shadow = bool(entry.shadows) and model.version == entry.plan.primary
        record = self._sample >= 1.0 or (self._sample > 0.0 and random.random() < self._sample)
        if not shadow and not record:
            return
        kind = "shadow" if shadow else "record"
        job = {
            "model_id": model.model_id,
            "version": model.version,
            "request_id": request_id,
            "inputs": inputs,
            "output": output,
            "latency_ms": round(seconds * 1000, 3),
            "ts": time.time(),
            "shadow": shadow,
            "record": record,
        }
        if self._pid != os.getpid():  # a queue and a shipping thread of our own after fork
            self._start_shipping()
        if len(self._queue) >= QUEUE_LIMIT:
            self._metrics.dropped(kind, "busy")
            return
        self._queue.append(job)
        self._wake.set()

    def _start_shipping(self) -> None:
        self._pid = os.getpid()
        self._queue = deque()
        self._wake = threading.Event()
        threading.Thread(target=self._ship, name="lls-offload", daemon=True).start()

    def _ship(self) -> None:
        sock: socket.socket | None = None
        retry_at = 0.0
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            frames = []
            while self._queue:
                job = self._queue.popleft()
                kind = "shadow" if job["shadow"] else "record"
                try:
                    data = orjson.dumps(job, option=orjson.OPT_SERIALIZE_NUMPY)
                except TypeError:
                    self._metrics.dropped(kind, "not_json")
                    continue
                frames.append((kind, _FRAME.pack(len(data)) + data))
            if not frames:
                continue
            if sock is not None and _peer_gone(sock):  # the process died and was replaced
                sock.close()
                sock = None
            if sock is None and time.monotonic() >= retry_at:
                sock = self._connect()
                if sock is None:
                    retry_at = time.monotonic() + _RECONNECT_SECONDS
            if sock is not None:
                try:
                    sock.sendall(b"".join(frame for _, frame in frames))
                    continue
                except OSError:
                    sock.close()
                    sock = None
                    retry_at = time.monotonic() + _RECONNECT_SECONDS
            for kind, _ in frames:
                self._metrics.dropped(kind, "no_process")

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            return None
        return sock


def _peer_gone(sock: socket.socket) -> bool:
    # The process never writes back, so a readable connection means it was closed.
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class OffloadSupervisor:
    """Keeps the background process alive, from the process that forked it.

    The server calls `poll` from its main loop (not from a thread, so forking is as safe as
    forking a worker): a dead process is reaped, then forked again once its backoff is over.
    `in_child` runs first in each new process, to let go of what the server holds there.
    """

    def __init__(
        self, dataplane: DataPlane, offload: Offload, metrics: Metrics, log: JsonLog
    ) -> None:
        self._dataplane = dataplane
        self._offload = offload
        self._metrics = metrics
        self._log = log
        self.in_child: Callable[[], None] = lambda: None
        self.pid = 0
        self.stopping = False
        self._started = 0.0
        self._delay = _RESTART_FIRST
        self._restart_at = 0.0
        self._death: dict[str, Any] | None = None  # how the last process ended, until replaced

    def start(self) -> None:
        """Fork the process."""
        self.pid = start_process(
            self._dataplane, self._offload, self._metrics, self._log, self.in_child
        )
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
        forget_worker(pid)

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
    dataplane: DataPlane,
    offload: Offload,
    metrics: Metrics,
    log: JsonLog,
    in_child: Callable[[], None] = lambda: None,
) -> int:
    """Fork the background process; returns its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        in_child()
        _Worker(dataplane, offload, metrics, log, parent).run()
    except BaseException:
        code = 1
        import traceback

        log.event("error", "offload_crashed", traceback=traceback.format_exc())
    finally:
        os._exit(code)


class _Worker:
    def __init__(
        self, dataplane: DataPlane, offload: Offload, metrics: Metrics, log: JsonLog, parent: int
    ) -> None:
        self.dataplane = dataplane
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.socket_path)
        server.listen(64)
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytearray] = {}
        if self.recording is not None:
            self.sink = make_sink(self.recording, self.dataplane.registry.root)
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
                while len(buffer) >= _FRAME.size:
                    (size,) = _FRAME.unpack_from(buffer)
                    if len(buffer) < _FRAME.size + size:
                        break
                    job = orjson.loads(buffer[_FRAME.size : _FRAME.size + size])
                    del buffer[: _FRAME.size + size]
                    self.handle(job)
            if self.batch and (
                len(self.batch) >= _BATCH or time.monotonic() - flushed >= _FLUSH_SECONDS
            ):
                self.flush()
                flushed = time.monotonic()
        self.flush()
        if self.sink is not None:
            self.sink.close()

    def handle(self, job: dict[str, Any]) -> None:
        self.dataplane.sync()
        entry = self.dataplane.registry.snapshot.get(job["model_id"])
        if entry is None:
            return
        keep_features = self.recording is not None and self.recording.features
        if job["record"]:
            self.batch.append(self._record(job, job["version"], job["output"], keep_features))
        if job["shadow"]:
            for shadow in entry.shadows:
                self.compare(entry, shadow, job, keep_features)

    def compare(
        self, entry: ModelEntry, shadow: ServedModel, job: dict[str, Any], keep_features: bool
    ) -> None:
        started = time.perf_counter()
        try:
            output = to_json_value(shadow.instance.predict(job["inputs"]))
        except Exception as exc:
            self.metrics.shadow(entry.model_id, job["version"], shadow.version, "error")
            self._complain("shadow_failed", version=shadow.version, error=repr(exc))
            return
        primary = entry.versions[job["version"]].model
        tolerance = float(getattr(primary.instance if primary else None, "tolerance", 1e-6))
        agree = close(output, job["output"], tolerance)
        self.metrics.shadow(
            entry.model_id, job["version"], shadow.version, "agree" if agree else "disagree"
        )
        if job["record"]:
            record = self._record(job, shadow.version, output, keep_features)
            record.update(
                kind="shadow",
                primary_version=job["version"],
                agree=agree,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            self.batch.append(record)

    @staticmethod
    def _record(job: dict[str, Any], version: str, output: Any, features: bool) -> dict[str, Any]:
        record = {
            "ts": job["ts"],
            "kind": "primary",
            "request_id": job["request_id"],
            "model_id": job["model_id"],
            "version": version,
            "output": output,
            "latency_ms": job["latency_ms"],
        }
        if features:
            record["features"] = job["inputs"]
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
