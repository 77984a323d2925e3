"""Loads in place take turns across the pod, and yield the interpreter to requests.

Under `--load-in-place` (and granian, whose master cannot add a worker: otherwise workers are
replaced instead, `_replace.py`), an `admin load` (or a version the overrides file delivers) is
loaded and self-tested by every worker, each in a thread of its own beside the requests it
goes on answering. Loading is mostly
Python holding the interpreter lock (unpickling, a model's `load`), so two things hurt the
requests meanwhile:

- every worker loading at once takes every core of a small pod at once. Workers take turns
  instead: a file lock in the state folder, held for one version's load and self-tests (a
  worker that waits logs `load_waits_turn`). A turn is waited for at most `WAIT_SECONDS`, so a
  load that never ends delays the others, never stops them (`load_turn_not_given`).
- the worker's own event loop waits for the interpreter lock each time it wakes up, up to
  Python's switch interval (5 ms) a time, several times a request. While a load runs, the
  process's switch interval is `LOADING_SWITCH_INTERVAL`, so the loop gets the lock back
  within that.
- the loading thread and the loop compete for a core too. The loading thread is scheduled as a
  batch job meanwhile (SCHED_BATCH): the same share of the CPU, but a loop that wakes up with
  a request runs at once rather than after it. (A lower priority, `nice`, would be worse: the
  loading thread, left waiting for a core while it holds the interpreter lock, would hold the
  loop up with it.)

Starting processes do not take turns (they answer nothing yet), nor does the offload process
(it runs at the lowest CPU priority, and no change waits for it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._locks import exclusive
from ._logs import JsonLog

WAIT_SECONDS = 60.0  # the longest a worker waits for its turn before it loads anyway
LOADING_SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005


class LoadTurns:
    """One load at a time among the serving workers of a pod (`Registry.load_turn`)."""

    def __init__(self, folder: Path, log: JsonLog) -> None:
        self.path = folder / "load.lock"
        self._log = log

    @contextmanager
    def __call__(self, model_id: str, version: str) -> Iterator[None]:
        asked = time.monotonic()

        def busy() -> None:
            self._log.event("info", "load_waits_turn", model_id=model_id, version=version)

        with exclusive(self.path, WAIT_SECONDS, busy=busy) as held:
            if not held:
                self._log.event(
                    "warning",
                    "load_turn_not_given",
                    model_id=model_id,
                    version=version,
                    waited_s=round(time.monotonic() - asked, 3),
                )
            with yielding_to_requests(), batch_scheduled():
                yield


class _Loads:
    """The loads running in this process, and the switch interval to go back to after them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.normal_interval = sys.getswitchinterval()


_loads = _Loads()


@contextmanager
def yielding_to_requests() -> Iterator[None]:
    """While the block runs, this process's threads hand the interpreter lock over sooner."""
    with _loads.lock:
        if _loads.running == 0:
            _loads.normal_interval = sys.getswitchinterval()
            sys.setswitchinterval(LOADING_SWITCH_INTERVAL)
        _loads.running += 1
    try:
        yield
    finally:
        with _loads.lock:
            _loads.running -= 1
            if _loads.running == 0:
                sys.setswitchinterval(_loads.normal_interval)


@contextmanager
def batch_scheduled() -> Iterator[None]:
    """While the block runs, the calling thread is scheduled as a batch job (Linux's
    SCHED_BATCH): as much CPU as before, but it never preempts a thread that wakes up, such as
    an event loop with a request to read. Any user may enter and leave it."""
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:  # not Linux
        yield
        return
    before = os.sched_getscheduler(0)
    param = os.sched_getparam(0)
    with contextlib.suppress(OSError):
        setter(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            setter(0, before, param)
