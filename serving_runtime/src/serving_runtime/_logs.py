"""Structured logs: one JSON object per line on standard output."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson


class _Kept:
    """What every line of this process shares, kept rather than asked for anew: the current
    second as ISO 8601 (a line formats only its milliseconds), and the process id (os.getpid
    is a system call), set anew in a forked child."""

    second: tuple[int, str] = (-1, "")
    pid = os.getpid()


os.register_at_fork(after_in_child=lambda: setattr(_Kept, "pid", os.getpid()))


def _now() -> str:
    """Now, in UTC, as ISO 8601 to the millisecond (2026-12-01T17:58:54.529+00:00)."""
    now = time.time()
    second = int(now)
    kept = _Kept.second  # one read: another thread may replace it meanwhile
    if kept[0] != second:
        kept = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _Kept.second = kept
    return f"{kept[1]}.{int((now - second) * 1000):03d}+00:00"


class JsonLog:
    """Writes events as JSON lines, each in a single write so workers never interleave."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd

    def event(self, level: str, event: str, **fields: Any) -> None:
        """Write one line: time, level, event name, then the fields."""
        record = {"ts": _now(), "level": level, "event": event, "pid": _Kept.pid, **fields}
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + b"\n"
        with contextlib.suppress(OSError):  # a closed or full stdout never fails a request
            os.write(self._fd, line)


class JsonFormatter(logging.Formatter):
    """Formats stdlib logging records (Gunicorn's own, warnings) as the same JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object with the message and, when any, the traceback."""
        data: dict[str, Any] = {
            "ts": _now(),
            "level": record.levelname.lower(),
            "event": "log",
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()
