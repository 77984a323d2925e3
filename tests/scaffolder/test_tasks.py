"""Every framework with every task type, as `lls new --data task=...` renders it: typed features
(a nullable number sent as null, a category sent by name) reach the model, its canaries pass
through the runtime's self-tests, /infer and V2 (tritonclient), the drift check passes on the
committed baseline, and the training script reproduces what the template ships.

The binary service of each framework is conftest's, which ran its whole `dev.py test`; the
other tasks reuse that service's venv (same locked packages) for their own checks, so that the
matrix costs a render and a few test files each, not a venv and a full suite.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy
import pytest
import tritonclient.http as triton
import yaml

from serving_runtime.testing import free_port

from .conftest import FRAMEWORKS, Lls, Service, run, wait_ready

pytestmark = pytest.mark.slow
TASKS = ("binary", "multiclass", "regression")
MODEL_ID = "demo-model"
DATATYPES = {"FP64": numpy.float64, "BYTES": object}


def numbers(output: Any) -> list[float]:
    """Every number of an output, in order (a row's output may be a list, one per class)."""
    if isinstance(output, list):
        return [v for item in output for v in numbers(item)]
    return [float(output)]


@contextmanager
def _served(path: Path, bin: Path) -> Iterator[str]:
    """The service at `path` served on a free port by the runtime of `bin`'s venv."""
    port = free_port()
    command = [bin / "python", "-m", "serving_runtime", "serve", "--workers", "1"]
    server = subprocess.Popen(
        [*map(str, command), "--bind", f"127.0.0.1:{port}"], cwd=path, start_new_session=True
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _render(lls: Lls, framework: str, task: str, parent: Path) -> Path:
    done = lls(
        "new", "--defaults", "--data", f"framework={framework}", "--data", f"task={task}",
        cwd=parent,
    )  # fmt: skip
    assert done.returncode == 0, done.output
    return parent / MODEL_ID


@pytest.fixture
def rendered(
    request: pytest.FixtureRequest,
    lls: Lls,
    services: dict[str, Any],
    tmp_path: Path,
) -> tuple[Path, Path, str]:
    """(the service of the test's framework and task, the venv's bin to run it with, task)"""
    framework, task = request.param
    binary: Service = services[framework].result()
    assert binary.tested.returncode == 0, binary.tested.output
    if task == "binary":
        return binary.path, binary.bin, task
    return _render(lls, framework, task, tmp_path), binary.bin, task


MATRIX = [(framework, task) for framework in FRAMEWORKS for task in TASKS]
each_combination = pytest.mark.parametrize(
    "rendered", MATRIX, indirect=True, ids=[f"{f}-{t}" for f, t in MATRIX]
)


@each_combination
def test_the_service_of_each_task_passes_its_canaries_drift_and_training_checks(
    rendered: tuple[Path, Path, str],
) -> None:
    path, bin, task = rendered
    answers = yaml.safe_load((path / ".copier-answers.yml").read_text())
    assert answers["task"] == task
    # what the output is, said where an operator and a caller look
    said = {
        "binary": "the probability of the positive class",
        "multiclass": "a probability per class",
        "regression": "a predicted value per row",
    }[task]
    dashboard = json.loads((path / "chart" / "files" / "dashboard.json").read_text())
    assert said in dashboard["description"]
    (shadows,) = [p for p in dashboard["panels"] if p["title"] == "Shadow agreement"]
    assert said in shadows["description"]
    readme = " ".join((path / "README.md").read_text().split())
    assert {"binary": "that the row belongs to the positive class",
            "multiclass": "a list of probabilities, one per class",
            "regression": "one predicted value per row"}[task] in readme  # fmt: skip
    if task == "binary":
        return  # conftest's service ran its whole suite, these files among them
    files = ["tests/test_canaries.py", "tests/test_drift.py", "tests/test_training.py"]
    files += [str(p.relative_to(path)) for p in path.glob("tests/test_onnx_exports.py")]
    done = run([bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], path)
    assert done.returncode == 0, done.output
    tests = sum((path / f).read_text().count("\ndef test_") for f in files)
    assert f"{tests} passed" in done.stdout, done.stdout


@each_combination
def test_infer_and_v2_take_a_null_and_a_category_by_name(
    rendered: tuple[Path, Path, str],
) -> None:
    path, bin, task = rendered
    canaries = json.loads((path / "demo_model" / "test_data.json").read_text())
    rows = [canary["features"] for canary in canaries]
    assert None in rows[0].values()  # a missing value among the canaries
    assert {row["segment"] for row in rows} == {"retail", "business", "public"}
    expected = numbers([canary["expected"] for canary in canaries])
    width = {"binary": 1, "multiclass": 3, "regression": 1}[task]
    assert len(expected) == len(rows) * width
    with _served(path, bin) as address:
        request = urllib.request.Request(
            f"http://{address}/infer",
            json.dumps({"model_id": MODEL_ID, "features": rows}).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert numbers(answer["output"]) == pytest.approx(expected, abs=1e-6)

        client = triton.InferenceServerClient(address)
        metadata = client.get_model_metadata(MODEL_ID)
        declared = {i["name"]: i["datatype"] for i in metadata["inputs"]}
        assert declared == {"f0": "FP64", "f1": "FP64", "f2": "FP64", "f3": "FP64",
                            "segment": "BYTES"}  # fmt: skip
        inputs = []
        for name, datatype in declared.items():
            values: list[Any] = [math.nan if row[name] is None else row[name] for row in rows]
            if datatype == "BYTES":
                values = [str(value).encode() for value in values]
            given = triton.InferInput(name, [len(rows)], datatype)
            given.set_data_from_numpy(numpy.asarray(values, dtype=DATATYPES[datatype]))
            inputs.append(given)
        result = client.infer(MODEL_ID, inputs)
        (output,) = result.get_response()["outputs"]
        got = result.as_numpy(output["name"])
        assert got is not None
        assert list(got.shape) == ([len(rows)] if width == 1 else [len(rows), width])
        assert numbers(got.tolist()) == pytest.approx(expected, abs=1e-6)
