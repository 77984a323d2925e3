"""The docs site: built by mkdocs-material in strict mode, and every example in it run.

The pages are read in the site's order, by one reader, in one sandbox: the journey installs lls
from its wheel and generates `fraud-score`, and later pages build on that service, as a reader
who follows the docs from the start would.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from serving_runtime._config import ServiceConfig
from serving_runtime.testing import free_port
from tests.artifacts.chart import render_chart
from tests.docs.examples import Block, Shell, blocks, commands, missing_output
from tests.scaffolder.conftest import ROOT, Built, build_once

DOCS = ROOT / "docs"
MKDOCS = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
COMMAND_TIMEOUT = 600  # a service's first `dev.py test` installs its whole venv


def nav_pages(nav: list[Any]) -> Iterator[str]:
    for entry in nav:
        target = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(target, list):
            yield from nav_pages(target)
        else:
            yield target


PAGES = list(nav_pages(MKDOCS["nav"]))


@functools.cache
def reference_module() -> ModuleType:
    """tools/docs_reference.py, the generator of the pages the site builds from code."""
    path = ROOT / "tools" / "docs_reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_text(page: str) -> str:
    """A page as the site shows it: from docs/, or as the generator writes it."""
    if (DOCS / page).exists():
        return (DOCS / page).read_text()
    reference = reference_module()
    generated = {
        "runbook.md": reference.runbook_page,
        "reference/cli.md": reference.cli_page,
        "reference/configuration.md": reference.configuration_page,
        "reference/http.md": lambda: reference.http_page(reference.openapi_document()),
    }
    return generated[page]()


def test_site_builds_strictly(tmp_path: Path) -> None:
    """Any broken link, missing page or bad anchor fails `mkdocs build --strict`."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for page in PAGES:
        assert (site / page).with_suffix(".html").is_file(), page
    spec = json.loads((site / "reference" / "openapi.json").read_text())
    http = (site / "reference" / "http.html").read_text()
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in http, (method, path)
    for image in re.findall(
        r'<img[^>]+src="([^"]+)"',
        "".join((site / page).with_suffix(".html").read_text() for page in PAGES),
    ):
        assert (site / image).is_file() or (site / "reference" / image).is_file(), image


def test_every_example_says_what_it_is() -> None:
    """Each fenced block of every page has a language the reader (and the runner) knows."""
    for page in PAGES:
        for block in blocks(page_text(page), page):
            if page == "runbook.md" and block.language == "":
                continue  # commands for the cluster: checked against the chart below
            assert block.language in {"console", "python", "yaml", "json", "text"}, block.where


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the reader works: the wheels in dist/, as `python3 dev.py build` leaves them."""
    built: Built = build_once()
    place = tmp_path_factory.mktemp("reader")
    (place / "dist").mkdir()
    for wheel in (built.lls_wheel, built.runtime_wheel):
        shutil.copy2(wheel, place / "dist" / wheel.name)
    return place


def reader_env() -> dict[str, str]:
    """The test's environment, without this repository's venv on PATH: a reader's shell."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        entry for entry in env.get("PATH", "").split(os.pathsep) if str(ROOT) not in entry
    )
    return env


DOCS_PORT = ":8080"  # where the pages' servers listen, the runtime's default


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, sandbox: Path) -> None:
    """Every example of the page, run in order as a reader would, shows what the page says.

    The pages serve on the default port, 8080; here, on a free one, so that another server on
    this machine (another run of the suite) is not in the way: the reader's shell has the
    runtime's environment variables for it, the examples name it instead of 8080, and the
    chart's pod has its ports moved (`--free-ports`), Envoy's to that one.
    """
    port = free_port()
    env = reader_env()
    env["SERVING_RUNTIME_BIND"] = f"127.0.0.1:{port}"
    env["SERVING_RUNTIME_URL"] = f"http://127.0.0.1:{port}"
    shell = Shell(sandbox, env)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    try:
        for block in blocks(page_text(page), page):
            text = block.text.replace(DOCS_PORT, f":{port}").replace(
                "python3 dev.py pod ", f"python3 dev.py pod --free-ports --set envoy.port={port} "
            )
            moved = dataclasses.replace(block, text=text)
            run_block(moved, shell, namespace)
    finally:
        shell.close()


def run_block(block: Block, shell: Shell, namespace: dict[str, Any]) -> None:
    if block.title is not None:
        target = shell.cwd / block.title
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)
    elif block.language == "console":
        for command in commands(block):
            status, printed = shell.run(command.text, COMMAND_TIMEOUT)
            said = f"{block.where}: $ {command.text}\n{printed}"
            assert status == command.status, f"exit {status}, expected {command.status}\n{said}"
            missing = missing_output(command.output, printed)
            assert missing is None, f"expected the line {missing!r}\n{said}"
    elif block.language == "python":
        here = Path.cwd()
        os.chdir(shell.cwd)
        try:
            exec(compile(block.text, block.where, "exec"), namespace)
        finally:
            os.chdir(here)
    elif block.language == "yaml":
        data = yaml.safe_load(block.text)
        if isinstance(data, dict) and "models" in data:
            ServiceConfig.model_validate(data)
    elif block.language == "json":
        json.loads(block.text)
    elif block.language == "":
        service = shell.cwd / reference_module().EXAMPLE_ANSWERS["service_name"]
        check_cluster_commands(block, service)


KUBECTL = re.compile(r"kubectl (?P<args>[^|;\n]*)")


@functools.cache
def deployments_of(service: Path) -> dict[str, Any]:
    """The Deployments the service's chart renders, by name: rendered once for every block."""
    manifests = render_chart(service)
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}


def check_cluster_commands(block: Block, service: Path) -> None:
    """The runbook's kubectl commands: valid shell, naming what the chart really deploys.

    There is no cluster here to run them in; the service the journey generated gives the
    chart they are written for, rendered by Helm's own engine.
    """
    done = subprocess.run(
        ["bash", "-n"], check=False, input=block.text, text=True, capture_output=True
    )
    assert done.returncode == 0, f"{block.where}: {done.stderr}"
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    deployments = deployments_of(service)
    for found in KUBECTL.finditer(block.text.replace("\\\n", " ")):
        args = shlex.split(found["args"], comments=True)
        if "-n" in args:
            assert args[args.index("-n") + 1] == answers["namespace"], block.where
        for arg in args:
            if arg.startswith("deploy/"):
                assert arg.removeprefix("deploy/") in deployments, f"{block.where}: {arg}"
        if "-c" in args:
            pod = next(iter(deployments.values()))["spec"]["template"]["spec"]
            containers = {c["name"] for c in pod["containers"] + pod.get("initContainers", [])}
            assert args[args.index("-c") + 1] in containers, block.where
        if "-l" in args:
            key, _, value = args[args.index("-l") + 1].partition("=")
            labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
            assert any(label.get(key) == value for label in labels), block.where
