"""Locks between the processes of one server: a file in its state folder."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_POLL_SECONDS = 0.01  # how often a bounded wait tries the lock again


@contextmanager
def exclusive(
    path: Path, timeout: float | None = None, *, busy: Callable[[], None] | None = None
) -> Iterator[bool]:
    """Hold the lock at `path` (made if missing); other holders wait until it is released.

    With a `timeout` (seconds; 0: not at all), a lock held elsewhere is waited for that long
    at most (`busy` is called if it must wait), and the block runs either way, told whether it
    holds the lock: a holder that never lets go delays the others by `timeout`, never for good.
    """
    with open(path, "a+b") as f:
        if timeout is None:
            fcntl.flock(f, fcntl.LOCK_EX)
        elif not _take_within(f, timeout, busy):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def shared(path: Path) -> Iterator[None]:
    """Hold the lock at `path` beside other shared holders; an `exclusive` holder waits for
    them all, and they for it."""
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _take_within(f: IO[bytes], timeout: float, busy: Callable[[], None] | None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if busy is not None:
                busy()
                busy = None
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
