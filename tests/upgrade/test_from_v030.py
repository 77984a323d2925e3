"""`lls upgrade` from v0.3.0, the release before the lock and the reviewed workflow, of a
service whose team edited its workflow and its Dockerfile: their edits stay, the lock and the
new Dockerfile arrive, and the service passes its own tests, which install from the lock with
--require-hashes and the runtime wheel the upgrade put in wheels/."""

from __future__ import annotations

import hashlib
import sys

import pytest
import yaml

from tests.scaffolder.conftest import Lls, run

from .conftest import SERVICE, Upgraded, git, lls_env, upgrade

pytestmark = pytest.mark.slow

V030 = "v0.3.0"
# A team's own CI step, after the drift check, and a label of its own in the image.
WORKFLOW_STEP = (
    "      - name: Team contract tests\n"
    "        run: .venv/bin/python -m pytest tests -q -k contract\n"
)
DOCKERFILE_LABEL = 'LABEL com.example.cost-center="ml-1234"\n'


@pytest.fixture(scope="session")
def from_v030(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    parent = tmp_path_factory.mktemp("from-v030")
    made = offline_lls(
        "new", "--defaults", "--version", V030, "--data", "framework=custom",
        cwd=parent, env=lls_env(),
    )  # fmt: skip
    assert made.returncode == 0, made.output
    service = parent / SERVICE
    workflow = service / ".github" / "workflows" / "ci.yml"
    anchor = "        run: .venv/bin/serving-runtime drift\n"
    assert anchor in workflow.read_text()
    workflow.write_text(workflow.read_text().replace(anchor, anchor + WORKFLOW_STEP))
    dockerfile = service / "Dockerfile"
    anchor = "EXPOSE 8080\n"
    dockerfile.write_text(dockerfile.read_text().replace(anchor, anchor + DOCKERFILE_LABEL))
    git(service, "commit", "--quiet", "-am", "Team: contract tests in CI, a cost-center label")
    done = upgrade(offline_lls, service, "--defaults")
    tested = run([sys.executable, "dev.py", "test"], cwd=service) if done.returncode == 0 else done
    return Upgraded(service, done, tested)


def test_the_upgrade_is_clean_and_keeps_the_team_edits(from_v030: Upgraded) -> None:
    assert from_v030.upgraded.returncode == 0, from_v030.upgraded.output
    assert "conflicts 0" in from_v030.upgraded.stdout
    service = from_v030.path
    workflow = (service / ".github" / "workflows" / "ci.yml").read_text()
    assert WORKFLOW_STEP in workflow
    assert "permissions: {}" in workflow
    steps = yaml.safe_load(workflow)["jobs"]["test"]["steps"]
    assert steps[-1]["name"] == "Team contract tests"
    dockerfile = (service / "Dockerfile").read_text()
    assert DOCKERFILE_LABEL in dockerfile
    assert "--require-hashes" in dockerfile
    assert (service / ".github" / "dependabot.yml").is_file()


def test_the_lock_arrives_with_the_hash_of_the_runtime_wheel_it_placed(
    from_v030: Upgraded,
) -> None:
    service = from_v030.path
    (wheel,) = (service / "wheels").iterdir()
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    version = wheel.name.split("-")[1]
    lock = (service / "requirements.txt").read_text()
    assert f"lls-serving-runtime=={version} \\\n    --hash=sha256:{sha256}\n" in lock
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["runtime_sha256"] == sha256
    assert (service / "requirements-dev.txt").read_text().count("-r requirements.txt\n") == 1
    assert "{{" not in lock


def test_the_upgraded_service_installs_from_its_lock_and_passes_its_tests(
    from_v030: Upgraded,
) -> None:
    assert from_v030.tested.returncode == 0, from_v030.tested.output[-4000:]
    out = from_v030.tested.stdout
    assert "--require-hashes" in out
    assert "tests/test_lock.py ." in out or "passed" in out


def test_the_alert_rules_move_into_the_chart_and_their_tests_pass(from_v030: Upgraded) -> None:
    files = from_v030.path / "chart" / "files"
    assert sorted(p.name for p in files.iterdir()) == [
        "alerts-runtime.test.yaml", "alerts-runtime.yaml", "alerts.test.yaml", "alerts.yaml",
        "dashboard.json", "envoy.yaml",
    ]  # fmt: skip
    assert not (from_v030.path / "observability").exists()
    tested = run(
        ["promtool", "test", "rules", "alerts.test.yaml", "alerts-runtime.test.yaml"], cwd=files
    )
    assert tested.returncode == 0, tested.output
    runbook = f"https://github.com/example/{SERVICE}/blob/main/docs/runbook.md#"
    assert f"runbook_url: {runbook}modelnotready" in (files / "alerts.yaml").read_text()
