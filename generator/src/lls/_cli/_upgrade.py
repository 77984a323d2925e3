"""`lls upgrade`, with `--continue` and `--abort` for an upgrade left with conflicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lls._errors import UserMessageError
from lls._landing import Finished, abort_upgrade, continue_upgrade
from lls._new import parse_data
from lls._results import upgrade_result
from lls._upgrade import Upgrade
from lls._upgrade import upgrade as upgrade_service

from ._app import app
from ._output import EXIT_ERROR, Json, Output, Quiet, asker, handle_errors


@app.command()
def upgrade(
    path: Annotated[
        Path,
        typer.Argument(
            help="The service, or any directory in it (default: the current directory)."
        ),
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
        typer.Option(
            "--dry-run",
            help="Show what would change (from the last commit), and change nothing.",
        ),
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
    continue_: Annotated[
        bool,
        typer.Option(
            "--continue",
            help="Commit an upgrade whose conflicts are resolved, with lls's message.",
        ),
    ] = False,
    abort: Annotated[
        bool,
        typer.Option(
            "--abort",
            help="Undo an upgrade left with conflicts: back to the branch and files before it.",
        ),
    ] = False,
    quiet: Quiet = False,
    json_output: Json = False,
) -> None:
    """Move a service to a newer template release, keeping the team's edits.

    Copier's three-way update: the recorded answers are reused and only questions new in the
    release are asked; the serving runtime pin and the wheel in wheels/ move with it; the
    release's migrations run. The result is a commit on a new branch
    lls-upgrade/SERVICE/VERSION, to review as a pull request (or staged, with --stage). The
    repository must have no uncommitted changes (but for --dry-run). A service already at the
    release is left alone (exit status 0).

    Where the team and the template changed the same lines, the upgrade stops as a git merge
    does (exit status 1): the other changes staged, each conflicted file unmerged, with
    <<<<<<< yours / ||||||| template OLD / ======= / >>>>>>> template NEW markers, for
    git status, git mergetool or your editor. Resolve and `git add` them, then
    `lls upgrade --continue` commits with lls's message; `lls upgrade --abort` puts the
    repository back as it was.

    Examples (run in the service's repository; the last two ask nothing):

    \b
        lls upgrade --dry-run    # show the diff, write nothing
        lls upgrade              # a commit on the new branch lls-upgrade/SERVICE/VERSION
        lls upgrade --defaults --to v0.2.0 --data spread_across_zones=no
        lls upgrade --defaults --stage --data min_replicas=3

    In a terminal, each step is shown on stderr as it runs, and the questions are asked
    there (never on stdout); Ctrl-C (exit status 130) leaves the repository as it was. With
    --quiet only errors are printed (and a dry run's diff).

    With --json nothing is asked (a new question answered neither by --data nor --defaults
    is an error) and stdout is one object:

    \b
        {"command": "upgrade", "exit_status": 0, "error": null,
         "path": "/absolute/SERVICE", "from_version": "v...", "to_version": "v...",
         "from_runtime_version": "...", "to_runtime_version": "...",
         "current": false, "dry_run": false,
         "branch": "lls-upgrade/..." or null, "commit": "<sha>" or null, "staged": false,
         "new_answers": {"question": "answer", ...}, "changed_answers": {...},
         "added": ["path", ...], "changed": [...], "removed": [...],
         "renamed": [{"from": "path", "to": "path"}, ...],
         "conflicts": [...], "kept_deleted": [...],
         "diff": "git diff --stat --patch of it all"}

    "kept_deleted" (and the lines under "kept deleted") are the files of the old release the
    team deleted or moved away, which the new release has: they stay deleted, as the team's
    side of a three-way merge (a file new in the release still arrives).

    With conflicts, "exit_status" is 1 and "error" says how many. On any other failure
    it is {"command": "upgrade", "exit_status": N, "error": "the message"}, the message
    also on stderr; N is 1 when lls or git failed, 2 for a refused input, 130 for Ctrl-C.
    With --continue or --abort the object is {"command": "upgrade", "exit_status": 0,
    "error": null, "repository": "/absolute/TOP", "branch": ..., "commit": ...}.
    """
    out = Output("upgrade", quiet=quiet, json=json_output)
    if continue_ or abort:
        _finish(out, path, continue_=continue_, abort=abort, others=bool(to or dry_run or data))
        return
    with handle_errors(out):
        given = parse_data(data or [])
        no_terminal = (
            "no terminal to ask new questions in; pass --defaults "
            "(with --data for the answers you want)"
        )
        done = upgrade_service(
            path,
            to=to,
            data=given,
            ask=asker(out, defaults=defaults, no_terminal=no_terminal),
            dry_run=dry_run,
            stage=stage,
            steps=out.steps(),
        )
    conflicted = None
    if done.conflicts:
        conflicted = f"{len(done.conflicts)} conflicted file(s): {', '.join(done.conflicts)}"
    out.result(upgrade_result(done), exit_status=EXIT_ERROR if conflicted else 0, error=conflicted)
    if done.current:
        out.say(_current_line(done))
        return
    _report(done, out)
    if done.conflicts:
        _report_conflicts(done)
        raise typer.Exit(EXIT_ERROR)


def _current_line(done: Upgrade) -> str:
    return f"{done.path} is already at template {done.to_release.tag}; nothing to do."


def _finish(out: Output, path: Path, *, continue_: bool, abort: bool, others: bool) -> None:
    with handle_errors(out, interrupted="interrupted"):
        if continue_ and abort:
            raise UserMessageError("--continue and --abort exclude each other")
        if others:
            raise UserMessageError("--continue and --abort take no --to, --dry-run or --data")
        finished: Finished = continue_upgrade(path) if continue_ else abort_upgrade(path)
    out.result(
        {
            "repository": str(finished.top),
            "branch": finished.branch,
            "commit": finished.commit,
        }
    )
    if continue_:
        where = f"on {finished.branch}" if finished.branch else "on the current branch"
        out.say(
            f"Committed the upgrade {where} ({(finished.commit or '')[:12]}). Run the tests "
            "(python3 dev.py test), then push it for review."
        )
    else:
        where = finished.branch or f"the detached commit {(finished.commit or '')[:12]}"
        out.say(f"Upgrade undone: back on {where}, as before it.")


def _report(done: Upgrade, out: Output) -> None:
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
        ("kept deleted", done.kept_deleted),
    ):
        if label == "kept deleted" and not paths:
            continue  # said only when the team deleted a file the new release has
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
    where = f"on the new branch {done.branch}" if done.branch else "on the current branch"
    typer.echo(
        f"\n{len(done.conflicts)} conflicted file(s), left unmerged {where} as a git merge "
        "leaves them (the other changes are staged):",
        err=True,
    )
    for name in done.conflicts:
        typer.echo(f"  {name}", err=True)
    typer.echo(
        "Resolve each (git mergetool, or your editor: <<<<<<< yours, ||||||| the old "
        "template, >>>>>>> the new one), `git add` it, then run `lls upgrade --continue`; "
        "`lls upgrade --abort` undoes it all.",
        err=True,
    )
