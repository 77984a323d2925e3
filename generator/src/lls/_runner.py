"""The processes `lls fleet` runs for its repositories, and how Ctrl-C stops them cleanly.

Each process runs in a session of its own, so the terminal's Ctrl-C reaches `lls fleet`
alone. It then asks every running one to stop the way Ctrl-C would have (SIGINT to its
process group: `lls upgrade` removes its temporary clone, and finishes a result it is
already bringing in), starts no new one, and waits for them: no repository is left half
changed, and no process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

_NOTICE_SECONDS = 0.2  # how soon the main thread notices a Ctrl-C a worker thread received
T = TypeVar("T")
R = TypeVar("R")


class Interrupted(Exception):
    """The fleet was interrupted: this repository's work was stopped, or never started."""


@dataclass(frozen=True)
class Ran:
    """A finished process: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


class Children:
    """The processes running for a fleet, stopped together on Ctrl-C."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """True once interrupted: no new process starts."""
        return self._stopping

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        log: IO[str] | None = None,
    ) -> Ran:
        """Run `argv` to its end (its output to `log`, when given); Interrupted when stopped."""
        with self._lock:
            if self._stopping:
                raise Interrupted
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env={**os.environ, **env} if env else None,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            self._running.add(process)
        try:
            stdout, stderr = process.communicate()
        finally:
            with self._lock:
                self._running.discard(process)
        if self.stopping and process.returncode != 0:
            raise Interrupted
        return Ran(process.returncode, stdout or "", stderr or "")

    def interrupt(self) -> None:
        """Stop starting processes, and pass Ctrl-C on to every running one."""
        with self._lock:
            self._stopping = True
            for process in self._running:
                with contextlib.suppress(ProcessLookupError):  # it has just ended
                    os.killpg(process.pid, signal.SIGINT)


def each(
    children: Children, work: Callable[[T], R], items: Sequence[T], jobs: int
) -> tuple[list[R], bool]:
    """`work` on every item, `jobs` at a time; and whether Ctrl-C came.

    `work` must turn Interrupted into a result of its own: after Ctrl-C every item still
    gets one (those not started yet at once), and the running ones are waited for.
    """
    caught: list[int] = []
    futures: list[Future[R]] = []
    with _ctrl_c_noted(caught), ThreadPoolExecutor(max(1, jobs)) as pool:
        stopped = False
        while True:
            if caught and not stopped:
                stopped = True
                children.interrupt()
            while len(futures) < len(items):
                futures.append(pool.submit(work, items[len(futures)]))
            # Never an unbounded wait: the kernel may deliver Ctrl-C to a worker thread,
            # where Python only notes it for the main thread, and a main thread blocked on
            # a lock would not run again to note it; the work would wait for ever.
            if not wait(futures, timeout=_NOTICE_SECONDS).not_done:
                break
    return [future.result() for future in futures], bool(caught)


@contextmanager
def _ctrl_c_noted(caught: list[int]) -> Iterator[None]:
    """While the block runs, Ctrl-C is noted in `caught` rather than raised.

    Raised, KeyboardInterrupt lands wherever the main thread is, possibly between taking a
    future's lock and the block that gives it back (inside `wait`): the worker finishing that
    future then waits for the lock for ever, and so does the pool's shutdown. Seen as a hang
    after Ctrl-C in two tests of a whole run on a busy machine.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals
        return
    previous = signal.signal(signal.SIGINT, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        if previous is not None:  # None: one Python did not install, which it cannot restore
            signal.signal(signal.SIGINT, previous)
