"""An exclusive lock between the processes of one server: a file in its state folder."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_SECONDS = 0.01  # how often a bounded wait tries the lock again


@contextmanager
def exclusive(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the lock at `path` (made if missing); other holders wait until it is released.

    With `wait=False`, a lock held elsewhere is not waited for: the block runs, told False.
    """
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def exclusive_within(
    path: Path, timeout: float, *, busy: Callable[[], None] | None = None
) -> Iterator[bool]:
    """Hold the lock at `path`, waiting at most `timeout` seconds for it (`busy` is called if
    it must wait).

    The block runs either way, told whether it holds the lock: a holder that never lets go
    delays the others by `timeout`, never for good.
    """
    deadline = time.monotonic() + timeout
    with open(path, "a+b") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if busy is not None:
                    busy()
                    busy = None
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(_POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
