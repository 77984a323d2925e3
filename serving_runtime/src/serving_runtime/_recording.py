"""Output recording: where records go (a pluggable sink) and how they are read back.

A record is a plain dict: time, request id, model, version, output, latency and, when asked,
features. Sinks receive them in batches, in the background process (see `_offload.py`),
never on the request path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from ._config import RecordingConfig
from ._model import import_class

RECORD_FILE = "records.jsonl"
NL = b"\n"


class RecordSink(Protocol):
    """Where records are written. Raise on failure: the caller counts and drops the batch."""

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Write a batch of records."""

    def close(self) -> None:
        """Flush and release what the sink holds."""


class JsonLinesSink:
    """The embedded default: JSON lines in a folder, rotated at `max_bytes`, `backups` kept.

    records.jsonl is the newest file; records.jsonl.1 the one before, and so on.
    """

    def __init__(self, config: RecordingConfig) -> None:
        self.folder = config.path
        self.max_bytes = config.max_bytes
        self.backups = config.backups
        self.folder.mkdir(parents=True, exist_ok=True)
        self._path = self.folder / RECORD_FILE
        self._file = self._path.open("ab")

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append the batch, rotating whenever the next line would pass the bound."""
        size = self._file.tell()
        chunk: list[bytes] = []
        for record in records:
            line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + NL
            if size and size + len(line) > self.max_bytes:
                self._file.write(b"".join(chunk))
                self._rotate()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._file.write(b"".join(chunk))
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups, 0, -1):
            older = self.folder / f"{RECORD_FILE}.{n}"
            newer = self.folder / (RECORD_FILE if n == 1 else f"{RECORD_FILE}.{n - 1}")
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self._path.unlink(missing_ok=True)
        self._file = self._path.open("ab")

    def close(self) -> None:
        """Close the current file."""
        self._file.close()


def make_sink(config: RecordingConfig, search_path: Path | None = None) -> RecordSink:
    """The configured sink: `recording.sink: module:Class` (built with the config), or files."""
    if config.sink is None:
        return JsonLinesSink(config)
    sink: RecordSink = import_class(config.sink, search_path, methods=("write",))(config)
    return sink


def read_records(folder: Path) -> Iterator[dict[str, Any]]:
    """Every record in a JSON-lines folder, oldest first (rotated files before the current)."""
    files = sorted(
        folder.glob(f"{RECORD_FILE}*"),
        key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
    )
    for path in files:
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)
