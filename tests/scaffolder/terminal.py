"""Running the installed `lls` in a real terminal (pexpect), and reading what it showed there.

Shared by the terminal tests of `lls new` and `lls upgrade`.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pexpect

from lls._questions import load_questions

from .conftest import ROOT

# The questions `lls new` asks, in order, when every default is taken (lls sets the runtime's
# version and its wheel's hash).
QUESTIONS = [
    q.name
    for q in load_questions((ROOT / "copier.yml").read_text())
    if q.is_asked({}) and q.name not in {"runtime_version", "runtime_sha256"}
]
CLEAR_LINE = "\x15"  # Ctrl-U: the default is pre-filled; start from an empty line
INTERRUPTED = "lls: interrupted; nothing was written"
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


COPIER_AT_WORK = "-- copier is at work --"


def blocked_in_copier(place: Path) -> dict[str, str]:
    """Git settings that stop lls inside Copier's work until the terminal's Ctrl-C ends it.

    Copier checks the template out into its own clone (`copier._vcs.clone.*`); there, git's
    post-checkout hook (core.hooksPath) says COPIER_AT_WORK on the terminal, then waits on a
    FIFO nobody writes to. A test waits for those words, so its Ctrl-C arrives while Copier
    works, however slow or fast the machine; nothing lls does is timed.
    """
    hooks = place / "hooks"
    hooks.mkdir()
    fifo = place / "never-written"
    os.mkfifo(fifo)
    hook = hooks / "post-checkout"
    hook.write_text(
        "#!/bin/sh\n"
        'case "$PWD" in\n'
        f"  *copier._vcs.clone.*) echo '{COPIER_AT_WORK}' > /dev/tty; read line < '{fifo}' ;;\n"
        "esac\n"
    )
    hook.chmod(0o755)
    index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": "core.hooksPath",
        f"GIT_CONFIG_VALUE_{index}": str(hooks),
    }


def spawn(
    executable: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> pexpect.spawn:
    """`executable ARGS` in a fresh terminal of 50x200; all it shows is kept in `.logfile_read`."""
    child = pexpect.spawn(
        str(executable),
        args,
        cwd=str(cwd),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
        # pexpect is no terminal emulator: it never answers prompt_toolkit's cursor-position
        # request, which would cost a second's wait at every question.
        env={**(os.environ if env is None else env), "PROMPT_TOOLKIT_NO_CPR": "1"},
    )
    child.logfile_read = io.StringIO()
    return child


def finish(child: pexpect.spawn) -> str:
    """Wait for the command to end; everything it showed, escape sequences included."""
    child.expect(pexpect.EOF)
    child.close()
    shown: str = child.logfile_read.getvalue()
    return shown


def visible(shown: str) -> str:
    """The text of `shown` without colours, cursor movements and carriage returns."""
    return _CONTROL.sub("", shown)


def done_line(step: str) -> re.Pattern[str]:
    """The line a finished step leaves: its name, then the seconds it took."""
    return re.compile(rf"^\S+ {re.escape(step)}.*  \d+\.\ds$", re.MULTILINE)
