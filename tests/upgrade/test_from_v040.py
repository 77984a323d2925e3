"""`lls upgrade` from v0.4.0, five releases before the newest, of a scikit-learn service (the
default) whose team changed its chart values, added a page of its own and edited its model:
the upgrade is clean, keeps all three, pins the newest runtime, and the service passes its own
tests. The newer example model is another one (typed features with a missing value and a
category, a Pipeline on a data frame, a task question), but a service's model is its team's:
its code, canaries, artifact, training script and drift data stay byte for byte, neither
merged with the new example nor replaced by it; the answers gain `task` with what the service
has (binary), and the runtime's dataframe extra arrives with its lock. The team keeps its
deployed version in the values too (`models`): they gain `delivery` (the cache of the versions
declared by URI) around it without a conflict, and the chart renders with them. The team
trains elsewhere and deleted the training script and its test: they stay deleted (the team's
deletion wins, as in a three-way merge), and the upgrade says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.scaffolder.conftest import Lls

from .conftest import NEW, NEW_RUNTIME, PACKAGE, SERVICE, git, upgrade
from .edited import MODEL, FromRelease, TeamEdits, rendered_overrides, upgrade_edited

pytestmark = pytest.mark.slow

TEAM_PAGE = "# Features\n\nWhat each feature means, by the team that owns the model.\n"
# The team trains elsewhere: it deleted these two, which v0.5.0 and later render again.
DELETED = ("scripts/train_model.py", "tests/test_training.py")
EDITS = TeamEdits(
    page=("features.md", TEAM_PAGE),
    # The team's own line in predict(), where the newer example's predict differs entirely.
    anchor="        rows = numpy.asarray(features, dtype=numpy.float64)\n",
    team_line="        # team: the rows come from the feature store's nightly export\n",
    deleted=DELETED,
)


@pytest.fixture(scope="session")
def from_v040(offline_lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> FromRelease:
    return upgrade_edited(offline_lls, tmp_path_factory.mktemp("from-v040"), "v0.4.0", EDITS)


def test_the_upgrade_is_clean_and_keeps_the_team_edits(from_v040: FromRelease) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    assert "conflicts 0" in from_v040.upgraded.stdout
    service = from_v040.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["_commit"] == NEW
    assert "tmpSizeLimit: 1Gi" in (service / "chart" / "values.yaml").read_text()
    assert (service / "docs" / "features.md").read_text() == TEAM_PAGE
    assert f"lls-serving-runtime=={NEW_RUNTIME}" in (service / "requirements.txt").read_text()


def test_task_is_answered_with_what_the_service_has(from_v040: FromRelease) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    assert "New question task: binary" in from_v040.upgraded.stdout
    answers = yaml.safe_load((from_v040.path / ".copier-answers.yml").read_text())
    assert answers["task"] == "binary"


def test_the_teams_model_stays_byte_for_byte(from_v040: FromRelease) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    service = from_v040.path
    for name, content in from_v040.model_before.items():
        assert (service / name).read_bytes() == content, name
    model = (service / PACKAGE / "model.py").read_text()
    assert EDITS.team_line in model
    assert "feature_schema" not in model  # the new example did not come in
    assert not list(service.rglob("*.rej"))


def test_the_files_the_team_deleted_stay_deleted(from_v040: FromRelease) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    service = from_v040.path
    for name in DELETED:
        assert not (service / name).exists(), name
        assert not git(service, "ls-files", "--", name), name
    lines = from_v040.upgraded.stdout.splitlines()
    assert "  kept deleted 2" in lines
    for name in DELETED:
        assert f"    {name}" in lines


def test_the_json_lists_what_stayed_deleted(
    offline_lls: Lls, from_v040: FromRelease, tmp_path: Path
) -> None:
    """The same upgrade, dry, under --json, from the commit before it."""
    service = tmp_path / SERVICE
    git(tmp_path, "clone", "--quiet", "--branch", "main", str(from_v040.path), str(service))
    done = upgrade(offline_lls, service, "--defaults", "--dry-run", "--json")
    assert done.returncode == 0, done.output
    result = json.loads(done.stdout)
    assert sorted(result["kept_deleted"]) == sorted(DELETED)
    assert not set(DELETED) & set(result["added"])


def test_the_dataframe_extra_arrives_with_its_lock(from_v040: FromRelease) -> None:
    assert from_v040.upgraded.returncode == 0, from_v040.upgraded.output
    service = from_v040.path
    assert '"lls-serving-runtime[dataframe]==' in (service / "pyproject.toml").read_text()
    assert "\npandas==" in (service / "requirements.txt").read_text()


def test_the_upgraded_service_passes_its_own_tests(from_v040: FromRelease) -> None:
    assert from_v040.tested.returncode == 0, from_v040.tested.output[-4000:]
    assert " passed" in from_v040.tested.stdout


def test_the_values_gain_delivery_and_keep_the_team_models(from_v040: FromRelease) -> None:
    service = from_v040.path
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert answers["model_id"] == MODEL
    values = yaml.safe_load((service / "chart" / "values.yaml").read_text())
    assert values["models"] == {MODEL: {"primary": "v1"}}
    assert values["delivery"]["maxBytes"] == 1 << 30
    assert rendered_overrides(service) == {"models": {MODEL: {"primary": "v1"}}}
