"""Typed features as clients send them: numbers that may be missing, integers, booleans,
categories and strings, by /infer and by tritonclient, with a 400 naming the feature."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from serving_runtime import testing
from serving_runtime._errors import BadRequest, ModelLoadError
from serving_runtime._features import FeatureSpec, parse_schema
from serving_runtime._model import load_model

from .conftest import Server, running

# predict() tells what it received: each value's type and value, so a test sees both.
LOANS = """
import math


class Loans:
    feature_schema = {
        "amount": "number",
        "income": {"type": "number", "nullable": True},
        "age": "integer",
        "first_loan": "boolean",
        "country": {"type": "category", "values": ["FR", "DE", "ES"], "nullable": True},
        "note": "string",
    }
    test_data = [
        {
            "features": {
                "amount": 100, "income": None, "age": 30, "first_loan": True,
                "country": "FR", "note": "a",
            },
            "expected": ["float:100.0 nan int:30 bool:True str:FR str:a"],
        },
        {
            "features": [[5.5, 2000, 41, False, None, ""], [1, 2, 3, True, "DE", "b"]],
            "expected": [
                "float:5.5 float:2000.0 int:41 bool:False nan str:",
                "float:1.0 float:2.0 int:3 bool:True str:DE str:b",
            ],
        },
    ]

    def load(self, file):
        pass

    def predict(self, rows):
        return [" ".join(_show(value) for value in row) for row in rows]


class LoansFrame(Loans):
    # the same features, as a pandas.DataFrame of their dtypes
    dataframe = True
    test_data = [
        {
            "features": Loans.test_data[0]["features"],
            "expected": ["float64 float64 int64 bool category object | 100.0 nan 30 True FR a"],
        }
    ]

    def predict(self, frame):
        import pandas

        assert isinstance(frame, pandas.DataFrame), type(frame)
        assert list(frame.columns) == list(self.feature_schema)
        assert list(frame["country"].cat.categories) == ["FR", "DE", "ES"]
        kinds = " ".join(str(kind) for kind in frame.dtypes)
        return [f"{kinds} | " + " ".join(map(str, row)) for row in frame.itertuples(index=False)]


