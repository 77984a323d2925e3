"""`lls upgrade` from v0.4.0, the release before the newest, of a scikit-learn service (the
default) whose team changed its chart values and added a page of its own: the upgrade is clean,
keeps both, pins the newest runtime, and the service passes its own tests. The team keeps its
deployed version in the values too (`models`): they gain `delivery` (the cache of the versions
declared by URI) around it without a conflict, and the chart renders with them."""

from __future__ import annotations

import sys

import helm_python as helm
import pytest
import yaml

from tests.scaffolder.conftest import Lls, run

from .conftest import NEW, NEW_RUNTIME, SERVICE, Upgraded, git, lls_env, upgrade

pytestmark = pytest.mark.slow

V040 = "v0.4.0"
MODEL = "demo-model"  # the default answer's model id
TEAM_PAGE = "# Features\n\nWhat each feature means, by the team that owns the model.\n"


@pytest.fixture(scope="session")
def from_v040(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    parent = tmp_path_factory.mktemp("from-v040")
    made = offline_lls("new", "--defaults", "--version", V040, cwd=parent, env=lls_env())
    assert made.returncode == 0, made.output
    service = parent / SERVICE
    values = service / "chart" / "values.yaml"
    text = values.read_text().replace("tmpSizeLimit: 256Mi", "tmpSizeLimit: 1Gi")
    assert "\nmodels: {}\n" in text
    values.write_text(text.replace("\nmodels: {}\n", f"\nmodels:\n  {MODEL}:\n    primary: v1\n"))
    (service / "docs" / "features.md").write_text(TEAM_PAGE)
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Team: a larger /tmp, a page on the features")
    done = upgrade(offline_lls, service, "--defaults")
    tested = run([sys.executable, "dev.py", "test"], cwd=service) if done.returncode == 0 else done
    return Upgraded(service, done, tested)


def test_the_upgrade_is_clean_and_keeps_the_team_edits(from_v040: Upgraded) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    assert "conflicts 0" in from_v040.upgraded.stdout
    service = from_v040.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEW
    assert "tmpSizeLimit: 1Gi" in (service / "chart" / "values.yaml").read_text()
    assert (service / "docs" / "features.md").read_text() == TEAM_PAGE
    assert f"lls-serving-runtime=={NEW_RUNTIME}" in (service / "requirements.txt").read_text()


def test_the_upgraded_service_passes_its_own_tests(from_v040: Upgraded) -> None:
    assert from_v040.tested.returncode == 0, from_v040.tested.output[-4000:]
    assert " passed" in from_v040.tested.stdout


def test_the_values_gain_delivery_and_keep_the_team_models(from_v040: Upgraded) -> None:
    service = from_v040.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["model_id"] == MODEL
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    assert values["models"] == {MODEL: {"primary": "v1"}}
    assert values["delivery"]["maxBytes"] == 1 << 30
    with helm.Chart.load(service / "chart") as chart:
        chart.validate_schema(chart.merge_values({}))
        files = chart.render({}, name=SERVICE, namespace="default", is_install=True)
    overrides = next(text for name, text in files.items() if name.endswith("overrides.yaml"))
    (configmap,) = [doc for doc in yaml.safe_load_all(overrides) if doc]
    assert yaml.safe_load(configmap["data"]["overrides.yaml"]) == {
        "models": {MODEL: {"primary": "v1"}}
    }
