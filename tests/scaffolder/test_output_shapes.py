"""A service's own tests compare whatever its model's predict may answer: a team that rewrites
the custom example to answer a number per row, or a dict of numbers per row, retrains it
(scripts/train_model.py writes the canaries' new outputs) and its service test (/infer) and
training test pass; an output whose value (not shape) differs from a canary's fails the
service test's comparison, and the training test, naming the place in the output.

Each variant is a render of the custom multiclass service (a list of probabilities per row),
run with the venv of conftest's custom service (same locked packages), as test_tasks.py does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import Lls, Service, run

pytestmark = pytest.mark.slow

PREDICT = "        return [self._predict_row(row) for row in features]\n"
EDITS = {
    # the probability of the likeliest class: one number per row
    "scalar": "        return [max(self._predict_row(row)) for row in features]\n",
    # each class's probability by its name: a dict of numbers per row
    "dict": (
        "        return [dict(zip(CLASSES, self._predict_row(row), strict=True)) "
        "for row in features]\n"
    ),
}
TESTS = ("tests/test_service.py", "tests/test_training.py")


@pytest.fixture(scope="module")
def multiclass(lls: Lls, tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("multiclass")
    done = lls(
        "new", "--defaults", "--data", "framework=custom", "--data", "task=multiclass",
        cwd=parent,
    )  # fmt: skip
    assert done.returncode == 0, done.output
    return parent / "demo-model"


@pytest.fixture
def custom_bin(services: dict[str, Any]) -> Path:
    custom: Service = services["custom"].result()
    assert custom.tested.returncode == 0, custom.tested.output
    return custom.bin


def _edited(multiclass: Path, shape: str, into: Path) -> Path:
    """The multiclass service with predict answering `shape`, retrained: its canaries' outputs
    are what the edited model answers."""
    path = Path(shutil.copytree(multiclass, into / "demo-model"))
    model = path / "demo_model" / "model.py"
    assert PREDICT in model.read_text()
    model.write_text(model.read_text().replace(PREDICT, EDITS[shape]))
    return path


@pytest.mark.parametrize("shape", sorted(EDITS))
def test_the_service_tests_compare_every_value_of_each_shape(
    shape: str, multiclass: Path, custom_bin: Path, tmp_path: Path
) -> None:
    path = _edited(multiclass, shape, tmp_path)
    trained = run([custom_bin / "python", "-m", "scripts.train_model"], path)
    assert trained.returncode == 0, trained.output
    test_data = json.loads((path / "demo_model" / "test_data.json").read_text())
    expected = test_data[0]["expected"]
    row = expected[0]
    assert isinstance(row, dict if shape == "dict" else float), expected

    pytest_ = [custom_bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    done = run([*pytest_, *TESTS], path)
    assert done.returncode == 0, done.output
    assert "2 passed" in done.stdout, done.stdout

    # The first canary's output moves by 0.01 (far beyond the tolerance, 1e-6); its shape stays.
    # A model that answers so fails its self-tests as the server starts (never ready), so the
    # service test's comparison is checked on its own, as rendered; the training test runs.
    shipped = json.dumps(expected)
    if shape == "dict":
        row["high"] += 0.01
        place = 'output[0]["high"]'
    else:
        expected[0] = row + 0.01
        place = "output[0]"
    compare = (
        "import json, sys, pytest\n"
        "from tests.test_service import MODEL, leaves\n"
        "got, expected = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "print(leaves(got) == pytest.approx(leaves(expected), abs=MODEL.tolerance))\n"
    )
    for answered, verdict in ((shipped, "True"), (json.dumps(expected), "False")):
        compared = run([custom_bin / "python", "-c", compare, answered, shipped], path)
        assert compared.returncode == 0, compared.output
        assert compared.stdout.strip() == verdict, (answered, compared.output)
    (path / "demo_model" / "test_data.json").write_text(json.dumps(test_data, indent=2) + "\n")
    failed = run([*pytest_, "tests/test_training.py"], path)
    assert failed.returncode == 1, failed.output
    assert "1 failed" in failed.stdout, failed.stdout
    assert "AssertionError" in failed.stdout, failed.stdout
    assert place in failed.stdout, failed.stdout
