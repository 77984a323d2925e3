"""The code examples of a docs page, and a shell to run them in as a reader would.

Each fenced block says what it is by its language:

- `console`: `$ ` lines are commands (a trailing backslash or a here-document continues one),
  run in order in one
  bash session per page; the other lines are output that must appear, in order, among what
  the command printed. `...` stands for any text, or (alone on a line) any lines. A command
  must exit 0, unless its output ends with `[exit N]`.
- `python`, `yaml`, `json` with `title="path"`: a file the reader writes, at that path.
- `python` without a title: run, in the page's namespace, in the shell's current folder.
- `yaml`, `json` without a title: must parse (`models.yaml` examples must validate).
- `text`: not code (output shown on its own, a diagram).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>.*)$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
HEREDOC = re.compile(r"<<-?\s*['\"]?(?P<word>\w+)['\"]?")
EXIT = re.compile(r"^\[exit (?P<status>\d+)\]$")
LANGUAGES = {"console", "python", "yaml", "json", "text"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    title: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(markdown: str, page: str) -> list[Block]:
    """Every fenced block of a page, in order, without the indentation of its fence."""
    found = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent) :])
            j += 1
        language = info.split()[0] if info else ""
        title = TITLE.search(info)
        found.append(
            Block(page, i + 1, language, title["title"] if title else None, "\n".join(body) + "\n")
        )
        i = j + 1
    return found


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)

    @property
    def status(self) -> int:
        last = self.expected[-1] if self.expected else ""
        found = EXIT.match(last)
        return int(found["status"]) if found else 0

    @property
    def output(self) -> list[str]:
        return [line for line in self.expected if not EXIT.match(line)]


def commands(block: Block) -> list[Command]:
    """The commands of a console block, each with the output shown after it."""
    found: list[Command] = []
    continued = False
    heredoc: str | None = None  # the word that ends the here-document being read
    for line in block.text.splitlines():
        if heredoc is not None:
            found[-1].text += "\n" + line
            heredoc = None if line == heredoc else heredoc
        elif continued:
            found[-1].text += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            found.append(Command(line[2:]))
            continued = line.endswith("\\")
            opened = HEREDOC.search(line)
            heredoc = opened["word"] if opened else None
        elif found:
            found[-1].expected.append(line)
        elif line.strip():
            raise AssertionError(f"{block.where}: output before the first command: {line!r}")
    return found


def line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.rstrip().split("...")))


def missing_output(expected: list[str], printed: str) -> str | None:
    """The first expected line not found, in order, among the printed ones (None: all were)."""
    actual = [line.rstrip() for line in printed.splitlines()]
    position = 0
    for wanted in expected:
        if wanted.strip() in {"", "..."}:
            continue
        pattern = line_pattern(wanted)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return wanted
        position += 1
    return None


class Shell:
    """One bash session, as in a reader's terminal: `cd`, variables and jobs carry over."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: everything it starts ends with it
        )
        self.cwd = cwd

    def run(self, command: str, timeout: float) -> tuple[int, str]:
        """Run one command; its exit status and what it printed (stdout and stderr)."""
        marker = f"--- done {uuid.uuid4().hex}"
        # Commands read nothing from this session's input: that is where the next ones come from.
        script = f"{{\n{command}\n}} </dev/null 2>&1\nprintf '\\n{marker} %s %s\\n' $? \"$PWD\"\n"
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(script.encode())
        self.process.stdin.flush()
        printed = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while marker.encode() not in printed:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise AssertionError(
                        f"{command!r} still running after {timeout} s; printed:\n"
                        + printed.decode(errors="replace")
                    )
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"the shell ended during {command!r}")
                printed += chunk
            while not printed.endswith(b"\n"):
                printed += os.read(self.process.stdout.fileno(), 65536)
        text = printed.decode(errors="replace")
        before, _, after = text.rpartition(marker)
        status, _, cwd = after.strip().partition(" ")
        self.cwd = Path(cwd)
        return int(status), before.rstrip("\n")

    def close(self) -> None:
        """End the session and everything started from it."""
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            # Reap bash itself as it ends: a zombie still counts as a member of its group.
            while self.process.poll() is None or _group_alive(self.process.pid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                break
        self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
