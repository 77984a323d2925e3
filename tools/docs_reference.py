"""Pages of the docs site generated from the code itself, run by mkdocs-gen-files at build time.

- reference/cli.md: `lls` from its typer app, `serving-runtime` from its argparse parser;
- reference/http.md and reference/openapi.json: the runtime's OpenAPI document, made from the
  route table of a real app;
- reference/configuration.md: every key of models.yaml, from the pydantic models that read it;
- runbook.md: the runbook every service gets, rendered for the example service of the docs.

Nothing here is written by hand, so none of it can drift from what ships.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import mkdocs_gen_files
import typer.main
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lls._cli import app as lls_app
from lls._new import collect_answers
from lls._questions import load_questions
from serving_runtime import _cli as runtime_cli
from serving_runtime._app import create_app
from serving_runtime._config import ModelConfig, RecordingConfig, ServiceConfig, VersionConfig
from serving_runtime._version import __version__
from serving_runtime.http._openapi import document

ROOT = Path(__file__).resolve().parents[1]
# The example service every page of the docs follows.
EXAMPLE_ANSWERS = {"team": "payments", "service_name": "fraud-score"}


def cell(text: str) -> str:
    """Text safe inside one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


# --- command lines -----------------------------------------------------------------------------


def subcommands(group: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """(context, command) for each visible command of a click group (typer vendors click)."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            yield command.make_context(name, [], parent=ctx, resilient_parsing=True), command


def param_rows(command: Any, ctx: Any) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:  # an argument: click gives it no help record
            record = (param.human_readable_name, getattr(param, "help", None) or "")
        name, help_text = record
        rows.append(f"| `{cell(name)}` | {cell(help_text)} |")
    return rows


def lls_reference() -> list[str]:
    group = typer.main.get_command(lls_app)
    root = group.make_context("lls", [], resilient_parsing=True)
    lines = ["## lls", "", group.help or "", "", "```text", group.get_usage(root), "```", ""]
    lines += ["| option | meaning |", "|---|---|", *param_rows(group, root), ""]
    for ctx, command in subcommands(group, root):
        # The help text as --help prints it: its examples are shown, not run, here.
        lines += [f"### lls {ctx.info_name}", "", "```text", textwrap.dedent(command.help or "")]
        lines += ["```", ""]
        lines += ["```text", command.get_usage(ctx), "```", ""]
        lines += ["| argument or option | meaning |", "|---|---|", *param_rows(command, ctx)]
        lines.append("")
    return lines


def argparse_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:  # argparse offers no public way to list them
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            name = ", ".join(action.option_strings) + metavar
        else:
            name = str(action.metavar or action.dest)
        help_text = (action.help or "") % {"prog": parser.prog, "default": action.default}
        if action.choices and not isinstance(action.choices, dict):
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        rows.append(f"| `{cell(name)}` | {cell(help_text)} |")
    return rows


def runtime_reference() -> list[str]:
    parser = runtime_cli._parser()
    lines = ["## serving-runtime", "", parser.description or "", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        text = helps.get(name) or ""
        lines += [f"### serving-runtime {name}", "", text[:1].upper() + text[1:] + ".", ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        rows = argparse_rows(sub)
        lines += ["| argument or option | meaning |", "|---|---|", *rows, ""]
    return lines


def cli_page() -> str:
    intro = [
        "# Command-line reference",
        "",
        "Generated from the commands themselves when this site is built: `lls` from its typer",
        "app, `serving-runtime` from its argument parser. `--help` on any command prints the same.",
        "",
    ]
    return "\n".join([*intro, *lls_reference(), *runtime_reference()])


# --- HTTP --------------------------------------------------------------------------------------

EXAMPLE_MODEL = '''
class Example:
    """Answers the sum of each row."""

    feature_names = ["a", "b"]
    test_data = [{"features": [1.0, 2.0], "expected": [3.0]}]

    def load(self, file):
        pass

    def predict(self, rows):
        return [sum(row) for row in rows]
'''


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def openapi_document() -> dict[str, Any]:
    """The document a real app serves at /openapi.json, from an app with one small model."""
    with tempfile.TemporaryDirectory(prefix="lls-docs-") as folder:
        root = Path(folder)
        (root / "docs_example_model.py").write_text(EXAMPLE_MODEL)
        config = "models:\n  example:\n    class: docs_example_model:Example\n    primary: v1\n"
        (root / "models.yaml").write_text(config + "    versions:\n      v1: {}\n")
        import sys

        sys.path.insert(0, folder)
        try:
            with stdout_to_devnull():  # its log lines, written to fd 1: not for the build's output
                app = create_app(root / "models.yaml", state_dir=root)
            return document(app)
        finally:
            sys.path.remove(folder)
            sys.modules.pop("docs_example_model", None)


def summary(method: str, path: str, operation: dict[str, Any]) -> str:
    """The handler's summary without the "METHOD /path:" it starts with."""
    text = str(operation["summary"])
    first, colon, rest = text.partition(": ")
    return rest if colon and first.startswith(method.upper() + " ") else text


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2)


