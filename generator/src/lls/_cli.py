"""The `lls` command. The only module that prints, prompts or chooses an exit status."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from . import __version__
from ._errors import InvalidAnswer, LlsError, UserMessageError
from ._new import Ask, parse_data, read_data_file
from ._new import new as new_service
from ._prompt import ask as prompt
from ._questions import Question
from ._results import envelope, new_result, upgrade_result, versions_result
from ._shipped import shipped
from ._steps import SILENT, Steps
from ._upgrade import Upgrade
from ._upgrade import upgrade as upgrade_service

EXIT_ERROR = 1  # lls or a tool it runs failed
EXIT_USAGE = 2  # the user's input was refused (bad answer, bad option, existing directory)
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

app = typer.Typer(
    name="lls",
    help=(
        "Scaffold, and keep current, real-time ML model-serving services.\n\n"
        "Every service is rendered from a versioned template shipped inside lls and pins the "
        "lls serving runtime by exact version."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _Progress:
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
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        spinner = SpinnerColumn("dots" if self._utf8 else "line")
        line = TextColumn("{task.description}", markup=False)
        started = time.monotonic()
        self._running = True
        try:
            with Progress(
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
class _Output:
    """Where a command's words go: the terminal, nowhere but errors (--quiet), or JSON."""

    command: str
    quiet: bool = False
    json: bool = False

    def say(self, text: str = "", *, nl: bool = True) -> None:
        if not (self.quiet or self.json):
            typer.echo(text, nl=nl)

    def steps(self) -> Steps:
        """Progress for a person watching stderr in a terminal; for anything else, none."""
        if self.quiet or self.json or not sys.stderr.isatty():
            return SILENT
        return _Progress()

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
def _handle_errors(out: _Output) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        out.fail("interrupted; nothing was written", EXIT_INTERRUPTED, prefix="")
    except UserMessageError as error:
        out.fail(str(error), EXIT_USAGE, prefix="error: ")
    except LlsError as error:
        out.fail(str(error), EXIT_ERROR, prefix="failed: ")


def _never_ask(question: Question, default: Any, resolve: Callable[[Any], Any]) -> Any:
    raise InvalidAnswer(
        question.name,
        "not answered, and --json never asks; give it with --data, or pass --defaults",
    )


def _asker(out: _Output, *, defaults: bool, no_terminal: str) -> Ask | None:
    """How unanswered questions are answered: defaults, an error (--json), or a prompt."""
    if defaults:
        return None
    if out.json:
        return _never_ask
    if not sys.stdin.isatty():
        raise UserMessageError(no_terminal)
    return prompt


