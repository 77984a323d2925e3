"""git, run as a command: the one way lls reads and writes repositories.

Every git command lls runs goes through `git`/`git_bytes` here (Copier runs its own, through
`_copier`). Who a commit is by is decided once, by `identity`: the repository's own identity
when git has one, else a stated fallback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._errors import LlsError, UserMessageError

FALLBACK_NAME, FALLBACK_EMAIL = "lls", "lls@localhost"


@contextmanager
def holding_off_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored (by the git commands too) while a result is moved in."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def git(
    cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The output of `git ARGS` run in `cwd`; LlsError with git's message when it fails."""
    return git_bytes(cwd, *args, input=input, env=env).decode("utf-8", errors="replace")


def git_bytes(
    cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    """Like `git`, in bytes, with `input` on git's standard input and `env` added to its own."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            check=True,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError as error:
        raise LlsError("git is needed by lls; install git") from error
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.decode("utf-8", errors="replace").strip()
        raise LlsError(f"git {' '.join(args)} failed: {stderr}") from error
    return done.stdout


def ignored(top: Path, paths: tuple[str, ...]) -> list[str]:
    """Those of `paths` (relative to `top`, existing or not) that the repository ignores."""
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin", "-z"],
        cwd=top,
        input="\0".join(paths).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode not in (0, 1):  # 1: none of them is ignored
        stderr = done.stderr.decode("utf-8", errors="replace").strip()
        raise LlsError(f"git check-ignore failed: {stderr}")
    return [name for name in done.stdout.decode().split("\0") if name]


def succeeds(cwd: Path, *args: str) -> bool:
    """Whether `git ARGS` exits 0 (for questions such as "does this ref exist?")."""
    try:
        git_bytes(cwd, *args)
    except LlsError:
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """Who commits: the repository's git identity, or the fallback when it has none."""

    name: str
    email: str
    fallback: bool  # True when git has no identity here and lls <lls@localhost> is used

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes git commit as this identity, wherever it runs."""
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def identity(repo: Path) -> Identity:
    """Who commits in `repo`: git's environment, else its configuration (user.name and
    user.email), else the fallback; never a name git would make up from the host."""
    found = {}
    for key, variable in (("name", "GIT_AUTHOR_NAME"), ("email", "GIT_AUTHOR_EMAIL")):
        value = os.environ.get(variable, "")
        if not value:
            try:
                value = git(repo, "config", "--get", f"user.{key}").strip()
            except LlsError:  # not set
                value = ""
        found[key] = value
    if not (found["name"] and found["email"]):
        return Identity(FALLBACK_NAME, FALLBACK_EMAIL, fallback=True)
    return Identity(found["name"], found["email"], fallback=False)


def commit(repo: Path, message: str, *, by: Identity, paths: tuple[str, ...] = ()) -> str:
    """Commit what is staged (or only `paths`, when given) as `by`; the new commit's id."""
    only = ("--only", "--", *paths) if paths else ()
    git(repo, "commit", "--quiet", "--no-verify", "-m", message, *only, env=by.env)
    return git(repo, "rev-parse", "HEAD").strip()


def repository_top(path: Path) -> Path | None:
    """The top of the git work tree holding `path`, or None when it is in none."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    try:
        return Path(git(probe, "rev-parse", "--show-toplevel").strip())
    except LlsError:
        return None


def require_commit(top: Path) -> None:
    """UserMessageError when the repository has no commit yet."""
    if not succeeds(top, "rev-parse", "--verify", "--quiet", "HEAD"):
        raise UserMessageError(f"{top} has no commit yet; commit the service first")
