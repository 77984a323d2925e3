"""`lls fleet status` and `lls fleet upgrade`."""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from lls._fleet import Row, fleet_status, summary
from lls._fleet_upgrade import STATES, Outcome, Plan, fleet_upgrade
from lls._github import GitHub
from lls._shipped import shipped

from ._app import app
from ._check import status_result
from ._output import EXIT_BEHIND, EXIT_ERROR, EXIT_INTERRUPTED, Output, handle_errors

fleet = typer.Typer(
    name="fleet",
    help="See and move many services at once: lls fleet status, lls fleet upgrade.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(fleet)

Sources = Annotated[
    list[str],
    typer.Argument(
        help=(
            "A service's repository, a directory holding repositories (searched for their "
            "answers files), a file listing paths and git URLs (one a line, # for comments), "
            "or a git URL; URLs are cloned into ~/.cache/lls/fleet."
        ),
        show_default=False,
    ),
]
Jobs = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", metavar="N", help="Repositories worked on at once (default: cores)."
    ),
]
JsonOnly = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (keys below).")
]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: drawn by rich, as wide as it needs when stdout is not a terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, highlight=False, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    width = None if sys.stdout.isatty() else 400
    Console(width=width, highlight=False, soft_wrap=False).print(table)


def _row_result(row: Row) -> dict[str, Any]:
    if row.status is None:
        return {"source": row.source, "path": str(row.path) if row.path else None,
                "error": row.error}  # fmt: skip
    return {
        "source": row.source,
        **status_result(row.status),
        "last_upgrade": row.last_upgrade,
        "conflicts": list(row.conflicts) if row.conflicts is not None else None,
        "error": row.error,
    }


COLUMNS = ("service", "team", "path", "release", "runtime", "behind", "last upgrade")


def _cells(row: Row, predicted: bool) -> list[str]:
    if row.status is None:
        return [row.source, "", "", "error", "", "", "", *([row.error or ""] if predicted else [])]
    s = row.status
    cells = [
        s.service_name,
        s.team,
        row.source,
        s.template_version,
        s.runtime_version,
        str(s.releases_behind),
        row.last_upgrade or "",
    ]
    if predicted:
        if row.error:
            cells.append(f"error: {row.error}")
        elif row.conflicts is None:
            cells.append("")
        else:
            cells.append(", ".join(row.conflicts) if row.conflicts else "none")
    return cells


@fleet.command("status")
def status(
    sources: Sources,
    *,
    predict_conflicts: Annotated[
        bool,
        typer.Option(
            "--predict-conflicts",
            help="Try the upgrade of each service behind (a dry run in a temporary clone) and "
            "list the files that would conflict. Slower: it renders two releases per service.",
        ),
    ] = False,
    jobs: Jobs = None,
    json_output: JsonOnly = False,
    csv_output: Annotated[
        bool, typer.Option("--csv", help="Print CSV on stdout (the JSON's keys as columns).")
    ] = False,
) -> None:
    """Show every service's template release, runtime and lag, as a table (or JSON, or CSV).

    One row per service: its name, team and path (or URL), the template release and runtime
    it records, how many releases it is behind the newest this lls carries, and the date of
    its last upgrade (the last commit that changed its answers). Nothing is written, but the
    clones of git URLs in lls's cache.

    Exit status: 0 every service on the newest release; 3 some behind; 1 a source could not
    be read (a URL that would not clone, a broken answers file: a row says which); 2 a
    source that is neither a directory, a file nor a git URL; 130 Ctrl-C.

    With --json, stdout is one object:

    \b
        {"command": "fleet status", "exit_status": 3, "error": null,
         "newest_version": "v...",
         "summary": {"services": 40, "current": 31, "behind": 9, "failed": 0},
         "services": [{"source": "path or URL", "path": "/absolute/SERVICE",
                       "service_name": "...", "team": "...",
                       "template_version": "v...", "template_date": "YYYY-MM-DD",
                       "newest_version": "v...", "newest_date": "YYYY-MM-DD",
                       "releases_behind": 1, "days_behind": 30,
                       "runtime_version": "...", "newest_runtime_version": "...",
                       "last_upgrade": "YYYY-MM-DD" or null,
                       "conflicts": ["README.md"] or [] or null (not predicted),
                       "error": null}, ...]}
    """
    out = Output("fleet status", json=json_output, quiet=csv_output)
    with handle_errors(out, interrupted="interrupted"):
        package = shipped()
        rows = fleet_status(
            sources, predict_conflicts=predict_conflicts, jobs=jobs, steps=out.steps()
        )
    counts = summary(rows)
    exit_status = EXIT_ERROR if counts["failed"] else EXIT_BEHIND if counts["behind"] else 0
    results = [_row_result(row) for row in rows]
    if json_output:
        out.result(
            {"newest_version": package.latest.tag, "summary": counts, "services": results},
            exit_status=exit_status,
        )
    elif csv_output:
        typer.echo(_csv(results), nl=False)
    else:
        headers = [*COLUMNS, *(["conflicts"] if predict_conflicts else [])]
        _table(headers, [_cells(row, predict_conflicts) for row in rows])
        typer.echo(_status_line(rows, package.latest.tag))
    raise typer.Exit(exit_status)