def _print_version(value: bool) -> None:
    if not value:
        return
    with _handle_errors(_Output("version")):
        package = shipped()
        typer.echo(
            f"lls {__version__} (template {package.latest_template}, "
            f"serving runtime {package.runtime_version})"
        )
    raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the versions of lls, its newest template and its serving runtime.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Scaffold, and keep current, real-time ML model-serving services."""


@app.command()
def new(
    dest: Annotated[
        Path | None,
        typer.Argument(
            help="Directory to create (default: ./SERVICE_NAME). Must be empty or missing.",
            show_default=False,
        ),
    ] = None,
    *,
    defaults: Annotated[
        bool,
        typer.Option("--defaults", help="Take the default of every question not given; ask none."),
    ] = False,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            metavar="KEY=VALUE",
            help="Answer a question (repeatable); wins over --data-file and prompts.",
        ),
    ] = None,
    data_file: Annotated[
        Path | None,
        typer.Option(
            "--data-file",
            metavar="FILE",
            help="YAML file of answers, e.g. another service's .copier-answers.yml.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Render into DEST even if it holds files (overwrites them)."),
    ] = False,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            metavar="VERSION",
            help="Template release to render (default: the newest; see lls versions).",
        ),
    ] = None,
    quiet: Quiet = False,
    json_output: Json = False,
) -> None:
    """Create a model-serving service repository from the lls template.

    Asks for the team, service name, model framework, resources, replicas and SLOs (each
    answer checked, and asked again with the reason when wrong), renders the newest template
    into DEST, writes the serving runtime wheel into it and makes a first git commit.

    Examples (the first asks every question; the others ask none):

    \b
        lls new
        lls new fraud-score --defaults --data team=payments --data framework=xgboost
        lls new --data-file answers.yml --defaults
        lls new old-style --defaults --version v0.1.0

    Any refused answer given with --data or --data-file stops lls with the question's name
    and the reason, exit status 2, and nothing written; so does Ctrl-C (exit status 130).
    In a terminal, each step after the questions is shown on stderr as it runs; --quiet
    prints nothing but errors.

    With --json nothing is asked (a question answered neither by --data, --data-file nor
    --defaults is an error) and stdout is one object:

    \b
        {"command": "new", "exit_status": 0, "error": null,
         "path": "/absolute/DEST", "service_name": "...",
         "template_version": "v...", "runtime_version": "...",
         "commit": "<sha>", "commit_author": "Name <email>",
         "answers": {"team": "...", ...every answer recorded}}

    On failure it is {"command": "new", "exit_status": N, "error": "the message"}, the
    message also on stderr; N is 1 when lls or a tool it runs failed, 2 for a refused
    input, 130 for Ctrl-C. (An option the parser does not know is reported on stderr only.)
    """
    out = _Output("new", quiet=quiet, json=json_output)
    with _handle_errors(out):
        given = parse_data(data or [])
        from_file = read_data_file(data_file) if data_file else {}
        no_terminal = (
            "no terminal to ask the questions in; pass --defaults "
            "(with --data or --data-file for the answers you want)"
        )
        made = new_service(
            dest,
            data=given,
            data_file=from_file,
            ask=_asker(out, defaults=defaults, no_terminal=no_terminal),
            force=force,
            version=version,
            steps=out.steps(),
        )
    out.result(new_result(made))
    answers = made.answers
    out.say(
        f"Created {answers['service_name']} in {made.path} (template {made.template_version}, "
        f"serving runtime {made.runtime_version}, framework {answers['framework']})."
    )
    if made.commit.fallback:
        out.say(
            f"No git identity is configured, so the first commit is by {made.commit.author}; "
            "set git's user.name and user.email to use yours."
        )
    out.say(
        f"\nNext:\n  cd {made.path}\n"
        "  python3 dev.py test    # set up, then lint and run the tests\n"
        "  python3 dev.py serve   # set up, then serve POST /infer on http://127.0.0.1:8080"
    )


@app.command()
def upgrade(
    path: Annotated[
        Path,
        typer.Argument(help="The service repository (default: the current directory)."),
    ] = Path(),
    *,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="VERSION", help="Template release to go to (default: the newest)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would change, and change nothing."),
    ] = False,
    defaults: Annotated[
        bool,
        typer.Option("--defaults", help="Answer new questions with their defaults; ask none."),
    ] = False,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            metavar="KEY=VALUE",
            help="Answer a new question, or change an earlier answer (repeatable).",
        ),
    ] = None,
    stage: Annotated[
        bool,
        typer.Option(
            "--stage",
            help="Leave the result staged on the current branch instead of a new branch.",
        ),
    ] = False,
    quiet: Quiet = False,
    json_output: Json = False,
) -> None:
    """Move a service to a newer template release, keeping the team's edits.

    Copier's three-way update: the recorded answers are reused and only questions new in the
    release are asked; the serving runtime pin and the wheel in wheels/ move with it; the
    release's migrations run. The result is a commit on a new branch lls-upgrade/VERSION, to
    review as a pull request (or staged, with --stage). Where the team and the template
    changed the same lines, both are kept between conflict markers, the files are listed
    and the exit status is 1. The repository must have no uncommitted changes.

    Examples (run in the service's repository; the last two ask nothing):

    \b
        lls upgrade --dry-run    # show the diff, write nothing
        lls upgrade              # a commit on the new branch lls-upgrade/VERSION
        lls upgrade --defaults --to v0.2.0 --data spread_across_zones=no
        lls upgrade --defaults --stage --data min_replicas=3

    In a terminal, each step is shown on stderr as it runs; Ctrl-C (exit status 130) leaves
    the repository as it was. With --quiet only errors are printed (and a dry run's diff).

    With --json nothing is asked (a new question answered neither by --data nor --defaults
    is an error) and stdout is one object:

    \b
        {"command": "upgrade", "exit_status": 0, "error": null,
         "path": "/absolute/PATH", "from_version": "v...", "to_version": "v...",
         "from_runtime_version": "...", "to_runtime_version": "...",
         "dry_run": false, "branch": "lls-upgrade/v..." or null,
         "commit": "<sha>" or null, "staged": false,
         "new_answers": {"question": "answer", ...},
         "added": ["path", ...], "changed": [...], "removed": [...],
         "renamed": [{"from": "path", "to": "path"}, ...],
         "conflicts": [...], "diff": "git diff --stat --patch of it all"}

    With conflicts, "exit_status" is 1 and "error" says how many. On any other failure
    it is {"command": "upgrade", "exit_status": N, "error": "the message"}, the message
    also on stderr; N is 1 when lls or git failed, 2 for a refused input, 130 for Ctrl-C.
    """
    out = _Output("upgrade", quiet=quiet, json=json_output)
    with _handle_errors(out):
        given = parse_data(data or [])
        no_terminal = (
            "no terminal to ask new questions in; pass --defaults "
            "(with --data for the answers you want)"
        )
        done = upgrade_service(
            path,
            to=to,
            data=given,
            ask=_asker(out, defaults=defaults, no_terminal=no_terminal),
            dry_run=dry_run,
            stage=stage,
            steps=out.steps(),
        )
    conflicted = None
    if done.conflicts:
        conflicted = f"{len(done.conflicts)} conflicted file(s): {', '.join(done.conflicts)}"
    out.result(upgrade_result(done), exit_status=EXIT_ERROR if conflicted else 0, error=conflicted)
    _report_upgrade(done, out)
    if done.conflicts:
        _report_conflicts(done)
        raise typer.Exit(EXIT_ERROR)


def _report_upgrade(done: Upgrade, out: _Output) -> None:
    old, new = done.from_release, done.to_release
    if done.dry_run and not out.json:  # the diff is what a dry run is for, even when quiet
        typer.echo(done.diff, nl=False)
        typer.echo("")
    verb = "would change" if done.dry_run else "changes"
    if old.version == new.version:
        out.say(f"New answers for {done.path} at template {new.tag} {verb}:")
    else:
        out.say(
            f"Upgrade {done.path} from template {old.tag} to {new.tag} "
            f"(serving runtime {old.runtime_version} -> {new.runtime_version}) {verb}:"
        )
    for label, paths in (
        ("changed", done.changed),
        ("added", done.added),
        ("removed", done.removed),
        ("renamed", tuple(f"{a} -> {b}" for a, b in done.renamed)),
        ("conflicts", done.conflicts),
    ):
        out.say(f"  {label:9} {len(paths)}")
        for item in paths if label != "changed" or len(paths) <= 30 else ():
            out.say(f"    {item}")
    for name in done.asked:
        out.say(f"New question {name}: {done.answers[name]}")
    if done.dry_run:
        out.say("Dry run: nothing was written.")
    elif done.conflicts:
        return  # _report_conflicts says what to do, on stderr whatever the mode
    elif done.branch:
        out.say(
            f"\nCommitted on the new branch {done.branch} ({(done.commit or '')[:12]}), now "
            f"checked out. Run the tests (python3 dev.py test), then push it for review:\n"
            f"  git push -u origin {done.branch}"
        )
    else:
        out.say("\nStaged on the current branch; review with `git diff --cached`, then commit.")


def _report_conflicts(done: Upgrade) -> None:
    typer.echo(
        f"\n{len(done.conflicts)} conflicted file(s): the team's lines and the template's "
        "are both kept between <<<<<<< before updating / >>>>>>> after updating markers "
        "(or in .rej files). Resolve them, then `git add` and `git commit`:",
        err=True,
    )
    for name in done.conflicts:
        typer.echo(f"  {name}", err=True)
    where = f"on the new branch {done.branch}" if done.branch else "on the current branch"
    typer.echo(f"The other changes are staged {where}.", err=True)


@app.command()
def versions(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout (keys below).")
    ] = False,
) -> None:
    """List the template releases this lls carries, and what each changed (newest last).

    With --json, stdout is this one object:

    \b
        {"command": "versions", "exit_status": 0, "error": null,
         "lls_version": "...", "newest": "v...",
         "releases": [{"version": "v...", "date": "YYYY-MM-DD",
                       "runtime_version": "...", "summary": "...",
                       "newest": false}, ...oldest first]}
    """
    out = _Output("versions", json=json_output)
    with _handle_errors(out):
        package = shipped()
    out.result(versions_result(package, __version__))
    if out.json:
        return
    for release in package.releases:
        latest = "  (newest)" if release == package.latest else ""
        typer.echo(
            f"{release.tag}  {release.date}  serving runtime {release.runtime_version}{latest}"
        )
        for line in textwrap.wrap(release.summary, width=88):
            typer.echo(f"    {line}")


def main() -> None:
    """Entry point of the `lls` console script."""
    app(prog_name="lls")
