"""Turn a request's `features` into what the team's predict() receives, or say what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._errors import BadRequest

Rows = list[list[float]]
# The frameworks models are served with (scikit-learn, XGBoost, LightGBM, ONNX Runtime) compute
# in float32: a value beyond its range, or not finite, is a client's error before it is theirs.
FLOAT32_MAX = 3.4028234663852886e38


class FeatureSpec:
    """The named features a model declares; validates and orders incoming rows.

    A request may send one row as an object keyed by name or as a list of numbers in order,
    or several rows as a list of either. predict() always gets a list of rows.
    """

    __slots__ = ("index", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}

    def rows(self, features: Any) -> Rows:
        """The rows in `features`, each a list of floats in the declared order."""
        if isinstance(features, dict):
            return [self._row_from_object(features, "features")]
        if not isinstance(features, list) or not features:
            raise BadRequest(
                f"features must be an object keyed by feature name or a non-empty list, "
                f"got {_kind(features)}"
            )
        if not isinstance(features[0], (dict, list)):  # one row of values
            return [self._row_from_list(features, "features")]
        rows = []
        for i, row in enumerate(features):
            where = f"features[{i}]"
            if isinstance(row, dict):
                rows.append(self._row_from_object(row, where))
            elif isinstance(row, list):
                rows.append(self._row_from_list(row, where))
            else:
                raise BadRequest(
                    f"{where} must be an object or a list of numbers, got {_kind(row)}"
                )
        return rows

    def _row_from_list(self, values: list[Any], where: str) -> list[float]:
        if len(values) != len(self.names):
            raise BadRequest(f"{where} has {len(values)} values, expected {len(self.names)}")
        for i, value in enumerate(values):
            if not _is_number(value):
                raise BadRequest(
                    f"{where}[{i}] ({self.names[i]}) must be a number, got {_kind(value)}"
                )
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise BadRequest(f"{where}[{i}] ({self.names[i]}) {_out_of_range(value)}")
        return [float(v) for v in values]

    def _row_from_object(self, values: dict[str, Any], where: str) -> list[float]:
        row: list[float] = [0.0] * len(self.names)
        for name, value in values.items():
            i = self.index.get(name)
            if i is None:
                raise BadRequest(f"{where} has an unknown feature {name!r}")
            if not _is_number(value):
                raise BadRequest(f"{where}.{name} must be a number, got {_kind(value)}")
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise BadRequest(f"{where}.{name} {_out_of_range(value)}")
            row[i] = float(value)
        if len(values) != len(self.names):
            missing = [n for n in self.names if n not in values]
            raise BadRequest(f"{where} is missing {', '.join(repr(n) for n in missing)}")
        return row


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _out_of_range(value: float) -> str:
    return f"is {value!r}: features must be finite, within ±3.4e38 (float32, which models use)"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)
