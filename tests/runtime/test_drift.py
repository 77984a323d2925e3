"""`serving-runtime drift` as a service's CI runs it: committed dataset, committed baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import CONFIG, build_service, linear

# Rows as clients send them; v1 and v2 agree on the first (every good version answers 5 there).
LINEAR_ROWS = [{"a": 1, "b": 2}, [1, 0], [[0, 1], {"a": 2, "b": 2}]]
ECHO_ROWS = ["hello", {"nested": [1, 2]}]


def drift(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving_runtime", "drift", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_dataset(config: Path, model: str, rows: list[Any], **extra: Any) -> Path:
    folder = config.parent / "drift" / model
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({**extra, "features": row}) + "\n" for row in rows]
    (folder / "inputs.jsonl").write_text("".join(lines))
    return folder


def with_primary(config: Path, version: str) -> None:
    data = json.loads(json.dumps(CONFIG))
    data["models"]["linear"]["primary"] = version
    config.write_text(json.dumps(data))


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A service whose models both have a dataset and a baseline written by --update."""
    config = build_service(tmp_path / "service")
    # Extra keys are ignored: lines of `serving-runtime records` are datasets as they are.
    write_dataset(config, "linear", LINEAR_ROWS, model_id="linear", kind="primary")
    write_dataset(config, "echo", ECHO_ROWS)
    update = drift(config, "--update")
    assert update.returncode == 0, update.stdout + update.stderr
    return config


def test_update_writes_one_baseline_line_per_input_and_says_how_many_changed(
    service: Path,
) -> None:
    lines = (service.parent / "drift" / "linear" / "baseline.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"features": {"a": 1, "b": 2}, "output": [linear("v1", 1, 2)]},
        {"features": [1, 0], "output": [linear("v1", 1, 0)]},
        {
            "features": [[0, 1], {"a": 2, "b": 2}],
            "output": [linear("v1", 0, 1), linear("v1", 2, 2)],
        },
    ]
    again = drift(service, "--update", "--model", "linear")
    assert again.stdout.startswith("WROTE linear v1: ")
    assert again.stdout.rstrip().endswith("3 rows, 0 changed")


def test_an_unchanged_model_passes(service: Path) -> None:
    result = drift(service)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "PASS  linear v1: 3 rows within 1e-09",
        "PASS  echo 1: 2 rows within 1e-06",
    ]


def test_a_new_primary_that_moves_answers_fails_with_a_table_of_rows(service: Path) -> None:
    with_primary(service, "v2")
    result = drift(service)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  linear v2: 2 of 3 rows beyond tolerance against ")
    assert lines[1].split() == ["row", "features", "baseline", "got", "tolerance"]
    assert lines[2].split() == ["1", "[1,", "0]", "[1.0]", "[3.0]", "1e-09"]
    assert lines[3].split()[0] == "2"  # row 0 agrees: v1 and v2 both answer 5 there
    assert lines[4] == "PASS  echo 1: 2 rows within 1e-06"

    refreshed = drift(service, "--update", "--model", "linear")
    assert refreshed.stdout.rstrip().endswith("3 rows, 2 changed")
    assert drift(service).returncode == 0


def test_a_change_within_the_models_tolerance_passes(service: Path) -> None:
    artifact = service.parent / "artifacts" / "v1.json"
    artifact.write_text(json.dumps({"a": 1 + 1e-12, "b": 2}))
    assert drift(service, "--model", "linear").returncode == 0
    artifact.write_text(json.dumps({"a": 1 + 1e-6, "b": 2}))
    assert drift(service, "--model", "linear").returncode == 1


def test_a_missing_dataset_fails_with_how_to_add_one_unless_allowed(tmp_path: Path) -> None:
    config = build_service(tmp_path / "service")
    write_dataset(config, "linear", LINEAR_ROWS)
    assert drift(config, "--update", "--model", "linear").returncode == 0
    result = drift(config)
    assert result.returncode == 1
    expected = config.parent / "drift" / "echo" / "inputs.jsonl"
    assert f"FAIL  echo 1: no dataset {expected}" in result.stdout
    assert "serving-runtime records --model echo" in result.stdout
    allowed = drift(config, "--allow-missing")
    assert allowed.returncode == 0, allowed.stdout
    assert "SKIP  echo 1: no dataset" in allowed.stdout


