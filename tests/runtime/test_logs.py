"""The JSON log line's time and process id, kept between lines rather than asked for anew."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import orjson

from serving_runtime._logs import JsonLog, _now


def test_the_time_of_a_line_is_iso_8601_to_the_millisecond_in_utc() -> None:
    # Across seconds, and back in time (a clock set back), as datetime would write it.
    moments = [1764611934.5291, 1764611934.9999, 1764611935.0, 1764611935.0004, 1764611934.25]
    for moment in moments:
        with mock.patch("time.time", return_value=moment):
            expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
            assert _now() == expected


def test_a_forked_process_writes_its_own_id(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("wb") as file:
        log = JsonLog(file.fileno())
        log.event("info", "parent")
        child = os.fork()
        if child == 0:  # pragma: no cover - the child's side
            log.event("info", "child")
            os._exit(0)
        os.waitpid(child, 0)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [(line["event"], line["pid"]) for line in lines] == [
        ("parent", os.getpid()),
        ("child", child),
    ]
