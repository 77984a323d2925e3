"""`lls upgrade` v0.1.0 -> v0.9.0 (the newest) on a service a team has edited: nothing of
theirs is lost, everything of the template's arrives, and the service still passes its own
tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import ROOT, Built, Lls

from .conftest import (
    BRANCH,
    DASHBOARD_EDIT,
    EXTRA_CANARY,
    MODEL_EDIT,
    NEW,
    NEW_FILE,
    NEW_RUNTIME,
    OLD,
    OLD_RUNTIME,
    PACKAGE,
    README_EDIT,
    SELFTEST_EDIT,
    SERVICE,
    Origin,
    Upgraded,
    git,
    lls_env,
)

pytestmark = pytest.mark.slow


def _answers(service: Path) -> dict[str, object]:
    answers: dict[str, object] = yaml.safe_load((service / ".copier-answers.yml").read_text())
    return answers


def _ok(upgraded: Upgraded) -> Path:
    assert upgraded.upgraded.returncode == 0, upgraded.upgraded.output
    return upgraded.path


def test_lls_new_renders_the_older_release_with_its_runtime(origin: Origin) -> None:
    service = origin.path
    assert f"template {OLD}, serving runtime {OLD_RUNTIME}" in origin.generated.stdout
    answers = _answers(service)
    assert (answers["_commit"], answers["runtime_version"]) == (OLD, OLD_RUNTIME)
    assert "spread_across_zones" not in answers  # a question v0.1.0 did not have
    assert f'"lls-serving-runtime=={OLD_RUNTIME}"' in (service / "pyproject.toml").read_text()
    wheels = [p.name for p in (service / "wheels").iterdir()]
    assert wheels == [f"lls_serving_runtime-{OLD_RUNTIME}-py3-none-any.whl"]
    assert (service / "tests" / "test_selftests.py").is_file()
    assert "topologySpread" not in (service / "chart" / "values.yaml").read_text()


def test_lls_versions_lists_the_releases_and_what_changed(offline_lls: Lls, tmp_path: Path) -> None:
    done = offline_lls("versions", cwd=tmp_path, env=lls_env())
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{OLD}  2026-11-23  serving runtime {OLD_RUNTIME}")
    newest = next(line for line in lines if line.startswith(NEW))
    assert newest.endswith(f"serving runtime {NEW_RUNTIME}  (newest)")
    text = " ".join(done.stdout.split())
    assert "First release" in text
    assert "spread_across_zones" in text
    assert "tests/test_canaries.py" in text


def test_the_result_is_one_commit_on_a_new_branch_with_a_summary(
    upgraded: Upgraded, origin: Origin
) -> None:
    service = _ok(upgraded)
    assert git(service, "branch", "--show-current").strip() == BRANCH
    assert git(service, "status", "--porcelain") == ""
    log = git(service, "log", "--format=%s", f"main..{BRANCH}").splitlines()
    assert log == [f"Upgrade {SERVICE} to the lls service template {NEW} (from {OLD})"]
    assert git(service, "rev-parse", "main") == git(origin.path, "rev-parse", "HEAD")
    out = upgraded.upgraded.stdout
    assert f"from template {OLD} to {NEW} (serving runtime {OLD_RUNTIME} -> {NEW_RUNTIME})" in out
    assert "tests/test_selftests.py -> tests/test_canaries.py" in out
    assert "conflicts 0" in out
    assert "New question spread_across_zones: True" in out
    for changed in ("chart/values.yaml", "pyproject.toml"):
        assert f"    {changed}\n" in out
    # moved into the chart, which deploys them (a migration of v0.4.0)
    assert "observability/dashboard.json -> chart/files/dashboard.json" in out


def test_every_team_edit_is_still_there(upgraded: Upgraded) -> None:
    service = _ok(upgraded)
    assert MODEL_EDIT in (service / PACKAGE / "model.py").read_text()
    assert EXTRA_CANARY in (service / "scripts" / "train_model.py").read_text()
    canaries = json.loads((service / PACKAGE / "test_data.json").read_text())
    assert [1.5, 0.5, -0.5, 1.0] in [list(c["features"].values()) for c in canaries]
    assert "tmpSizeLimit: 1Gi" in (service / "chart" / "values.yaml").read_text()
    assert README_EDIT in (service / "README.md").read_text()
    assert (service / NEW_FILE[0]).read_text() == NEW_FILE[1]
    # moved with the dashboard into the chart (a migration of v0.4.0)
    assert DASHBOARD_EDIT[1] in (service / "chart" / "files" / "dashboard.json").read_text()


def test_every_template_change_arrived(upgraded: Upgraded) -> None:
    service = _ok(upgraded)
    answers = _answers(service)
    assert answers["_commit"] == NEW
    assert answers["spread_across_zones"] is True
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    assert values["topologySpread"] == {"zones": True}
    schema = json.loads((service / "chart" / "values.schema.json").read_text())
    assert "topologySpread" in schema["required"]
    deployment = (service / "chart" / "templates" / "deployment.yaml").read_text()
    assert "topologyKey: topology.kubernetes.io/zone" in deployment
    dashboard = json.loads((service / "chart" / "files" / "dashboard.json").read_text())
    assert "Output records written" in [p["title"] for p in dashboard["panels"]]
    assert not (service / "observability").exists()
    rules = (service / "chart" / "files" / "alerts.yaml").read_text()
    assert "runbook_url: https://github.com/example/demo-model/blob/main/docs/runbook.md#" in rules
    readme = (service / "README.md").read_text()
    assert "| spread over zones | yes |" in readme
    assert "`lls versions` lists the template releases" in readme


def test_the_runtime_pin_and_its_wheel_moved(upgraded: Upgraded, built: Built) -> None:
    service = _ok(upgraded)
    assert _answers(service)["runtime_version"] == NEW_RUNTIME
    pyproject = (service / "pyproject.toml").read_text()
    assert f'"lls-serving-runtime=={NEW_RUNTIME}"' in pyproject
    assert f"lls-serving-runtime=={OLD_RUNTIME}" not in pyproject
    (wheel,) = (service / "wheels").iterdir()
    assert wheel.name == built.runtime_wheel.name
    assert wheel.read_bytes() == built.runtime_wheel.read_bytes()


def test_the_migration_moved_the_renamed_file_with_the_team_edit(upgraded: Upgraded) -> None:
    service = _ok(upgraded)
    assert not (service / "tests" / "test_selftests.py").exists()
    moved = (service / "tests" / "test_canaries.py").read_text()
    assert moved.endswith(SELFTEST_EDIT)
    assert "<<<<<<<" not in moved
    renames = git(service, "diff", "--name-status", "-M", "main", BRANCH)
    assert "tests/test_selftests.py\ttests/test_canaries.py" in renames


def test_the_upgraded_service_passes_its_own_tests(upgraded: Upgraded) -> None:
    _ok(upgraded)
    assert upgraded.tested.returncode == 0, upgraded.tested.output[-4000:]
    assert "passed" in upgraded.tested.stdout


def test_nothing_in_the_service_refers_to_this_repository(upgraded: Upgraded) -> None:
    service = _ok(upgraded)
    tracked = git(service, "ls-files").splitlines()
    for name in [*tracked, ".git/config"]:
        data = (service / name).read_bytes()
        assert str(ROOT).encode() not in data, name
    history = git(service, "log", "--all", "--format=%H %s%n%b")
    assert str(ROOT) not in history
