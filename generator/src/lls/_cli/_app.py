"""The `lls` typer app, which each command module adds its commands to."""

from __future__ import annotations

from typing import Annotated

import typer

from lls import __version__
from lls._shipped import shipped

from ._output import Output, handle_errors

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


def _print_version(value: bool) -> None:
    if not value:
        return
    with handle_errors(Output("version")):
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
