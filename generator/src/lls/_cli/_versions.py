"""`lls versions`."""

from __future__ import annotations

import textwrap
from typing import Annotated

import typer

from lls import __version__
from lls._results import versions_result
from lls._shipped import shipped

from ._app import app
from ._output import Output, handle_errors


@app.command()
def versions(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout (keys below).")
    ] = False,
) -> None:
    """List the template releases this lls carries, and what each changed (newest last).

    With --json, stdout is this one object:

    \\b
        {"command": "versions", "exit_status": 0, "error": null,
         "lls_version": "...", "newest": "v...",
         "releases": [{"version": "v...", "date": "YYYY-MM-DD",
                       "runtime_version": "...", "summary": "...",
                       "newest": false}, ...oldest first]}
    """
    out = Output("versions", json=json_output)
    with handle_errors(out):
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
