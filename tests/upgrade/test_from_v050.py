"""`lls upgrade` from v0.5.0, four releases before the newest, of a scikit-learn service (the
default) whose team deployed its own version and edited the service: chart values (a larger
/tmp, its primary), a page of its own, a line in its model. The upgrade is clean, keeps every
edit and the model's files byte for byte, pins the newest runtime, and the service passes its
own tests on it; the chart renders with the team's values."""

from __future__ import annotations

import pytest
import yaml

from tests.scaffolder.conftest import Lls

from .conftest import NEW, NEW_RUNTIME, PACKAGE
from .edited import MODEL, FromRelease, TeamEdits, rendered_overrides, upgrade_edited

pytestmark = pytest.mark.slow

EDITS = TeamEdits(
    page=("deployments.md", "# Deployments\n\nWhich version runs where, by its team.\n"),
    # The team's own line in predict() of v0.5.0's example model (binary, on a data frame).
    anchor="        probabilities: list[float] = "
    "self.pipeline.predict_proba(features)[:, 1].tolist()\n",
    team_line="        # team: the columns come from the feature store's nightly export\n",
)


@pytest.fixture(scope="session")
def from_v050(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> FromRelease:
    return upgrade_edited(offline_lls, tmp_path_factory.mktemp("from-v050"), "v0.5.0", EDITS)


def test_the_upgrade_is_clean_keeps_the_team_edits_and_pins_the_new_runtime(
    from_v050: FromRelease,
) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    assert "conflicts 0" in from_v050.upgraded.stdout
    service = from_v050.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEW
    assert "tmpSizeLimit: 1Gi" in (service / "chart" / "values.yaml").read_text()
    page, text = EDITS.page
    assert (service / "docs" / page).read_text() == text
    assert f"lls-serving-runtime=={NEW_RUNTIME}" in (service / "requirements.txt").read_text()
    pinned = f"lls-serving-runtime[dataframe]=={NEW_RUNTIME}"
    assert pinned in (service / "pyproject.toml").read_text()
    assert not list(service.rglob("*.rej"))


def test_the_teams_model_stays_byte_for_byte(from_v050: FromRelease) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    service = from_v050.path
    for name, content in from_v050.model_before.items():
        assert (service / name).read_bytes() == content, name
    assert EDITS.team_line in (service / PACKAGE / "model.py").read_text()


def test_the_upgraded_service_passes_its_own_tests(from_v050: FromRelease) -> None:
    assert from_v050.tested.returncode == 0, from_v050.tested.output[-4000:]
    assert " passed" in from_v050.tested.stdout


def test_the_chart_renders_with_the_teams_values(from_v050: FromRelease) -> None:
    assert from_v050.upgraded.returncode == 0, from_v050.upgraded.output
    values = yaml.safe_load((from_v050.path / "chart" / "values.yaml").read_text())
    assert values["models"] == {MODEL: {"primary": "v1"}}
    assert rendered_overrides(from_v050.path) == {"models": {MODEL: {"primary": "v1"}}}
