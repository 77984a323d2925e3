"""Turn a request's `features` into what the team's predict() receives, or say what is wrong.

A model declares its features in one of two ways:

- `feature_names = ["amount", "age"]`: numbers, none missing (predict gets rows of floats);
- `feature_schema = {"amount": "number", "country": {"type": "category", "values": ["FR"],
  "nullable": True}, ...}`: each feature typed, in the order written (see `Feature`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import BadRequest

Rows = list[list[Any]]
# The frameworks models are served with (scikit-learn, XGBoost, LightGBM, ONNX Runtime) compute
# in float32: a value beyond its range, or not finite, is a client's error before it is theirs.
FLOAT32_MAX = 3.4028234663852886e38
INT64 = 2**63
TYPES = ("number", "integer", "boolean", "string", "category")
# The Open Inference Protocol datatype a feature's input tensor has.
DATATYPES = {
    "number": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
    "category": "BYTES",
}
_FIELDS = frozenset({"type", "nullable", "values"})


@dataclass(frozen=True)
class Feature:
    """One declared feature: its name, its type, whether it may be missing, its categories.

    A missing (`null`) value of a nullable feature reaches predict() as NaN, whatever the
    type, as pandas and scikit-learn's imputers and encoders expect; `values`, for a category,
    are the values a request may send (any string when absent).
    """

    name: str
    type: str = "number"
    nullable: bool = False
    values: tuple[str, ...] | None = None

    @property
    def datatype(self) -> str:
        """The V2 datatype of this feature's input tensor."""
        return DATATYPES[self.type]

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of one value of this feature."""
        schema: dict[str, Any]
        if self.type == "number":
            schema = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
        elif self.type == "integer":
            schema = {"type": "integer", "minimum": -INT64, "maximum": INT64 - 1}
        elif self.type == "boolean":
            schema = {"type": "boolean"}
        elif self.values is not None:
            schema = {"enum": list(self.values)}
        else:
            schema = {"type": "string"}
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema

    def describe(self) -> dict[str, Any]:
        """The declaration as data: name, type, nullable and (for a category) values."""
        described: dict[str, Any] = {"name": self.name, "type": self.type}
        described["nullable"] = self.nullable
        if self.values is not None:
            described["values"] = list(self.values)
        return described


def parse_schema(feature_names: Any, feature_schema: Any) -> tuple[Feature, ...] | None:
    """The features a model class declares (None when it declares none); ValueError if wrong."""
    if feature_names and feature_schema:
        raise ValueError("declare feature_names or feature_schema, not both")
    if feature_schema:
        if not isinstance(feature_schema, Mapping):
            raise ValueError("feature_schema must be a mapping of feature name to type")
        return tuple(_feature(str(name), kind) for name, kind in feature_schema.items())
    if feature_names:
        if isinstance(feature_names, (str, bytes)):
            raise ValueError("feature_names must be a list of names, not one string")
        return tuple(Feature(str(name)) for name in feature_names)
    return None


def _feature(name: str, declared: Any) -> Feature:
    where = f"feature_schema[{name!r}]"
    if isinstance(declared, str):
        declared = {"type": declared}
    if not isinstance(declared, Mapping):
        raise ValueError(f"{where} must be a type ({', '.join(TYPES)}) or a mapping")
    unknown = set(declared) - _FIELDS
    if unknown:
        raise ValueError(f"{where} has unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    kind = declared.get("type")
    if kind not in TYPES:
        raise ValueError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
    nullable = declared.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ValueError(f"{where}: nullable must be true or false")
    values = declared.get("values")
    if values is not None:
        if kind != "category":
            raise ValueError(f"{where}: only a category has values")
        if isinstance(values, str) or not all(isinstance(v, str) for v in values) or not values:
            raise ValueError(f"{where}: values must be a non-empty list of strings")
        values = tuple(values)
    return Feature(name, kind, nullable, values)


class FeatureSpec:
    """The features a model declares; validates and orders incoming rows.

    A request may send one row as an object keyed by name or as a list of values in order,
    or several rows as a list of either. predict() always gets a list of rows.
    """

    __slots__ = ("_plain", "features", "frame", "index", "names")

    def __init__(self, features: Sequence[Feature | str], *, frame: bool = False) -> None:
        self.features = tuple(f if isinstance(f, Feature) else Feature(f) for f in features)
        self.frame = frame  # predict() takes a pandas.DataFrame of these columns
        self.names = tuple(f.name for f in self.features)
        self.index = {name: i for i, name in enumerate(self.names)}
        # Numbers none of which may be missing: the request path of feature_names, kept fast.
        self._plain = all(f.type == "number" and not f.nullable for f in self.features)

    def rows(self, features: Any) -> Rows:
        """The rows in `features`, each a list of values in the declared order."""
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
                raise BadRequest(f"{where} must be an object or a list of values, got {_kind(row)}")
        return rows

    def data_frame(self, rows: Rows) -> Any:
        """`rows` as a pandas.DataFrame: a column per feature, of its type's dtype.

        number: float64; integer: int64 (float64 when nullable, missing as NaN); boolean:
        bool (object when nullable); category: pandas' category, of its values when declared;
        string: object. pandas is imported here, so only models that take frames need it.
        """
        import pandas

        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.features]
        return pandas.DataFrame(
            {
                feature.name: pandas.Series(values, dtype=_dtype(pandas, feature))
                for feature, values in zip(self.features, columns, strict=True)
            }
        )

    def columns(self, columns: Mapping[str, Sequence[Any]]) -> Rows:
        """The rows of one column of values per feature (V2's inputs by name), errors naming
        the input and the element."""
        checked = [
            [_typed(feature, v, f"input {feature.name!r}[{i}]") for i, v in enumerate(values)]
            for feature, values in zip(
                self.features, map(columns.__getitem__, self.names), strict=True
            )
        ]
        return [list(row) for row in zip(*checked, strict=True)]

    def _row_from_list(self, values: list[Any], where: str) -> list[Any]:
        if len(values) != len(self.names):
            raise BadRequest(f"{where} has {len(values)} values, expected {len(self.names)}")
        if not self._plain:
            features = self.features
            return [
                _typed(features[i], v, f"{where}[{i}] ({features[i].name})")
                for i, v in enumerate(values)
            ]
        for i, value in enumerate(values):
            if not _is_number(value):
                raise BadRequest(
                    f"{where}[{i}] ({self.names[i]}) must be a number, got {_kind(value)}"
                )
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise BadRequest(f"{where}[{i}] ({self.names[i]}) {_out_of_range(value)}")
        return [float(v) for v in values]

    def _row_from_object(self, values: dict[str, Any], where: str) -> list[Any]:
        row: list[Any] = [0.0] * len(self.names)
        plain = self._plain
        for name, value in values.items():
            i = self.index.get(name)
            if i is None:
                raise BadRequest(f"{where} has an unknown feature {name!r}")
            if not plain:
                row[i] = _typed(self.features[i], value, f"{where}.{name}")
                continue
            if not _is_number(value):
                raise BadRequest(f"{where}.{name} must be a number, got {_kind(value)}")
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise BadRequest(f"{where}.{name} {_out_of_range(value)}")
            row[i] = float(value)
        if len(values) != len(self.names):
            missing = [n for n in self.names if n not in values]
            raise BadRequest(f"{where} is missing {', '.join(repr(n) for n in missing)}")
        return row


def _dtype(pandas: Any, feature: Feature) -> Any:
    kind = feature.type
    if kind == "number" or (kind == "integer" and feature.nullable):
        return "float64"
    if kind == "integer":
        return "int64"
    if kind == "boolean":
        return "object" if feature.nullable else "bool"
    if kind == "category":
        return pandas.CategoricalDtype(list(feature.values)) if feature.values else "category"
    return "object"


def _typed(feature: Feature, value: Any, where: str) -> Any:
    """`value` as predict() receives it for `feature`; BadRequest naming `where` if not one."""
    kind = type(value)
    if value is None or (kind is float and math.isnan(value)):  # NaN: V2's missing number
        if feature.nullable:
            return math.nan
        if value is None:
            raise BadRequest(f"{where} must be {_expected(feature)}, got null (it is not nullable)")
        raise BadRequest(f"{where} {_out_of_range(value)}")
    wanted = feature.type
    if wanted == "number":
        if kind is not float and kind is not int:
            raise BadRequest(f"{where} must be a number, got {_kind(value)}")
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise BadRequest(f"{where} {_out_of_range(value)}")
        return float(value)
    if wanted == "integer":
        if kind is float and value.is_integer():  # 3.0: what JSON and FP tensors may carry
            value, kind = int(value), int
        if kind is not int:
            raise BadRequest(f"{where} must be an integer, got {_kind(value)}")
        if not -INT64 <= value < INT64:
            raise BadRequest(f"{where} is {value}: integers must fit in 64 bits")
        return value
    if wanted == "boolean":
        if kind is not bool:
            raise BadRequest(f"{where} must be a boolean, got {_kind(value)}")
        return value
    if kind is not str:
        raise BadRequest(f"{where} must be {_expected(feature)}, got {_kind(value)}")
    if feature.values is not None and value not in feature.values:
        raise BadRequest(f"{where} must be {_expected(feature)}, got {value!r}")
    return value


def _expected(feature: Feature) -> str:
    if feature.values is not None:
        return "one of " + ", ".join(repr(v) for v in feature.values)
    article = "an" if feature.type == "integer" else "a"
    return f"{article} {feature.type}"


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _out_of_range(value: float) -> str:
    return f"is {value!r}: features must be finite, within ±3.4e38 (float32, which models use)"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) is float and math.isnan(value):
        return "NaN"
    return names.get(type(value), type(value).__name__)
