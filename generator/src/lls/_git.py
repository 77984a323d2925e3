"""git, run through GitPython: the one way lls reads and writes repositories.

Every git command lls runs goes through `git`/`git_bytes`/`run` here (Copier runs its own,
through `_copier`; `lls fleet` runs the ones Ctrl-C must reach through `_runner`). Who a
commit is by is decided once, by `identity`: the repository's own identity when git has one,
else a stated fallback.

lls asks git itself (`rev-parse`, `config --get`, `ls-files`) rather than reading config,
refs or the index with GitPython's own readers: those re-implement parts of git and miss
some (settings given in the environment, GIT_CONFIG_COUNT, which lls uses to read its
template offline; index version 4).
"""

from __future__ import annotations

import functools
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ._errors import LlsError, UserMessageError

if TYPE_CHECKING:
    from git import Git, GitCommandNotFound

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


@dataclass(frozen=True)
class Exited:
    """A git command that ran to its end: its exit status, output, and what it said on stderr."""

    status: int
    stdout: bytes
    stderr: str


def git(
    cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The output of `git ARGS` run in `cwd`; LlsError with git's message when it fails."""
    return git_bytes(cwd, *args, input=input, env=env).decode("utf-8", errors="replace")


def git_bytes(
    cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    """Like `git`, in bytes, with `input` on git's standard input and `env` added to its own."""
    ran = run(cwd, *args, input=input, env=env)
    if ran.status != 0:  # some say why on stdout ("nothing to commit")
        said = ran.stderr.strip() or ran.stdout.decode("utf-8", errors="replace")
        raise LlsError(failure(args, said))
    return ran.stdout


def run(
    cwd: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> Exited:
    """`git ARGS` run in `cwd` to its end, whatever its exit status (for commands whose status
    is an answer: `check-ignore`, `merge-file`); LlsError only when git cannot be run."""
    if not Path(cwd).is_dir():  # GitPython would run git in the current directory instead
        raise LlsError(failure(args, f"{cwd} is not a directory"))
    gitpython, not_found = _gitpython()
    runner = gitpython(Path(cwd))  # a Path: GitPython expands $VARS and ~ in a str
    with _standard_input(input) as stdin:
        try:
            status, stdout, stderr = runner.execute(
                [str(runner.GIT_PYTHON_GIT_EXECUTABLE or "git"), *args],
                istream=stdin,
                env=dict(env) if env else None,
                # Exactly what git wrote, and its own message (GitCommandError's text frames
                # it in GitPython's words, over several lines).
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except not_found as error:
            raise LlsError("git is needed by lls; install git") from error
    # GitPython decodes stderr keeping undecodable bytes as surrogates, which cannot be printed.
    said = stderr.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return Exited(status, stdout, said)


def failure(args: Sequence[str], stderr: str) -> str:
    """The one line that says a git command failed: the command, and what git said (its
    hints, advice on git's own commands, left out)."""
    said = [line.strip() for line in stderr.splitlines()]
    message = "; ".join(line for line in said if line and not line.startswith("hint:"))
    return f"git {' '.join(args)} failed: {message or 'no message'}"


@functools.cache
def _gitpython() -> tuple[type[Git], type[GitCommandNotFound]]:
    # Imported on first use: `lls --help` and `lls versions` need no git, and GitPython runs
    # `git version` when imported, raising ImportError when there is no git to run.
    try:
        from git import Git, GitCommandNotFound
    except ImportError as error:
        raise LlsError("git is needed by lls; install git") from error
    return Git, GitCommandNotFound


@contextmanager
def _standard_input(data: bytes | None) -> Iterator[BinaryIO | None]:
    """`data` in a file for git's standard input (GitPython takes a file, not bytes)."""
    if data is None:
        yield None
        return
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        yield file


def ignored(top: Path, paths: tuple[str, ...]) -> list[str]:
    """Those of `paths` (relative to `top`, existing or not) that the repository ignores."""
    args = ("check-ignore", "--no-index", "--stdin", "-z")
    ran = run(top, *args, input="\0".join(paths).encode())
    if ran.status not in (0, 1):  # 1: none of them is ignored
        raise LlsError(failure(args, ran.stderr))
    return [name for name in ran.stdout.decode().split("\0") if name]


def succeeds(cwd: Path, *args: str) -> bool:
    """Whether `git ARGS` exits 0 (for questions such as "does this ref exist?")."""
    return run(cwd, *args).status == 0


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
