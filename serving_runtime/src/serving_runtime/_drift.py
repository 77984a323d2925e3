"""Prediction drift: each model's primary version on a committed dataset, against committed outputs.

Next to models.yaml, one folder per model:

    drift/<model_id>/inputs.jsonl    one request per line, {"features": ...}; other keys are
                                     ignored, so `serving-runtime records` output serves as is
    drift/<model_id>/baseline.jsonl  one line per input, {"features": ..., "output": ...}

Only the primary version is checked: it is what clients get, and a change that moves its
answers (a new artifact, a new class, another primary) is what a reviewer should see. Other
versions are candidates and shadows, expected to differ; their canaries are `test_data`.
Outputs are compared as the self-tests compare them, within the model's `tolerance`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from ._config import ServiceConfig
from ._errors import RequestError, ServingRuntimeError
from ._model import SelfTestReport, SelfTestRow, ServedModel, close, to_json_value
from ._registry import Registry, plan_from_config
from ._report import misses_table

DRIFT_DIR = "drift"
INPUTS = "inputs.jsonl"
BASELINE = "baseline.jsonl"


@dataclass(frozen=True)
class DriftResult:
    """One model's primary on its dataset: the rows against the baseline, or why it could not run.

    After an update, `report` compares the new outputs with the old baseline: its failures are
    the rows that changed.
    """

    model_id: str
    version: str
    folder: Path
    report: SelfTestReport | None = None
    problem: str | None = None
    missing: bool = False  # no dataset: the problem is only that nothing is committed yet
    written: bool = False

    @property
    def passed(self) -> bool:
        """Every row within tolerance of its baseline."""
        return self.problem is None and self.report is not None and self.report.passed


def check_drift(
    config: ServiceConfig, model_ids: Iterable[str] | None = None, folder: Path | None = None
) -> list[DriftResult]:
    """Run each model's primary on its dataset and compare with its baseline."""
    return [_compare(*args) for args in _primaries(config, model_ids, folder)]


def update_baselines(
    config: ServiceConfig, model_ids: Iterable[str] | None = None, folder: Path | None = None
) -> list[DriftResult]:
    """Write each model's baseline from its primary's current outputs; rows that fail stop it."""
    results = []
    for model_id, version, model, where in _primaries(config, model_ids, folder):
        result = _compare(model_id, version, model, where, update=True)
        if result.report is not None and result.problem is None:
            baseline = [{"features": r.features, "output": r.got} for r in result.report.rows]
            _write_lines(where / BASELINE, baseline)
            result = replace(result, written=True)
        results.append(result)
    return results


def _primaries(
    config: ServiceConfig, model_ids: Iterable[str] | None, folder: Path | None
) -> list[tuple[str, str, ServedModel | str, Path]]:
    """(model id, primary, the loaded model or why it cannot serve, its drift folder)."""
    plan = plan_from_config(config)
    chosen = list(plan) if model_ids is None else list(model_ids)
    unknown = [m for m in chosen if m not in plan]
    if unknown:
        raise ServingRuntimeError(f"no model {', '.join(unknown)} in {', '.join(plan)}")
    registry = Registry(config.root)
    primaries = {  # the primaries alone: the other versions are not checked
        m: replace(plan[m], versions={plan[m].primary: plan[m].versions[plan[m].primary]})
        for m in chosen
    }
    registry.apply(primaries)
    root = folder if folder is not None else config.root / DRIFT_DIR
    found: list[tuple[str, str, ServedModel | str, Path]] = []
    for model_id, entry in registry.snapshot.items():
        version = entry.plan.primary
        serving = entry.serving
        model = serving.model if serving is not None and serving.model is not None else None
        why = f"primary {version} {entry.versions[version].problem}"
        found.append((model_id, version, model or why, root / model_id))
    return found


