"""Where a command's words go, and the one place errors become messages and exit statuses."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer

from lls._errors import InvalidAnswer, LlsError, UserMessageError
from lls._new import Ask
from lls._prompt import ask as prompt
from lls._questions import Question
from lls._results import envelope
from lls._steps import SILENT, Steps

EXIT_OK = 0
EXIT_ERROR = 1  # lls or a tool it runs failed; or (upgrade) conflicts are left to resolve
EXIT_USAGE = 2  # the user's input was refused (bad answer, bad option, existing directory)
EXIT_BEHIND = 3  # lls check / fleet status: a newer template release exists
EXIT_DRIFTED = 4  # lls check: current, but files the platform owns differ from the release's
EXIT_INTERRUPTED = 130

Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print nothing but errors (on stderr): no progress, no summary."
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help=(
            "Print one JSON object on stdout (its keys are listed below), also on failure; "
            "no progress, and never ask: a question left unanswered is an error."
        ),
    ),
]


class Progress:
    """Each step on stderr while it runs (spinner, name, elapsed time), then its time taken."""

    def __init__(self) -> None:
        from rich.console import Console  # only in a terminal: the import costs a tenth of a second

        self._console = Console(stderr=True, highlight=False)
        self._utf8 = self._console.encoding.lower().startswith("utf")
        self._running = False

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._running:  # a step within a step stays on its parent's line
            yield
            return
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        spinner = SpinnerColumn("dots" if self._utf8 else "line")
        line = TextColumn("{task.description}", markup=False)
        started = time.monotonic()
        self._running = True
        try:
            with Bar(
                spinner, line, TimeElapsedColumn(), console=self._console, transient=True
            ) as progress:
                progress.add_task(name, total=None)
                yield
        finally:
            self._running = False
        took = f"  {time.monotonic() - started:.1f}s"
        self._console.print(
            Text.assemble(("✓ " if self._utf8 else "+ ", "green"), name, (took, "dim"))
        )


@dataclass(frozen=True)
class Output:
    """Where a command's words go: the terminal, nowhere but errors (--quiet), or JSON."""

    command: str
    quiet: bool = False
    json: bool = False

    def say(self, text: str = "", *, nl: bool = True) -> None:
        if not (self.quiet or self.json):
            typer.echo(text, nl=nl)

    def tell(self, text: str) -> None:
        """A line for the person, on stderr, whatever the mode but --quiet and --json."""
        if not (self.quiet or self.json):
            typer.echo(text, err=True)

    def steps(self) -> Steps:
        """Progress for a person watching stderr in a terminal; for anything else, none."""
        if self.quiet or self.json or not sys.stderr.isatty():
            return SILENT
        return Progress()

    def result(
        self, body: dict[str, Any], *, exit_status: int = 0, error: str | None = None
    ) -> None:
        if self.json:
            shown = envelope(self.command, body, exit_status=exit_status, error=error)
            typer.echo(json.dumps(shown, indent=2, default=str))

    def fail(self, message: str, exit_status: int, prefix: str) -> NoReturn:
        typer.echo(f"lls: {prefix}{message}", err=True)
        self.result({}, exit_status=exit_status, error=message)
        raise typer.Exit(exit_status)


@contextmanager
def handle_errors(
    out: Output, interrupted: str = "interrupted; nothing was written"
) -> Iterator[None]:
    """Every error lls raises on purpose, and Ctrl-C, as one line and an exit status."""
    try:
        yield
    except KeyboardInterrupt:
        out.fail(interrupted, EXIT_INTERRUPTED, prefix="")
    except UserMessageError as error:
        out.fail(str(error), EXIT_USAGE, prefix="error: ")
    except LlsError as error:
        out.fail(str(error), EXIT_ERROR, prefix="failed: ")


def _never_ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
    raise InvalidAnswer(
        question.name,
        "not answered, and --json never asks; give it with --data, or pass --defaults",
    )


def asker(out: Output, *, defaults: bool, no_terminal: str) -> Ask | None:
    """How unanswered questions are answered: defaults, an error (--json, or no terminal to ask
    in: said when a question is left, not before), or a prompt."""
    if defaults:
        return None
    if out.json:
        return _never_ask
    if not sys.stdin.isatty():

        def cannot_ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
            raise UserMessageError(no_terminal)

        return cannot_ask
    return prompt
