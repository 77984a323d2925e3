"""`lls check` says truthfully how far a service is behind and whether the platform's files
drifted, with the exit statuses its help documents; `lls diff` shows the team's divergence
from its own release as a patch that rebuilds the service from a fresh render."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.scaffolder.conftest import RELEASES, Done, Lls, documented_keys, run

from .conftest import (
    NEW,
    NEW_FILE,
    NEW_RUNTIME,
    OLD,
    OLD_RUNTIME,
    SERVICE,
    Origin,
    git,
    lls_env,
    snapshot,
)

# The releases' dates, as RELEASES.yml records them (YAML reads them as dates).
DATES = {f"v{r['version']}": r["date"] for r in RELEASES}
OLD_DATE, NEW_DATE = DATES[OLD], DATES[NEW]
DAYS = (NEW_DATE - OLD_DATE).days
BEHIND = list(DATES).index(NEW) - list(DATES).index(OLD)

pytestmark = pytest.mark.slow


def lls_check(lls: Lls, where: Path, *args: str, env: dict[str, str] | None = None) -> Done:
    return lls("check", *args, cwd=where, env=env or lls_env())


@pytest.fixture
def service(origin: Origin, tmp_path: Path) -> Path:
    """The team's service, but for its edit of the dashboard: none of the platform's files."""
    service = origin.clone(tmp_path / SERVICE)
    dashboard = "observability/dashboard.json"
    (service / dashboard).write_text(git(service, "show", f"HEAD~1:{dashboard}"))
    git(service, "commit", "--quiet", "--all", "-m", "The platform's dashboard, as it was")
    return service


@pytest.fixture
def current(offline_lls: Lls, service: Path) -> Path:
    done = offline_lls("upgrade", "--defaults", "-q", cwd=service, env=lls_env())
    assert done.returncode == 0, done.output
    return service


def test_a_service_behind_exits_3_and_says_by_how_much(offline_lls: Lls, service: Path) -> None:
    before = snapshot(service)
    done = lls_check(offline_lls, service)
    assert done.returncode == 3, done.output
    assert f"template  {OLD} ({OLD_DATE}); newest {NEW} ({NEW_DATE})" in done.stdout
    assert f"behind    {BEHIND} release(s), {DAYS} day(s)" in done.stdout
    assert f"runtime   {OLD_RUNTIME} (the newest release pins {NEW_RUNTIME})" in done.stdout
    assert "drifted" not in done.stdout  # the team's edits are all in files the team owns
    assert f"Behind: `lls upgrade` in {service} moves it to {NEW}." in done.stdout
    as_json = lls_check(offline_lls, service, "--json")
    assert as_json.returncode == 3
    result = json.loads(as_json.stdout)
    assert (result["command"], result["exit_status"], result["error"]) == ("check", 3, None)
    assert result["path"] == str(service)
    assert (result["service_name"], result["team"]) == (SERVICE, "demo")
    assert (result["template_version"], result["newest_version"]) == (OLD, NEW)
    assert (result["releases_behind"], result["days_behind"], result["current"]) == (
        BEHIND,
        DAYS,
        False,
    )
    assert result["runtime_version"] == result["pinned_runtime_version"] == OLD_RUNTIME
    assert result["drifted"] == []
    keys = documented_keys(offline_lls, service, "check")
    assert set(result) <= keys
    assert keys - set(result) == {"how"}  # inside "drifted"
    assert snapshot(service) == before


def test_a_current_service_exits_0_from_any_of_its_directories(
    offline_lls: Lls, current: Path
) -> None:
    done = lls_check(offline_lls, current / "chart" / "templates")
    assert done.returncode == 0, done.output
    assert done.stdout.endswith("Current.\n")
    assert f"{SERVICE} (team demo) at {current}\n" in done.stdout


def test_drifted_platform_files_exit_4_and_are_annotated_in_github_actions(
    offline_lls: Lls, current: Path
) -> None:
    deployment = current / "chart" / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas", "# replicas", 1))
    (current / "docs" / "runbook.md").unlink()
    (current / "chart" / "values.yaml").write_text("# the team's own values\n")  # not drift
    done = lls_check(offline_lls, current)
    assert done.returncode == 4, done.output
    assert "  drifted   chart/templates/deployment.yaml (changed)" in done.stdout
    assert "  drifted   docs/runbook.md (deleted)" in done.stdout
    assert "values.yaml" not in done.stdout
    in_actions = lls_check(offline_lls, current, env={**lls_env(), "GITHUB_ACTIONS": "true"})
    assert in_actions.returncode == 4
    annotations = [line for line in in_actions.stdout.splitlines() if line.startswith("::")]
    assert annotations == [
        "::warning file=chart/templates/deployment.yaml,title=lls check::chart/templates/"
        f"deployment.yaml differs from what template {NEW} renders (changed); lls diff shows how",
        f"::warning file=docs/runbook.md,title=lls check::docs/runbook.md differs from what "
        f"template {NEW} renders (deleted); lls diff shows how",
    ]
    fast = lls_check(offline_lls, current, "--no-drift")
    assert fast.returncode == 0, fast.output


def test_a_directory_lls_did_not_make_exits_2(offline_lls: Lls, tmp_path: Path) -> None:
    done = lls_check(offline_lls, tmp_path, "--json")
    assert done.returncode == 2
    result = json.loads(done.stdout)
    assert set(result) == {"command", "exit_status", "error"}
    assert f"{tmp_path} has no .copier-answers.yml" in result["error"]
    assert done.stderr == f"lls: error: {result['error']}\n"


def test_diff_is_the_team_divergence_and_rebuilds_the_service(
    offline_lls: Lls, service: Path, tmp_path: Path
) -> None:
    (service / ".venv").mkdir()
    (service / ".venv" / "ignored.txt").write_text("ignored by the service's .gitignore\n")
    before = snapshot(service)
    done = offline_lls("diff", "--json", cwd=service / "docs", env=lls_env())
    assert done.returncode == 0, done.output
    result = json.loads(done.stdout)
    assert (result["path"], result["template_version"]) == (str(service), OLD)
    files = {f["path"]: f["status"] for f in result["files"]}
    assert files[NEW_FILE[0]] == "A"
    for edited in ("README.md", "chart/values.yaml", "demo_model/model.py"):
        assert files[edited] == "M"
    assert not any(name.startswith(".venv") for name in files)
    assert "+tmpSizeLimit: 1Gi" in result["patch"]
    assert snapshot(service) == before

    # The patch, applied to a fresh render of the same release and answers, is the service.
    fresh = tmp_path / "fresh"
    made = offline_lls(
        "new", fresh, "--defaults", "--version", OLD, "--data-file",
        service / ".copier-answers.yml", cwd=tmp_path, env=lls_env(),
    )  # fmt: skip
    assert made.returncode == 0, made.output
    patch = tmp_path / "team.patch"
    patch.write_text(result["patch"])
    applied = run(["git", "apply", "--index", patch], cwd=fresh)
    assert applied.returncode == 0, applied.output
    rebuilt = git(fresh, "ls-files", "-s")
    assert rebuilt == git(service, "ls-files", "-s")
    plain = offline_lls("diff", cwd=service, env=lls_env())
    assert plain.stdout == result["patch"]


def test_diff_of_an_untouched_service_is_empty(offline_lls: Lls, tmp_path: Path) -> None:
    made = offline_lls("new", "svc", "--defaults", "-q", cwd=tmp_path, env=lls_env())
    assert made.returncode == 0, made.output
    done = offline_lls("diff", cwd=tmp_path / "svc", env=lls_env())
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == f"{tmp_path / 'svc'} is as template {NEW} renders it.\n"
    assert os.listdir(tmp_path) == ["svc"]