def _compare(
    model_id: str, version: str, model: ServedModel | str, where: Path, *, update: bool = False
) -> DriftResult:
    result = DriftResult(model_id, version, where)
    if isinstance(model, str):
        return replace(result, problem=f"cannot run: {model}")
    if not (where / INPUTS).is_file():
        problem = (
            f'no dataset {where / INPUTS}: add one request per line, {{"features": ...}} '
            f"(e.g. from `serving-runtime records --model {model_id} --kind primary`), then "
            "write its baseline with `serving-runtime drift --update`"
        )
        return replace(result, problem=problem, missing=True)
    try:
        inputs = _read_inputs(where / INPUTS)
        baseline = _read_baseline(where / BASELINE, inputs, update=update)
    except ServingRuntimeError as exc:
        return replace(result, problem=str(exc))
    tolerance = model.selftest.tolerance
    rows = []
    for i, (features, expected) in enumerate(zip(inputs, baseline, strict=True)):
        got, error = _predict(model, features)
        same = error is None and close(got, expected, tolerance)
        rows.append(SelfTestRow(i, features, expected, got, same, error))
    report = SelfTestReport(tuple(rows), tolerance)
    failed = [r for r in rows if r.error is not None]
    if update and failed:
        problem = f"{len(failed)} row(s) raised, so no baseline was written (first: row "
        problem += f"{failed[0].index}, {failed[0].error})"
        return replace(result, report=report, problem=problem)
    return replace(result, report=report)


def _predict(model: ServedModel, features: Any) -> tuple[Any, str | None]:
    try:
        return to_json_value(model.predict(features)), None
    except RequestError as exc:
        return None, exc.message
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _read_inputs(path: Path) -> list[Any]:
    inputs = []
    for number, line in _lines(path):
        if not isinstance(line, dict) or "features" not in line:
            raise ServingRuntimeError(f"{path}:{number}: expected an object with 'features'")
        inputs.append(line["features"])
    if not inputs:
        raise ServingRuntimeError(f"{path} has no rows")
    return inputs


def _read_baseline(path: Path, inputs: list[Any], *, update: bool) -> list[Any]:
    """The baseline output of each input; on update, the old one where its features match."""
    if update:
        try:
            old = _baseline_rows(path) if path.is_file() else []
        except ServingRuntimeError:  # a broken baseline is what an update replaces
            old = []
        old += [(None, None)] * (len(inputs) - len(old))
        return [o if f == x else None for (f, o), x in zip(old, inputs, strict=False)]
    if not path.is_file():
        raise ServingRuntimeError(
            f"no baseline {path}: write it with `serving-runtime drift --update`"
        )
    rows = _baseline_rows(path)
    features = [f for f, _ in rows]
    if features != inputs:
        differ = [i for i, (f, x) in enumerate(zip(features, inputs, strict=False)) if f != x]
        first = differ[0] if differ else min(len(features), len(inputs))
        raise ServingRuntimeError(
            f"{path} is not the baseline of {path.with_name(INPUTS)} ({len(features)} baseline "
            f"rows, {len(inputs)} inputs; first difference at row {first}): refresh it on "
            "purpose with `serving-runtime drift --update`"
        )
    return [o for _, o in rows]


def _baseline_rows(path: Path) -> list[tuple[Any, Any]]:
    rows = []
    for number, line in _lines(path):
        if not isinstance(line, dict) or line.keys() != {"features", "output"}:
            raise ServingRuntimeError(f'{path}:{number}: expected {{"features", "output"}}')
        rows.append((line["features"], line["output"]))
    return rows


def _lines(path: Path) -> Iterable[tuple[int, Any]]:
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if line.strip():
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ServingRuntimeError(f"{path}:{number}: not valid JSON: {exc}") from None


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    # Sorted keys and one row per line: a refreshed baseline reviews as a diff of its rows.
    data = b"".join(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n" for row in rows)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_bytes(data)
    temporary.replace(path)


def drift_table(result: DriftResult) -> str:
    """The rows beyond tolerance: features, baseline, got, tolerance."""
    report = result.report
    if report is None:
        return ""
    return misses_table(report, "baseline")
