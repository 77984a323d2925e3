"""One loaded model version: the team's object, its feature spec and its self-test report."""

from __future__ import annotations

import hashlib
import importlib
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._errors import ModelLoadError, RequestError
from ._features import FeatureSpec, parse_schema

DEFAULT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SelfTestRow:
    """One canary row: what was expected, what came back, and whether they agree."""

    index: int
    features: Any
    expected: Any
    got: Any
    passed: bool
    error: str | None = None


@dataclass(frozen=True)
class SelfTestReport:
    """The result of running a version's `test_data`."""

    rows: tuple[SelfTestRow, ...]
    tolerance: float
    error: str | None = None  # the test data itself could not be read

    @property
    def passed(self) -> bool:
        """True when there is test data and every row matched."""
        return self.error is None and bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> tuple[SelfTestRow, ...]:
        """The rows that missed."""
        return tuple(r for r in self.rows if not r.passed)


@dataclass(frozen=True)
class ServedModel:
    """A model version that loaded: what serves its predictions."""

    model_id: str
    version: str
    instance: Any
    spec: FeatureSpec | None
    selftest: SelfTestReport = field(compare=False)

    def prepare(self, features: Any) -> Any:
        """What predict() receives for `features`; raises BadRequest on a wrong shape."""
        return features if self.spec is None else self.spec.rows(features)

    def run(self, inputs: Any) -> Any:
        """The team's predict() on prepared `inputs` (rows, concatenated or not), as a data
        frame when the model takes one."""
        if self.spec is not None and self.spec.frame:
            return self.instance.predict(self.spec.data_frame(inputs))
        return self.instance.predict(inputs)

    def predict(self, features: Any) -> Any:
        """Validate `features` and run the team's predict()."""
        return self.run(self.prepare(features))


def artifact_digest(path: Path) -> str | None:
    """sha256 of an artifact: a file's bytes, or a folder's files (names and bytes) in order.

    None when there is nothing at `path`.
    """
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        return None
    whole = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        whole.update(item.relative_to(path).as_posix().encode() + b"\0")
        whole.update(_file_digest(item).encode())
    return whole.hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def import_class(
    class_path: str, search_path: Path | None = None, methods: tuple[str, ...] = ("load", "predict")
) -> type[Any]:
    """Import `package.module:ClassName`, with the service's own folder importable."""
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    module_name, _, class_name = class_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelLoadError(f"cannot import {module_name!r}: {_one_line(exc)}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ModelLoadError(f"{module_name!r} has no class {class_name!r}")
    missing = [m for m in methods if not callable(getattr(cls, m, None))]
    if missing:
        raise ModelLoadError(f"{class_path} has no {' or '.join(missing)}() method")
    return cls


def load_model(
    model_id: str, version: str, class_path: str, artifact: Path | None, search_path: Path | None
) -> ServedModel:
    """Import, instantiate and load one version, then run its self-tests.

    Raises ModelLoadError when it cannot be loaded; a failed self-test is in the report.
    """
    cls = import_class(class_path, search_path)
    if artifact is not None and not artifact.exists():
        raise ModelLoadError(f"artifact {artifact} does not exist")
    try:
        instance = cls()
        instance.load(artifact)
    except Exception as exc:
        raise ModelLoadError(f"{class_path}.load({artifact}) raised {_one_line(exc)}") from exc
    try:
        features = parse_schema(
            getattr(instance, "feature_names", None), getattr(instance, "feature_schema", None)
        )
    except ValueError as exc:
        raise ModelLoadError(f"{class_path}: {exc}") from None
    frame = getattr(instance, "dataframe", False) is True
    if frame and features is None:
        raise ModelLoadError(
            f"{class_path}: dataframe = True needs feature_names or feature_schema"
        )
    spec = FeatureSpec(features, frame=frame) if features is not None else None
    served = ServedModel(model_id, version, instance, spec, SelfTestReport((), 0.0))
    return ServedModel(model_id, version, instance, spec, run_selftest(served))


def run_selftest(model: ServedModel) -> SelfTestReport:
    """Run the model's `test_data` through the same path as /infer and compare the outputs."""
    instance = model.instance
    tolerance = float(getattr(instance, "tolerance", DEFAULT_TOLERANCE))
    try:
        cases = _cases(getattr(instance, "test_data", None))
    except (TypeError, ValueError) as exc:
        return SelfTestReport((), tolerance, error=str(exc))
    if not cases:
        return SelfTestReport((), tolerance, error="test_data is empty: add canary rows")
    rows = []
    for i, (features, expected) in enumerate(cases):
        try:
            got = to_json_value(model.predict(features))
        except RequestError as exc:
            rows.append(SelfTestRow(i, features, expected, None, False, exc.message))
            continue
        except Exception as exc:
            rows.append(SelfTestRow(i, features, expected, None, False, _one_line(exc)))
            continue
        rows.append(SelfTestRow(i, features, expected, got, close(got, expected, tolerance)))
    return SelfTestReport(tuple(rows), tolerance)


def _cases(test_data: Any) -> list[tuple[Any, Any]]:
    if test_data is None:
        raise ValueError("the model has no test_data: add canary rows with expected outputs")
    cases = []
    for i, case in enumerate(test_data):
        if isinstance(case, dict) and set(case) == {"features", "expected"}:
            cases.append((case["features"], case["expected"]))
        elif isinstance(case, (tuple, list)) and len(case) == 2:
            cases.append((case[0], case[1]))
        else:
            raise ValueError(
                f"test_data[{i}] must be {{'features': ..., 'expected': ...}} or a pair"
            )
    return cases


def to_json_value(output: Any) -> Any:
    """The output as a client sees it: plain JSON values (numpy arrays become lists)."""
    return orjson.loads(dump_output(output))


def dump_output(value: Any) -> bytes:
    """A model's output (or anything holding one) as JSON; TypeError if it is not JSON.

    orjson writes a C-contiguous numpy array itself; any other, such as `predict_proba(X)[:, 1]`
    of several rows (a view across the rows) or a dtype orjson lacks, goes through `tolist`."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)


def _plain(value: Any) -> Any:
    """orjson's fallback: numpy arrays and scalars as Python values, without importing numpy."""
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
    return tolist()


def close(got: Any, expected: Any, tolerance: float) -> bool:
    """Numbers within `tolerance` (absolute), everything else equal, recursively."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, expected, rel_tol=0.0, abs_tol=tolerance)
    if isinstance(expected, list) and isinstance(got, list):
        return len(got) == len(expected) and all(
            close(g, e, tolerance) for g, e in zip(got, expected, strict=True)
        )
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(
            close(got[k], expected[k], tolerance) for k in expected
        )
    return bool(got == expected)


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(exc)[-1].strip()