def _csv(results: list[dict[str, Any]]) -> str:
    keys = ["source", "path", "service_name", "team", "template_version", "template_date",
            "newest_version", "releases_behind", "days_behind", "runtime_version",
            "newest_runtime_version", "last_upgrade", "conflicts", "error"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        conflicts = result.get("conflicts")
        shown = " ".join(conflicts) if isinstance(conflicts, list) else ""
        writer.writerow({**result, "conflicts": shown})
    return buffer.getvalue()


def _status_line(rows: Sequence[Row], newest: str) -> str:
    read = [row.status for row in rows if row.status]
    behind = Counter(s.template_version for s in read if not s.current)
    current = sum(1 for s in read if s.current)
    line = f"{len(read)} service(s): {current} on {newest} (the newest)"
    if behind:
        at = ", ".join(f"{n} at {version}" for version, n in sorted(behind.items()))
        line += f", {sum(behind.values())} behind ({at})"
    failed = sum(1 for row in rows if row.status is None)
    return line + (f"; {failed} source(s) could not be read" if failed else "") + "."


@fleet.command("upgrade")
def upgrade(
    sources: Sources,
    *,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="VERSION", help="Template release to go to (default: the newest)."
        ),
    ] = None,
    jobs: Jobs = None,
    test: Annotated[
        bool,
        typer.Option("--test", help="Run each upgraded service's own tests (python3 dev.py test)."),
    ] = False,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Push each upgrade branch to the repository's remote; with GITHUB_TOKEN set, "
            "open a pull request for it on GitHub.",
        ),
    ] = False,
    remote: Annotated[
        str, typer.Option("--remote", metavar="NAME", help="The remote to push to.")
    ] = "origin",
    github_api: Annotated[
        str | None,
        typer.Option(
            "--github-api",
            metavar="URL",
            help="GitHub's REST API (default: $GITHUB_API_URL, else https://api.github.com).",
        ),
    ] = None,
    json_output: JsonOnly = False,
) -> None:
    """Upgrade every service to a template release, each on its own branch, for review.

    For each repository, in a temporary clone: `lls upgrade` (branch
    lls-upgrade/SERVICE/VERSION), with --test the service's own tests, then the branch is
    added to the repository (as a ref: what is checked out is never touched) and, with
    --push, pushed to its remote; when GITHUB_TOKEN (or GH_TOKEN) is set and the remote is
    on GitHub (GITHUB_SERVER_URL, default https://github.com), a pull request is opened.
    A repository whose branch already exists (with --push: on the remote) is not upgraded
    again; a second run only finishes what the first left (a push, a pull request). A
    service whose upgrade conflicts is reported with its files, and changed nowhere: its team
    runs `lls upgrade` and resolves them. Ctrl-C stops every repository's work where it is
    and changes none half-way (exit status 130).

    Exit status: 0 every service upgraded (or already current); 1 some conflicted, failed
    their tests, were refused or failed; 2 a source that is neither a directory, a file nor
    a git URL; 130 Ctrl-C.

    With --json, stdout is one object:

    \b
        {"command": "fleet upgrade", "exit_status": 1, "error": null,
         "to_version": "v...",
         "summary": {"upgraded": 18, "conflicts": 1, "tests-failed": 0, "refused": 0,
                     "failed": 0, "current": 21, "interrupted": 0},
         "repositories": [{"source": "path or URL", "path": "/absolute/SERVICE",
                           "service_name": "...", "state": "upgraded",
                           "from_version": "v...", "to_version": "v...",
                           "branch": "lls-upgrade/...", "commit": "<sha>",
                           "already": false, "pushed": true,
                           "pull_request": "https://github.com/.../pull/7" or null,
                           "conflicts": [], "reason": null, "log": null}, ...]}
    """
    out = Output("fleet upgrade", json=json_output)
    with handle_errors(out, interrupted="interrupted"):
        package = shipped()
        release = package.release(to) if to else package.latest
        plan = Plan(release, test=test, push=push, remote=remote,
                    github=GitHub.from_environment(github_api) if push else None)  # fmt: skip
        outcomes, interrupted = fleet_upgrade(
            sources, plan, jobs=jobs, done=None if out.json else _progress
        )
    counts = Counter(o.state for o in outcomes)
    troubled = any(o.state not in ("upgraded", "current") for o in outcomes)
    exit_status = EXIT_INTERRUPTED if interrupted else EXIT_ERROR if troubled else 0
    out.result(
        {
            "to_version": release.tag,
            "summary": {state: counts.get(state, 0) for state in STATES},
            "repositories": [_outcome_result(o) for o in outcomes],
        },
        exit_status=exit_status,
        error="interrupted" if interrupted else None,
    )
    if not out.json:
        _table(
            ("service", "state", "branch", "details"),
            [[o.service_name or o.source, o.state, o.branch or "", _details(o)] for o in outcomes],
        )
        shown = ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))
        typer.echo(f"{len(outcomes)} repositories to {release.tag}: {shown or 'none'}.")
    if interrupted:
        typer.echo("lls: interrupted; no repository was left half-changed", err=True)
    raise typer.Exit(exit_status)


def _progress(outcome: Outcome) -> None:
    typer.echo(f"{outcome.service_name or outcome.source}: {outcome.state}", err=True)


def _details(o: Outcome) -> str:
    parts = []
    if o.conflicts:
        parts.append("conflicts in " + ", ".join(o.conflicts))
    if o.already:
        parts.append("branch there from an earlier run")
    if o.pushed:
        parts.append("pushed")
    if o.pull_request:
        parts.append(o.pull_request)
    if o.reason:
        parts.append(o.reason)
    if o.state == "current":
        parts.append(f"at {o.from_version}")
    return "; ".join(parts)


def _outcome_result(o: Outcome) -> dict[str, Any]:
    return {
        "source": o.source,
        "path": str(o.path) if o.path else None,
        "service_name": o.service_name,
        "state": o.state,
        "from_version": o.from_version,
        "to_version": o.to_version,
        "branch": o.branch,
        "commit": o.commit,
        "already": o.already,
        "pushed": o.pushed,
        "pull_request": o.pull_request,
        "conflicts": list(o.conflicts),
        "reason": o.reason,
        "log": str(o.log) if o.log else None,
    }