def test_a_dataset_without_its_baseline_or_changed_since_fails(service: Path) -> None:
    baseline = service.parent / "drift" / "echo" / "baseline.jsonl"
    baseline.unlink()
    missing = drift(service, "--model", "echo")
    assert missing.returncode == 1
    assert "no baseline" in missing.stdout
    assert "drift --update" in missing.stdout
    drift(service, "--update", "--model", "echo")
    write_dataset(service, "echo", [*ECHO_ROWS, "new row"])
    moved = drift(service, "--model", "echo")
    assert moved.returncode == 1
    assert "is not the baseline of" in moved.stdout
    assert "(2 baseline rows, 3 inputs; first difference at row 2)" in moved.stdout


def test_a_row_that_raises_fails_the_check_and_blocks_the_update(service: Path) -> None:
    folder = write_dataset(service, "echo", ["hello", "raise"])
    lines = [{"features": f, "output": f} for f in ("hello", "raise")]  # as if it once answered
    (folder / "baseline.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    checked = drift(service, "--model", "echo")
    assert checked.returncode == 1
    assert "RuntimeError: the model raised on purpose" in checked.stdout
    before = (service.parent / "drift" / "echo" / "baseline.jsonl").read_text()
    refused = drift(service, "--update", "--model", "echo")
    assert refused.returncode == 1
    assert "1 row(s) raised, so no baseline was written (first: row 1" in refused.stdout
    assert (service.parent / "drift" / "echo" / "baseline.jsonl").read_text() == before


def test_a_primary_that_cannot_serve_fails(service: Path) -> None:
    with_primary(service, "bad")
    result = drift(service, "--model", "linear")
    assert result.returncode == 1
    assert "FAIL  linear bad: cannot run: primary bad failed its self-tests" in result.stdout


def test_bad_lines_and_unknown_models_are_named(service: Path) -> None:
    (service.parent / "drift" / "echo" / "inputs.jsonl").write_text('{"features": 1}\n{oops\n')
    result = drift(service, "--model", "echo")
    assert result.returncode == 1
    assert "inputs.jsonl:2: not valid JSON" in result.stdout
    unknown = drift(service, "--model", "nope")
    assert unknown.returncode == 2
    assert "no model nope in linear, echo" in unknown.stderr


def test_another_folder_can_hold_the_datasets(service: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (service.parent / "drift").rename(elsewhere)
    assert drift(service, "--dir", str(elsewhere)).returncode == 0
    assert drift(service).returncode == 1


def test_the_pytest_helper_passes_then_fails_with_the_table(tmp_path: Path) -> None:
    from serving_runtime.testing import check_drift as helper

    config = build_service(tmp_path)
    folder = tmp_path / "drift" / "linear"
    folder.mkdir(parents=True)
    (folder / "inputs.jsonl").write_text('{"features": [1, 0]}\n{"features": [0, 1]}\n')
    (folder / "baseline.jsonl").write_text(
        '{"features": [1, 0], "output": [1.0]}\n{"features": [0, 1], "output": [2.0]}\n'
    )
    echo = tmp_path / "drift" / "echo"
    echo.mkdir()
    (echo / "inputs.jsonl").write_text('{"features": "a"}\n')
    (echo / "baseline.jsonl").write_text('{"features": "a", "output": "a"}\n')
    helper(config)
    (folder / "baseline.jsonl").write_text(
        '{"features": [1, 0], "output": [1.5]}\n{"features": [0, 1], "output": [2.0]}\n'
    )
    with pytest.raises(AssertionError, match=r"linear v1: beyond tolerance") as failure:
        helper(config)
    assert "[1.5]" in str(failure.value)
