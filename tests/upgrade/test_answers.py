"""Changing an answer at the release a service is already at: `lls upgrade --data KEY=VALUE`.

The answers shape the chart, the alerts and the dashboard together, so a change goes through the
same three-way merge as an upgrade and keeps the team's edits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import Lls

from .conftest import (
    MODEL_EDIT,
    NEW,
    PACKAGE,
    SERVICE,
    Origin,
    git,
    lls_env,
    snapshot,
    upgrade,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def current(offline_lls: Lls, origin: Origin, tmp_path: Path) -> Path:
    """A clone of the team's service, upgraded to the newest release and merged."""
    service = origin.clone(tmp_path / SERVICE)
    assert upgrade(offline_lls, service, "--defaults", "--stage").returncode == 0
    git(service, "commit", "--quiet", "-m", "Upgrade")
    return service


def answers(service: Path) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((service / ".copier-answers.yml").read_text())
    return loaded


def test_an_answer_changes_everything_it_shapes_and_keeps_the_team_edits(
    offline_lls: Lls, current: Path
) -> None:
    assert answers(current)["max_replicas"] != 12
    done = upgrade(offline_lls, current, "--defaults", "--data", "max_replicas=12")
    assert done.returncode == 0, done.output
    assert f"New answers for {current} at template {NEW}" in done.stdout
    branch = git(current, "branch", "--show-current").strip()
    assert branch.startswith(f"lls-upgrade/{SERVICE}/{NEW}-answers-")
    assert answers(current)["max_replicas"] == 12
    assert answers(current)["_commit"] == NEW
    values = yaml.safe_load((current / "chart" / "values.yaml").read_text())
    assert values["autoscaling"]["maxReplicas"] == 12
    assert MODEL_EDIT in (current / PACKAGE / "model.py").read_text()
    message = git(current, "log", "-1", "--format=%B")
    assert message.startswith(f"Change answers of {SERVICE} to the lls service template {NEW}")
    assert "max_replicas=12" in message
    changed = git(current, "diff", "--name-only", "HEAD~1").split()
    assert ".copier-answers.yml" in changed
    assert "chart/values.yaml" in changed


def test_a_second_change_of_answers_gets_a_branch_of_its_own(
    offline_lls: Lls, current: Path
) -> None:
    first = upgrade(offline_lls, current, "--defaults", "--data", "max_replicas=12")
    assert first.returncode == 0, first.output
    one = git(current, "branch", "--show-current").strip()
    git(current, "switch", "--quiet", "main")
    second = upgrade(offline_lls, current, "--defaults", "--data", "max_replicas=14")
    assert second.returncode == 0, second.output
    other = git(current, "branch", "--show-current").strip()
    assert other != one
    assert {one, other} <= set(git(current, "branch", "--format=%(refname:short)").split())
    assert answers(current)["max_replicas"] == 14


def test_the_same_answers_at_the_same_release_change_nothing(
    offline_lls: Lls, current: Path
) -> None:
    before = snapshot(current)
    same = str(answers(current)["max_replicas"])
    done = upgrade(offline_lls, current, "--defaults", "--data", f"max_replicas={same}")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{current} is already at template {NEW}; nothing to do.\n"
    assert snapshot(current) == before


def test_answers_copier_wrote_as_plain_strings_are_read_back_unchanged(
    offline_lls: Lls, tmp_path: Path
) -> None:
    # Copier writes the answers with PyYAML (YAML 1.1), where a quantity such as 1e9 is a
    # plain string; a looser reader takes it for the number 1000000000.0, a changed answer.
    quantities = {"memory_request": "1e9", "memory_limit": "1.5e9"}
    data = [word for key, value in quantities.items() for word in ("--data", f"{key}={value}")]
    made = offline_lls("new", "svc", "--defaults", *data, cwd=tmp_path, env=lls_env())
    assert made.returncode == 0, made.output
    service = tmp_path / "svc"
    recorded = (service / ".copier-answers.yml").read_text()
    assert "memory_request: 1e9\n" in recorded
    assert "memory_limit: 1.5e9\n" in recorded
    before = snapshot(service)
    same = str(answers(service)["max_replicas"])
    done = upgrade(offline_lls, service, "--defaults", "--data", f"max_replicas={same}")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{service} is already at template {NEW}; nothing to do.\n"
    assert snapshot(service) == before
