"""The workers' side of work that must never touch the request path: shadows and records.

A worker decides per answered request whether a shadow or a record is due, and appends a `Job`
to a bounded in-memory queue (well under a microsecond). A thread of the worker ships the queue,
framed, over a Unix stream socket to the background process (`_background.py`). When that
process falls behind and the queue is full, or it is gone, jobs are dropped and counted, never
waited for; the thread reconnects by itself when the process comes back.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ._config import RecordingConfig
from ._metrics import Metrics
from ._model import dump_output

if TYPE_CHECKING:
    from ._model import ServedModel
    from ._registry import ModelEntry

QUEUE_LIMIT = 10_000  # jobs a worker holds for the background process before dropping
FRAME = struct.Struct("!I")  # each job on the socket: its length, then its JSON
_RECONNECT_SECONDS = 0.2  # a worker finding no process retries this much later, dropping meanwhile


@dataclass(frozen=True, slots=True)
class Job:
    """One answered request handed to the background process: shadow it, record it, or both."""

    model_id: str
    version: str
    request_id: str
    inputs: Any  # what predict() received
    output: Any  # what it returned
    latency_ms: float
    ts: float  # when it was answered (Unix time)
    shadow: bool  # run the model's shadow versions on it and compare
    record: bool  # write it to the sink

    @property
    def kind(self) -> str:
        """What a drop of this job is counted as: `shadow` or `record`."""
        return "shadow" if self.shadow else "record"

    def frame(self) -> bytes:
        """The job as sent: length, then JSON (numpy arrays as lists); TypeError if not JSON."""
        data = dump_output(self)
        return FRAME.pack(len(data)) + data

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Job:
        """The job a frame carried (without its length)."""
        return cls(**orjson.loads(data))


class Offload:
    """Decides per request what to hand off, and hands it off."""

    def __init__(
        self, socket_path: Path, recording: RecordingConfig | None, metrics: Metrics
    ) -> None:
        self.socket_path = str(socket_path)
        self.recording = recording
        self._sample = recording.sample if recording else 0.0
        self._metrics = metrics
        self._pid = 0  # the process whose queue and thread these are
        self._queue: deque[Job] = deque()
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
        job = Job(
            model.model_id,
            model.version,
            request_id,
            inputs,
            output,
            round(seconds * 1000, 3),
            time.time(),
            shadow,
            record,
        )
        if self._pid != os.getpid():  # a queue and a shipping thread of our own after fork
            self._start_shipping()
        if len(self._queue) >= QUEUE_LIMIT:
            self._metrics.dropped(job.kind, "busy")
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
                try:
                    frames.append((job.kind, job.frame()))
                except TypeError:
                    self._metrics.dropped(job.kind, "not_json")
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
