"""`lls check` and `lls diff`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from lls._check import Check, Divergence, Status
from lls._check import check as check_service
from lls._check import diff as diff_service

from ._app import app
from ._output import EXIT_BEHIND, EXIT_DRIFTED, Output, handle_errors

PathArgument = Annotated[
    Path,
    typer.Argument(help="The service, or any directory in it (default: the current directory)."),
]
JsonOnly = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (keys below).")
]


def status_result(status: Status) -> dict[str, Any]:
    """A service's status as `check --json` and `fleet status --json` show it."""
    return {
        "path": str(status.path),
        "service_name": status.service_name,
        "team": status.team,
        "template_version": status.template_version,
        "template_date": status.template_date,
        "newest_version": status.newest_version,
        "newest_date": status.newest_date,
        "releases_behind": status.releases_behind,
        "days_behind": status.days_behind,
        "runtime_version": status.runtime_version,
        "newest_runtime_version": status.newest_runtime_version,
    }


def _check_result(done: Check) -> dict[str, Any]:
    return {
        **status_result(done.status),
        "pinned_runtime_version": done.pinned_runtime,
        "current": done.status.current,
        "drifted": [{"path": d.path, "how": d.how} for d in done.drifted],
    }


@app.command()
def check(
    path: PathArgument = Path(),
    *,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift/--no-drift",
            help="Compare the platform's files with the recorded release (renders it).",
        ),
    ] = True,
    json_output: JsonOnly = False,
) -> None:
    """Say whether a service is on the newest template release, and how far behind it is.

    Reports the template release the service records, the newest this lls carries, how many
    releases and days (between the two releases' dates) it is behind, the serving runtime
    it pins, and whether the files the platform owns (chart templates, CI workflow,
    Dockerfile, dev.py, alert rules, dashboard, runbook, the runtime wheel) still are what
    its release renders from its answers. Nothing is written.

    Exit status, for a CI gate: 0 on the newest release, nothing drifted; 3 a newer release
    exists; 4 on the newest release, but platform files drifted; 2 not a service lls made
    (or a broken answers file); 1 lls itself failed. In GitHub Actions (GITHUB_ACTIONS=true)
    the findings are also annotations (::warning) on the run.

    With --json, stdout is one object:

    \b
        {"command": "check", "exit_status": 3, "error": null,
         "path": "/absolute/SERVICE", "service_name": "...", "team": "...",
         "template_version": "v...", "template_date": "YYYY-MM-DD",
         "newest_version": "v...", "newest_date": "YYYY-MM-DD",
         "releases_behind": 2, "days_behind": 30, "current": false,
         "runtime_version": "...", "pinned_runtime_version": "...",
         "newest_runtime_version": "...",
         "drifted": [{"path": "chart/templates/deployment.yaml", "how": "changed"}, ...]}
    """
    out = Output("check", json=json_output)
    with handle_errors(out, interrupted="interrupted"):
        done = check_service(path, drift=drift)
    status = done.status
    exit_status = EXIT_BEHIND if not status.current else EXIT_DRIFTED if done.drifted else 0
    out.result(_check_result(done), exit_status=exit_status)
    out.say(_summary(done))
    if os.environ.get("GITHUB_ACTIONS") == "true" and not out.json:
        for line in _annotations(done):
            typer.echo(line)
    raise typer.Exit(exit_status)


def _summary(done: Check) -> str:
    status = done.status
    lines = [
        f"{status.service_name} (team {status.team}) at {status.path}",
        f"  template  {status.template_version} ({status.template_date}); newest "
        f"{status.newest_version} ({status.newest_date})",
        f"  behind    {status.releases_behind} release(s), {status.days_behind} day(s)",
        f"  runtime   {status.runtime_version} (the newest release pins "
        f"{status.newest_runtime_version})",
    ]
    if done.pinned_runtime != status.runtime_version:
        lines.append(
            f"  pin       pyproject.toml pins {done.pinned_runtime or 'no lls-serving-runtime'}, "
            f"not {status.runtime_version}"
        )
    for drift in done.drifted:
        lines.append(f"  drifted   {drift.path} ({drift.how})")
    if not status.current:
        lines.append(f"Behind: `lls upgrade` in {status.path} moves it to {status.newest_version}.")
    elif done.drifted:
        lines.append(
            f"Drifted: {len(done.drifted)} platform file(s) differ from template "
            f"{status.template_version}; `lls diff` shows how."
        )
    else:
        lines.append("Current.")
    return "\n".join(lines)


def _annotations(done: Check) -> list[str]:
    status = done.status
    found = []
    if not status.current:
        found.append(
            f"::warning title=lls check::{status.service_name} is {status.releases_behind} "
            f"template release(s) behind ({status.template_version} -> "
            f"{status.newest_version}); run lls upgrade"
        )
    for drift in done.drifted:
        where = os.path.relpath(status.path / drift.path)  # annotations name files from the cwd
        found.append(
            f"::warning file={where},title=lls check::{drift.path} differs from what "
            f"template {status.template_version} renders ({drift.how}); lls diff shows how"
        )
    return found


@app.command()
def diff(path: PathArgument = Path(), *, json_output: JsonOnly = False) -> None:
    """Show what the team changed in a service, against a fresh render of its own release.

    The service's recorded template release is rendered with its recorded answers, and
    every file that differs (the team's edits, files it added or deleted; what git ignores
    left out) is shown as one patch, as `git diff` shows it: the team's divergence, not the
    template's changes (for those, `lls upgrade --dry-run`). Nothing is written; exit status
    0, or 2 for a directory that is not a service lls made.

    With --json, stdout is one object:

    \b
        {"command": "diff", "exit_status": 0, "error": null,
         "path": "/absolute/SERVICE", "template_version": "v...",
         "files": [{"status": "M", "path": "README.md"}, ...],
         "patch": "git diff --stat --patch of it all"}
    """
    out = Output("diff", json=json_output)
    with handle_errors(out, interrupted="interrupted"):
        done: Divergence = diff_service(path)
    out.result(
        {
            "path": str(done.path),
            "template_version": done.template_version,
            "files": [{"status": kind, "path": name} for kind, name in done.files],
            "patch": done.patch,
        }
    )
    if not out.json:
        typer.echo(done.patch, nl=False)
        if not done.files:
            typer.echo(f"{done.path} is as template {done.template_version} renders it.", err=True)
