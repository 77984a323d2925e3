"""`lls new`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from lls._errors import LlsError
from lls._new import new as new_service
from lls._new import parse_data, read_data_file
from lls._results import new_result
from lls._service import questions
from lls._shipped import shipped

from ._app import app
from ._output import Json, Output, Quiet, asker, handle_errors


class _WithQuestions(TyperCommand):
    """`--help` ends with the questions of the newest release, read only when help is asked."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        super().format_epilog(ctx, formatter)
        try:
            package = shipped()
            found = questions(package, package.latest)
        except LlsError:  # a broken installation: the help is still worth showing
            return
        fixed = package.fixed_answers(package.latest)
        rows = []
        for question in found:
            if question.computed or question.name in fixed:
                continue
            accepts = question.help
            if question.choices:
                accepts += "; one of " + ", ".join(str(value) for _, value in question.choices)
            rows.append((question.name, accepts))
        computed = ", ".join(q.name for q in found if q.computed)
        with formatter.section(f"Questions of template {package.latest.tag} (the KEYs of --data)"):
            formatter.write_dl(rows)
        formatter.write_paragraph()
        formatter.write_text(
            f"Set by lls, never given: {', '.join(fixed)}; computed from the answers: {computed}."
        )


@app.command(cls=_WithQuestions)
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
        typer.Option(
            "--force",
            help=(
                "Render into DEST even if it holds files (the rendered ones are overwritten; "
                "the others are left, and never committed)."
            ),
        ),
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
    into DEST, writes the serving runtime wheel into it and makes a first git commit. Inside
    an existing git repository (a monorepo), DEST is committed there, its own files only,
    rather than made a repository of its own.

    Examples (the first asks every question; the others ask none):

    \b
        lls new
        lls new fraud-score --defaults --data team=payments --data framework=xgboost
        lls new --data-file answers.yml --defaults
        lls new old-style --defaults --version v0.1.0

    Any refused answer given with --data or --data-file stops lls with the question's name
    and the reason, exit status 2, and nothing written; so does Ctrl-C or Ctrl-D (exit
    status 130). In a terminal, each step after the questions is shown on stderr as it runs;
    --quiet prints nothing but errors.

    With --json nothing is asked (a question answered neither by --data, --data-file nor
    --defaults is an error) and stdout is one object:

    \b
        {"command": "new", "exit_status": 0, "error": null,
         "path": "/absolute/DEST", "service_name": "...",
         "template_version": "v...", "runtime_version": "...",
         "commit": "<sha>", "commit_author": "Name <email>",
         "repository": "/absolute/path of the git repository committed in",
         "answers": {"team": "...", ...every answer recorded}}

    On failure it is {"command": "new", "exit_status": N, "error": "the message"}, the
    message also on stderr; N is 1 when lls or a tool it runs failed, 2 for a refused
    input, 130 for Ctrl-C. (An option the parser does not know is reported on stderr only.)
    """
    out = Output("new", quiet=quiet, json=json_output)
    with handle_errors(out):
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
            ask=asker(out, defaults=defaults, no_terminal=no_terminal),
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
    if made.nested:
        out.say(
            f"{made.path} is inside the git repository {made.commit.repository}: the service is "
            f"committed there ({made.commit.sha[:12]}), not made a repository of its own."
        )
    if made.commit.author.fallback:
        out.say(
            f"No git identity is configured, so the first commit is by {made.commit.author}; "
            "set git's user.name and user.email to use yours."
        )
    out.say(
        f"\nNext:\n  cd {made.path}\n"
        "  python3 dev.py test    # set up, then lint and run the tests\n"
        "  python3 dev.py serve   # set up, then serve POST /infer on http://127.0.0.1:8080"
    )