def http_page(spec: dict[str, Any]) -> str:
    lines = [
        "# HTTP reference",
        "",
        "Generated, when this site is built, from the OpenAPI document the runtime serves at",
        f"`GET /openapi.json` (runtime {spec['info']['version']}; [download](openapi.json)).",
        "The Open Inference Protocol (V2) routes follow their own specification: see",
        "[The serving runtime](../runtime.md#open-inference-protocol-v2-rest).",
        "",
        "| method and path | what it does |",
        "|---|---|",
    ]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            anchor = operation["operationId"].replace("_", "-")
            what = cell(summary(method, path, operation))
            lines.append(f"| [`{method.upper()} {path}`](#{anchor}) | {what} |")
    lines.append("")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            anchor = operation["operationId"].replace("_", "-")
            lines += [f"## `{method.upper()} {path}` {{#{anchor}}}", ""]
            lines += [summary(method, path, operation), ""]
            for parameter in operation.get("parameters", []):
                lines.append(f"- path parameter `{parameter['name']}`")
            body = operation.get("requestBody")
            if body is not None:
                for media, content in body["content"].items():
                    required = "required" if body.get("required") else "optional"
                    lines += ["", f"Request body ({media}, {required}):", ""]
                    lines += ["```json", schema_text(content["schema"]), "```"]
            lines += ["", "| status | meaning | body |", "|---|---|---|"]
            for status, answer in operation["responses"].items():
                media = ", ".join(f"`{m}`" for m in answer["content"])
                lines.append(f"| {status} | {cell(answer['description'])} | {media} |")
            lines.append("")
    return "\n".join(lines)


# --- configuration -----------------------------------------------------------------------------

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Top level", ServiceConfig),
    ("`models.<model_id>`", ModelConfig),
    ("`models.<model_id>.versions.<version>`", VersionConfig),
    ("`recording`", RecordingConfig),
]


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"  # type: ignore[call-arg]
    return "none" if field.default is None else f"`{json.dumps(field.default, default=str)}`"


def configuration_page() -> str:
    lines = [
        "# `models.yaml` reference",
        "",
        "Generated, when this site is built, from the models the runtime validates `models.yaml`",
        "with. Unknown keys are refused, and every error names the key. See",
        "[Configuration](../configuration.md) for a worked example.",
        "",
    ]
    for title, model in SECTIONS:
        lines += [f"## {title}", "", model.__doc__ or "", "", "| key | default | meaning |"]
        lines.append("|---|---|---|")
        for name, field in model.model_fields.items():
            if field.exclude:
                continue
            key = field.alias or name
            lines.append(f"| `{key}` | {default_text(field)} | {cell(field.description or '')} |")
        lines.append("")
    return "\n".join(lines)


# --- runbook -----------------------------------------------------------------------------------


def example_answers() -> dict[str, Any]:
    """The answers `lls new --defaults` gives the example service: lls's own answer logic."""
    questions = load_questions((ROOT / "copier.yml").read_text())
    fixed = {"runtime_version": __version__, "runtime_sha256": "0" * 64}  # no wheel to hash here
    return collect_answers(questions, EXAMPLE_ANSWERS, fixed, None)


def runbook_page() -> str:
    template = ROOT / "templates" / "service" / "docs" / "runbook.md.jinja"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string(template.read_text()).render(example_answers())
    note = (
        "!!! note\n    Every generated service carries this runbook as `docs/runbook.md`, written "
        "for its own name, namespace and objectives. Shown here for the example service "
        f"`{EXAMPLE_ANSWERS['service_name']}` of team `{EXAMPLE_ANSWERS['team']}`.\n\n"
    )
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{note}{rest}"


def main() -> None:
    pages = {
        "reference/cli.md": cli_page(),
        "reference/configuration.md": configuration_page(),
        "runbook.md": runbook_page(),
    }
    spec = openapi_document()
    pages["reference/http.md"] = http_page(spec)
    pages["reference/openapi.json"] = json.dumps(spec, indent=2) + "\n"
    for name, text in pages.items():
        with mkdocs_gen_files.open(name, "w") as page:
            page.write(text)


# mkdocs-gen-files runs this file with runpy.run_path, under this name; tests import it.
if __name__ in {"__main__", "<run_path>"}:
    main()