def _show(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{type(value).__name__}:{value}"
"""
ROW = {"amount": 100, "income": 1500.5, "age": 30, "first_loan": True, "country": "ES", "note": "x"}


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("loans")
    (root / "loans_model.py").write_text(LOANS)
    config = {
        "models": {
            "loans": {
                "class": "loans_model:Loans",
                "primary": "v1",
                "versions": {"v1": {}},
                "batching": {"max_rows": 8},
            },
            "loans-frame": {
                "class": "loans_model:LoansFrame",
                "primary": "v1",
                "versions": {"v1": {}},
                "batching": {"max_rows": 8},
            },
        }
    }
    (root / "models.yaml").write_text(json.dumps(config))
    with running(root / "models.yaml", workers=1) as server:
        yield server


def infer(server: Server, features: Any) -> httpx.Response:
    return server.post("/infer", {"model_id": "loans", "features": features})


def test_a_row_by_name_reaches_predict_typed_and_null_as_nan(loans: Server) -> None:
    answer = infer(loans, {**ROW, "income": None, "country": None})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == ["float:100.0 nan int:30 bool:True nan str:x"]


def test_rows_in_order_and_an_integral_float_for_an_integer(loans: Server) -> None:
    answer = infer(loans, [[1.5, None, 7.0, False, "DE", "y"], list(ROW.values())])
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == [
        "float:1.5 nan int:7 bool:False str:DE str:y",
        "float:100.0 float:1500.5 int:30 bool:True str:ES str:x",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": None}, "features.amount must be a number, got null (it is not nullable)"),
        ({"amount": "12"}, "features.amount must be a number, got a string"),
        ({"age": 2.5}, "features.age must be an integer, got float"),
        ({"age": True}, "features.age must be an integer, got a boolean"),
        ({"first_loan": 1}, "features.first_loan must be a boolean, got int"),
        ({"country": "XX"}, "features.country must be one of 'FR', 'DE', 'ES', got 'XX'"),
        ({"note": 3}, "features.note must be a string, got int"),
        ({"note": None}, "features.note must be a string, got null (it is not nullable)"),
        ({"amount": 1e39}, "features.amount is 1e+39: features must be finite"),
    ],
)
def test_a_wrong_value_is_a_400_naming_the_feature(
    loans: Server, change: dict[str, Any], message: str
) -> None:
    answer = infer(loans, {**ROW, **change})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith(message)


def test_a_wrong_value_in_a_list_row_names_its_place_and_feature(loans: Server) -> None:
    answer = infer(loans, [list(ROW.values()), [1, 2, 3, "yes", "FR", ""]])
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert message == "features[1][3] (first_loan) must be a boolean, got a string"


def test_the_openapi_document_types_each_feature(loans: Server) -> None:
    document = httpx.get(loans.url + "/openapi.json").json()
    schema = document["paths"]["/infer"]["post"]["requestBody"]["content"]["application/json"]
    request = schema["schema"]
    jsonschema.Draft202012Validator.check_schema(request)
    validator = jsonschema.Draft202012Validator(request)
    good = {"model_id": "loans", "features": [{**ROW, "income": None}, list(ROW.values())]}
    assert not list(validator.iter_errors(good))
    for wrong in ({"country": "XX"}, {"amount": None}, {"age": 2.5}, {"first_loan": 0}):
        assert list(validator.iter_errors({"model_id": "loans", "features": {**ROW, **wrong}}))
        assert infer(loans, {**ROW, **wrong}).status_code == 400
    assert infer(loans, good["features"]).status_code == 200
    # a model that declares no features takes any JSON value, as before
    assert not list(validator.iter_errors({"model_id": "other", "features": "anything"}))


@pytest.fixture(scope="module")
def client(loans: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(loans.url.removeprefix("http://")) as connected:
        yield connected


def test_v2_metadata_gives_each_feature_its_datatype(client: triton.InferenceServerClient) -> None:
    inputs = client.get_model_metadata("loans")["inputs"]
    assert inputs == [
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
        {
            "name": "income",
            "datatype": "FP64",
            "shape": [-1],
            "parameters": {"type": "number", "nullable": True},
        },
        {
            "name": "age",
            "datatype": "INT64",
            "shape": [-1],
            "parameters": {"type": "integer", "nullable": False},
        },
        {
            "name": "first_loan",
            "datatype": "BOOL",
            "shape": [-1],
            "parameters": {"type": "boolean", "nullable": False},
        },
        {
            "name": "country",
            "datatype": "BYTES",
            "shape": [-1],
            "parameters": {"type": "category", "nullable": True, "values": ["FR", "DE", "ES"]},
        },
        {
            "name": "note",
            "datatype": "BYTES",
            "shape": [-1],
            "parameters": {"type": "string", "nullable": False},
        },
    ]


def typed_inputs(income: list[float], binary: bool) -> list[triton.InferInput]:
    # As a Triton client builds them from the metadata: one tensor per feature, its datatype.
    columns: dict[str, tuple[Any, str]] = {
        "amount": (np.array([10.0, 20.5]), "FP64"),
        "income": (np.array(income), "FP64"),
        "age": (np.array([18, 65], dtype=np.int64), "INT64"),
        "first_loan": (np.array([True, False]), "BOOL"),
        "country": (np.array([b"FR", b"ES"], dtype=object), "BYTES"),
        "note": (np.array(["é".encode(), b""], dtype=object), "BYTES"),
    }
    inputs = []
    for name, (values, datatype) in columns.items():
        given = triton.InferInput(name, list(values.shape), datatype)
        given.set_data_from_numpy(values, binary_data=binary)
        inputs.append(given)
    return inputs


def test_tritonclient_sends_typed_features_in_binary_nan_for_missing(
    client: triton.InferenceServerClient,
) -> None:
    result = client.infer("loans", typed_inputs([math.nan, 3000.0], binary=True))
    assert [v.decode() for v in result.as_numpy("output").tolist()] == [
        "float:10.0 nan int:18 bool:True str:FR str:é",
        "float:20.5 float:3000.0 int:65 bool:False str:ES str:",
    ]


def test_tritonclient_sends_typed_features_as_json(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("output", binary_data=False)]
    result = client.infer("loans", typed_inputs([1.0, 3000.0], binary=False), outputs=outputs)
    assert result.get_response()["outputs"][0]["data"] == [
        "float:10.0 float:1.0 int:18 bool:True str:FR str:é",
        "float:20.5 float:3000.0 int:65 bool:False str:ES str:",
    ]


def test_tritonclient_gets_a_400_naming_the_feature(client: triton.InferenceServerClient) -> None:
    inputs = typed_inputs([1.0, 2.0], binary=True)
    wrong = triton.InferInput("country", [2], "BYTES")
    wrong.set_data_from_numpy(np.array([b"FR", b"IT"], dtype=object))
    inputs[4] = wrong
    message = "input 'country'\\[1\\] must be one of 'FR', 'DE', 'ES', got 'IT'"
    with pytest.raises(InferenceServerException, match=message) as raised:
        client.infer("loans", inputs)
    assert raised.value.status() == "400"
    inputs[4] = triton.InferInput("country", [2], "INT64")
    inputs[4].set_data_from_numpy(np.array([1, 2], dtype=np.int64))
    with pytest.raises(
        InferenceServerException, match=r"input 'country'\[0\] must be one of .*, got int"
    ) as raised:
        client.infer("loans", inputs)
    assert raised.value.status() == "400"


def test_a_model_that_takes_a_data_frame_gets_one_of_typed_columns(
    loans: Server, client: triton.InferenceServerClient
) -> None:
    rows = [{**ROW, "income": None, "country": None}, [1.5, 2, 7.0, False, "DE", "y"]]
    answer = loans.post("/infer", {"model_id": "loans-frame", "features": rows})
    assert answer.status_code == 200, answer.text
    kinds = "float64 float64 int64 bool category object"
    assert answer.json()["output"] == [
        f"{kinds} | 100.0 nan 30 True nan x",
        f"{kinds} | 1.5 2.0 7 False DE y",
    ]
    result = client.infer("loans-frame", typed_inputs([math.nan, 3000.0], binary=True))
    assert [v.decode() for v in result.as_numpy("output").tolist()] == [
        f"{kinds} | 10.0 nan 18 True FR é",
        f"{kinds} | 20.5 3000.0 65 False ES ",
    ]


def test_typed_rows_batch_to_the_same_answers(loans: Server) -> None:
    testing.check_batching(loans.config)


def spec(declared: Any) -> FeatureSpec:
    features = parse_schema(None, declared)
    assert features is not None
    return FeatureSpec(features)


def test_feature_names_are_numbers_none_missing_as_before() -> None:
    plain = FeatureSpec(parse_schema(["a", "b"], None) or ())
    assert plain.rows({"a": 1, "b": 2}) == [[1.0, 2.0]]
    with pytest.raises(BadRequest, match=r"features.a must be a number, got null$"):
        plain.rows({"a": None, "b": 2})


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"a": "float"}, "type 'float' is not one of number, integer, boolean, string, category"),
        ({"a": {"type": "number", "nullable": "yes"}}, "nullable must be true or false"),
        ({"a": {"type": "string", "values": ["x"]}}, "only a category has values"),
        ({"a": {"type": "category", "values": []}}, "values must be a non-empty list"),
        ({"a": {"type": "number", "default": 0}}, "unknown key(s): default"),
        (["a"], "feature_schema must be a mapping"),
    ],
)
def test_a_wrong_schema_is_refused_naming_the_feature(declared: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec(declared)


def test_a_version_with_a_wrong_schema_does_not_load(tmp_path: Path) -> None:
    source = """
        class Both:
            feature_names = ["a"]
            feature_schema = {"a": "number"}
            test_data = [([1], [1])]
            def load(self, file): pass
            def predict(self, rows): return rows
    """
    (tmp_path / "both_model.py").write_text(textwrap.dedent(source))
    with pytest.raises(ModelLoadError, match="declare feature_names or feature_schema, not both"):
        load_model("both", "v1", "both_model:Both", None, tmp_path)


def test_a_data_frame_needs_declared_features(tmp_path: Path) -> None:
    source = """
        class Frame:
            dataframe = True
            test_data = [([1], [1])]
            def load(self, file): pass
            def predict(self, frame): return frame
    """
    (tmp_path / "frame_model.py").write_text(textwrap.dedent(source))
    with pytest.raises(ModelLoadError, match="dataframe = True needs feature_names or feature_"):
        load_model("frame", "v1", "frame_model:Frame", None, tmp_path)
