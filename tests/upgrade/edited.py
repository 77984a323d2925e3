"""A default (scikit-learn) service made at an older release and edited as its team would,
then upgraded to the newest and tested: shared by the tests that upgrade from one release."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.scaffolder.conftest import Lls, run

from .conftest import PACKAGE, SERVICE, Upgraded, git, lls_env, upgrade

MODEL = "demo-model"  # the default answer's model id
# What the upgrade must leave byte for byte: the team's model, canaries, artifact, drift data.
MODEL_FILES = (
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/test_data.json",
    "artifacts/model-v1.joblib",
    "drift/demo-model/inputs.jsonl",
    "drift/demo-model/baseline.jsonl",
)


@dataclass(frozen=True)
class TeamEdits:
    """A larger /tmp and its deployed version (`models`) in the chart values, a page of its own
    under docs/, its own line before `anchor` in its model, and files it deleted."""

    page: tuple[str, str]  # name under docs/, text
    anchor: str
    team_line: str
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class FromRelease(Upgraded):
    model_before: dict[str, bytes]


def upgrade_edited(lls: Lls, parent: Path, version: str, edits: TeamEdits) -> FromRelease:
    """Make the service at `version` in `parent`, edit and commit it, upgrade it, test it."""
    made = lls("new", "--defaults", "--version", version, cwd=parent, env=lls_env())
    assert made.returncode == 0, made.output
    service = parent / SERVICE
    values = service / "chart" / "values.yaml"
    text = values.read_text().replace("tmpSizeLimit: 256Mi", "tmpSizeLimit: 1Gi")
    assert "\nmodels: {}\n" in text
    values.write_text(text.replace("\nmodels: {}\n", f"\nmodels:\n  {MODEL}:\n    primary: v1\n"))
    (service / "docs" / edits.page[0]).write_text(edits.page[1])
    model = service / PACKAGE / "model.py"
    assert edits.anchor in model.read_text()
    model.write_text(model.read_text().replace(edits.anchor, edits.team_line + edits.anchor))
    if edits.deleted:
        git(service, "rm", "--quiet", "--", *edits.deleted)
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Team: a larger /tmp, v1 pinned, a page, a model note")
    before = {name: (service / name).read_bytes() for name in MODEL_FILES}
    done = upgrade(lls, service, "--defaults")
    tested = run([sys.executable, "dev.py", "test"], cwd=service) if done.returncode == 0 else done
    return FromRelease(service, done, tested, before)


def rendered_overrides(service: Path) -> Any:
    """The overrides file the service's chart renders with its own values."""
    with helm.Chart.load(service / "chart") as chart:
        chart.validate_schema(chart.merge_values({}))
        files = chart.render({}, name=SERVICE, namespace="default", is_install=True)
    overrides = next(text for name, text in files.items() if name.endswith("overrides.yaml"))
    (configmap,) = [doc for doc in yaml.safe_load_all(overrides) if doc]
    return yaml.safe_load(configmap["data"]["overrides.yaml"])
