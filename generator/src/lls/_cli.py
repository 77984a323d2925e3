"""The `lls` command. The only module that prints, prompts or chooses an exit status."""

from __future__ import annotations

import sys
import textwrap
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
from ._upgrade import Upgrade
from ._upgrade import upgrade as upgrade_service

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
        made = new_service(
            dest, data=given, data_file=from_file, ask=ask, force=force, version=version
        )
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
    """
    with _handle_errors():
        given = parse_data(data or [])
        if not defaults and not sys.stdin.isatty():
            raise UserMessageError(
                "no terminal to ask new questions in; pass --defaults "
                "(with --data for the answers you want)"
            )
        done = upgrade_service(
            path,
            to=to,
            data=given,
            ask=None if defaults else prompt,
            dry_run=dry_run,
            stage=stage,
        )
    _report_upgrade(done)
    if done.conflicts:
        raise typer.Exit(EXIT_ERROR)


def _report_upgrade(done: Upgrade) -> None:
    old, new = done.from_release, done.to_release
    if done.dry_run:
        typer.echo(done.diff, nl=False)
        typer.echo("")
    verb = "would change" if done.dry_run else "changes"
    typer.echo(
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
        typer.echo(f"  {label:9} {len(paths)}")
        for item in paths if label != "changed" or len(paths) <= 30 else ():
            typer.echo(f"    {item}")
    for name in done.asked:
        typer.echo(f"New question {name}: {done.answers[name]}")
    if done.dry_run:
        typer.echo("Dry run: nothing was written.")
        return
    if done.conflicts:
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
    elif done.branch:
        typer.echo(
            f"\nCommitted on the new branch {done.branch} ({(done.commit or '')[:12]}), now "
            f"checked out. Run the tests (python3 dev.py test), then push it for review:\n"
            f"  git push -u origin {done.branch}"
        )
    else:
        typer.echo("\nStaged on the current branch; review with `git diff --cached`, then commit.")


@app.command()
def versions() -> None:
    """List the template releases this lls carries, and what each changed (newest last)."""
    with _handle_errors():
        package = shipped()
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
