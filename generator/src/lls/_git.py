"""git, run as a command: the helpers lls upgrade works with."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._errors import LlsError


@contextmanager
def holding_off_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored (by the git commands too) while the result is moved in."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def git(cwd: Path, *args: str) -> str:
    """The output of `git ARGS` run in `cwd`; LlsError with git's message when it fails."""
    return git_bytes(cwd, *args).decode("utf-8", errors="replace")


def git_bytes(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    """Like `git`, in bytes, with `input` on git's standard input."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=True)
    except FileNotFoundError as error:
        raise LlsError("git is needed by lls upgrade; install git") from error
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.decode("utf-8", errors="replace").strip()
        raise LlsError(f"git {' '.join(args)} failed: {stderr}") from error
    return done.stdout
