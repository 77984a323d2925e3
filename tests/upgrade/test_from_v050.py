"""`lls upgrade` from v0.5.0, the release before the newest, of a scikit-learn service (the
default) whose team deployed its own version and edited the service: chart values (a larger
/tmp, its primary), a page of its own, a line in its model. The upgrade is clean, keeps every
edit and the model's files byte for byte, pins the newest runtime, and the service passes its
own tests on it; the chart renders with the team's values."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import helm_python as helm
import pytest
import yaml

from tests.scaffolder.conftest import Lls, run

from .conftest import NEW, NEW_RUNTIME, PACKAGE, SERVICE, Upgraded, git, lls_env, upgrade

pytestmark = pytest.mark.slow

V050 = "v0.5.0"
MODEL = "demo-model"  # the default answer's model id
TEAM_PAGE = "# Deployments\n\nWhich version runs where, by the team that owns the model.\n"
MODEL_FILES = (
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/test_data.json",
    "artifacts/model-v1.joblib",
    "drift/demo-model/inputs.jsonl",
    "drift/demo-model/baseline.jsonl",
)
# The team's own line in predict() of v0.5.0's example model (binary, on a data frame).
ANCHOR = (
    "        probabilities: list[float] = self.pipeline.predict_proba(features)[:, 1].tolist()\n"
)
TEAM_LINE = "        # team: the columns come from the feature store's nightly export\n"


@dataclass(frozen=True)
class FromV050(Upgraded):
    model_before: dict[str, bytes]


@pytest.fixture(scope="session")
def from_v050(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> FromV050:
    parent = tmp_path_factory.mktemp("from-v050")
    made = offline_lls("new", "--defaults", "--version", V050, cwd=parent, env=lls_env())
    assert made.returncode == 0, made.output
    service = parent / SERVICE
    values = service / "chart" / "values.yaml"
    text = values.read_text().replace("tmpSizeLimit: 256Mi", "tmpSizeLimit: 1Gi")
    assert "\nmodels: {}\n" in text
    values.write_text(text.replace("\nmodels: {}\n", f"\nmodels:\n  {MODEL}:\n    primary: v1\n"))
    (service / "docs" / "deployments.md").write_text(TEAM_PAGE)
    model = service / PACKAGE / "model.py"
    assert ANCHOR in model.read_text()
    model.write_text(model.read_text().replace(ANCHOR, TEAM_LINE + ANCHOR))
    git(service, "add", "--all")
    git(service, "commit", "--quiet", "-m", "Team: a larger /tmp, v1 pinned, a page, a model note")
    before = {name: (service / name).read_bytes() for name in MODEL_FILES}
    done = upgrade(offline_lls, service, "--defaults")
    tested = run([sys.executable, "dev.py", "test"], cwd=service) if done.returncode == 0 else done
    return FromV050(service, done, tested, before)


def test_the_upgrade_is_clean_keeps_the_team_edits_and_pins_the_new_runtime(
    from_v050: FromV050,
) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    assert "conflicts 0" in from_v050.upgraded.stdout
    service = from_v050.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEW
    assert "tmpSizeLimit: 1Gi" in (service / "chart" / "values.yaml").read_text()
    assert (service / "docs" / "deployments.md").read_text() == TEAM_PAGE
    requirements = (service / "requirements.txt").read_text()
    assert f"lls-serving-runtime=={NEW_RUNTIME}" in requirements
    assert (
        f"lls-serving-runtime[dataframe]=={NEW_RUNTIME}" in (service / "pyproject.toml").read_text()
    )
    assert not list(service.rglob("*.rej"))


def test_the_teams_model_stays_byte_for_byte(from_v050: FromV050) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    service = from_v050.path
    for name, content in from_v050.model_before.items():
        assert (service / name).read_bytes() == content, name
    assert TEAM_LINE in (service / PACKAGE / "model.py").read_text()


def test_the_upgraded_service_passes_its_own_tests(from_v050: FromV050) -> None:
    assert from_v050.tested.returncode == 0, from_v050.tested.output[-4000:]
    assert " passed" in from_v050.tested.stdout


def test_the_chart_renders_with_the_teams_values(from_v050: FromV050) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    service = from_v050.path
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    assert values["models"] == {MODEL: {"primary": "v1"}}
    with helm.Chart.load(service / "chart") as chart:
        chart.validate_schema(chart.merge_values({}))
        files = chart.render({}, name=SERVICE, namespace="default", is_install=True)
    overrides = next(text for name, text in files.items() if name.endswith("overrides.yaml"))
    (configmap,) = [doc for doc in yaml.safe_load_all(overrides) if doc]
    assert yaml.safe_load(configmap["data"]["overrides.yaml"]) == {
        "models": {MODEL: {"primary": "v1"}}
    }
