"""The `lls` command. The only module that prints, prompts or chooses an exit status."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from ._errors import LlsError, UserMessageError
from ._new import new as new_service
from ._new import parse_data, read_data_file
from ._prompt import ask as prompt
from ._shipped import shipped

EXIT_ERROR = 1  # lls or a tool it runs failed
EXIT_USAGE = 2  # the user's input was refused (bad answer, bad option, existing directory)
EXIT_INTERRUPTED = 130

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


@contextmanager
def _handle_errors() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("lls: interrupted; nothing was written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except UserMessageError as error:
        typer.echo(f"lls: error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except LlsError as error:
        typer.echo(f"lls: failed: {error}", err=True)
        raise typer.Exit(EXIT_ERROR) from None


def _print_version(value: bool) -> None:
    if not value:
        return
    with _handle_errors():
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

    Any refused answer given with --data or --data-file stops lls with the question's name
    and the reason, exit status 2, and nothing written.
    """
    with _handle_errors():
        given = parse_data(data or [])
        from_file = read_data_file(data_file) if data_file else {}
        if not defaults and not sys.stdin.isatty():
            raise UserMessageError(
                "no terminal to ask the questions in; pass --defaults "
                "(with --data or --data-file for the answers you want)"
            )
        ask = None if defaults else prompt
        made = new_service(dest, data=given, data_file=from_file, ask=ask, force=force)
    answers = made.answers
    typer.echo(
        f"Created {answers['service_name']} in {made.path} (template {made.template_version}, "
        f"serving runtime {made.runtime_version}, framework {answers['framework']})."
    )
    if made.commit.fallback:
        typer.echo(
            f"No git identity is configured, so the first commit is by {made.commit.author}; "
            "set git's user.name and user.email to use yours."
        )
    typer.echo(
        f"\nNext:\n  cd {made.path}\n"
        "  python3 dev.py test    # set up, then lint and run the tests\n"
        "  python3 dev.py serve   # set up, then serve POST /infer on http://127.0.0.1:8080"
    )


def main() -> None:
    """Entry point of the `lls` console script."""
    app(prog_name="lls")
