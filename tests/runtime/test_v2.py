"""The Open Inference Protocol face as its clients see it: tritonclient against a real server."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from serving_runtime._tensors import Tensor, decode_inputs, output_tensor

from .conftest import Server, linear, running

ROWS = np.array([[1.0, 2.0], [1.0, 0.0], [0.5, 4.0]])


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.url.removeprefix("http://")) as connected:
        yield connected


def tensor(name: str, values: Any, datatype: str, *, binary: bool = True) -> triton.InferInput:
    array = np.asarray(values, dtype=object if datatype == "BYTES" else None)
    given = triton.InferInput(name, list(array.shape), datatype)
    given.set_data_from_numpy(array, binary_data=binary)
    return given


def v2_error(response: httpx.Response, status: int) -> str:
    """The message, after checking the protocol's error shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    return body["error"]


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "lls-serving-runtime"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_readiness_by_version(client: triton.InferenceServerClient, server: Server) -> None:
    assert client.is_model_ready("linear")
    assert client.is_model_ready("linear", "v2")
    assert not client.is_model_ready("linear", "bad")  # failed its self-tests
    assert not client.is_model_ready("nope")
    not_ready = httpx.get(server.url + "/v2/models/linear/versions/bad/ready")
    assert (not_ready.status_code, not_ready.json()) == (503, {"name": "linear", "ready": False})
    assert "unknown model 'nope'" in v2_error(httpx.get(server.url + "/v2/models/nope/ready"), 404)


def test_model_metadata_lists_feature_inputs_and_the_output(
    client: triton.InferenceServerClient,
) -> None:
    metadata = client.get_model_metadata("linear")
    assert metadata["name"] == "linear"
    assert metadata["versions"] == ["v1", "v2"]
    assert metadata["inputs"] == [
        {"name": "a", "datatype": "FP64", "shape": [-1]},
        {"name": "b", "datatype": "FP64", "shape": [-1]},
    ]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP64", "shape": [-1]}]
    assert client.get_model_metadata("echo")["inputs"] == []  # no feature_names declared
    with pytest.raises(InferenceServerException, match="no version 'v9'") as raised:
        client.get_model_metadata("linear", "v9")
    assert raised.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32", "INT64"])
def test_one_matrix_input_of_n_rows_by_features(
    client: triton.InferenceServerClient, binary: bool, datatype: str
) -> None:
    values = ROWS.astype(triton.triton_to_np_dtype(datatype))
    outputs = [triton.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer("linear", [tensor("x", values, datatype, binary=binary)], outputs=outputs)
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == ("linear", "v1")
    assert ("data" in response["outputs"][0]) is not binary
    got = result.as_numpy("output")
    assert got.dtype == np.float64
    assert got.tolist() == [linear("v1", a, b) for a, b in values.tolist()]


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
def test_one_input_per_feature(client: triton.InferenceServerClient, shape: tuple[int]) -> None:
    inputs = [
        tensor("b", ROWS[:, 1].reshape(shape), "FP64"),  # order of inputs does not matter
        tensor("a", ROWS[:, 0].reshape(shape), "FP64"),
    ]
    got = client.infer("linear", inputs).as_numpy("output")
    assert got.tolist() == [linear("v1", a, b) for a, b in ROWS.tolist()]


def test_a_named_version_answers(client: triton.InferenceServerClient) -> None:
    result = client.infer("linear", [tensor("x", ROWS, "FP64")], model_version="v2")
    assert result.get_response()["model_version"] == "v2"
    assert result.as_numpy("output").tolist() == [linear("v2", a, b) for a, b in ROWS.tolist()]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    ("values", "datatype"),
    [
        ([b"hello", "wörld".encode()], "BYTES"),
        ([[1, 2, 3], [4, 5, 6]], "INT64"),
        ([[True], [False]], "BOOL"),
        ([0.5, 1.5], "FP64"),
    ],
)
def test_a_model_without_feature_names_gets_the_tensor_as_nested_lists(
    client: triton.InferenceServerClient, values: list[Any], datatype: str, binary: bool
) -> None:
    outputs = [triton.InferRequestedOutput("output", binary_data=binary)]
    result = client.infer("echo", [tensor("in", values, datatype, binary=binary)], outputs=outputs)
    output = result.get_response()["outputs"][0]
    assert output["datatype"] == datatype
    assert output["shape"] == list(np.asarray(values).shape)
    got = result.as_numpy("output").tolist()
    if datatype == "BYTES":  # tritonclient gives bytes from binary data, text from JSON
        got = [g.encode() if isinstance(g, str) else g for g in got]
    assert got == values


def test_request_id_is_echoed_and_x_request_id_kept(server: Server) -> None:
    body = {
        "id": "42",
        "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["hi"]}],
    }
    response = httpx.post(
        server.url + "/v2/models/echo/infer", json=body, headers={"x-request-id": "abc"}
    )
    assert response.headers["x-request-id"] == "abc"
    assert response.json() == {
        "model_name": "echo",
        "model_version": "1",
        "id": "42",
        "outputs": [{"name": "output", "datatype": "BYTES", "shape": [1], "data": ["hi"]}],
    }


def test_unknown_model_or_version_is_an_error(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as raised:
        client.infer("nope", [tensor("x", ROWS, "FP64")])
    assert raised.value.status() == "404"
    with pytest.raises(InferenceServerException, match="no version 'v9'"):
        client.infer("linear", [tensor("x", ROWS, "FP64")], model_version="v9")
    with pytest.raises(InferenceServerException, match="failed its self-tests") as raised:
        client.infer("linear", [tensor("x", ROWS, "FP64")], model_version="bad")
    assert raised.value.status() == "503"


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([tensor("x", [[1.0, 2.0, 3.0]], "FP64")], "has shape [1, 3]; model 'linear' takes"),
        ([tensor("x", [1.0, 2.0], "FP64")], "has shape [2]"),
        ([tensor("a", [1.0, 2.0], "FP64")], "missing input(s) ['b']"),
        (
            [tensor("a", [1.0], "FP64"), tensor("b", [1.0], "FP64"), tensor("c", [1.0], "FP64")],
            "unknown input(s) ['c']",
        ),
        ([tensor("a", [1.0, 2.0], "FP64"), tensor("b", [1.0], "FP64")], "'b' has shape [1]"),
        ([tensor("x", [["1", "2"]], "BYTES")], "must be a number, got a string"),
    ],
)
def test_bad_shapes_are_400_naming_the_problem(
    client: triton.InferenceServerClient, inputs: list[triton.InferInput], needle: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer("linear", inputs)
    assert raised.value.status() == "400"
    assert needle in raised.value.message()


def _raw(server: Server, header: dict[str, Any], binary: bytes = b"", **headers: str) -> Any:
    body = json.dumps(header).encode()
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(body))
    return httpx.post(
        server.url + "/v2/models/linear/infer", content=body + binary, headers=headers
    )


def _input(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", **fields}]}


@pytest.mark.parametrize(
    ("header", "binary", "needle"),
    [
        (_input(data=[1.0]), b"", "has 1 elements; its shape [1, 2] needs 2"),
        (_input(data=[1.0, "2"]), b"", "FP64 data holds str values"),
        (_input(parameters={"binary_data_size": 8}), struct.pack("<d", 1), "8 bytes of binary"),
        (_input(parameters={"binary_data_size": 16}), struct.pack("<d", 1), "does not fit"),
        (_input(data=[1, 2]), struct.pack("<d", 1), "binary_data_size add up to 0"),
        (_input(), b"", "neither data nor parameters.binary_data_size"),
        ({**_input(data=[1, 2]), "outputs": [{"name": "proba"}]}, b"", "no output 'proba'"),
        ({"inputs": []}, b"", "non-empty list"),
        ({**_input(data=[1, 2]), "model": "x"}, b"", "unknown field(s): model"),
        ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP8"}]}, b"", "not one of BOOL"),
    ],
)
def test_malformed_tensors_are_400(
    server: Server, header: dict[str, Any], binary: bytes, needle: str
) -> None:
    assert needle in v2_error(_raw(server, header, binary), 400)


def test_content_types_and_encodings(server: Server) -> None:
    header = _input(data=[1, 2])
    for content_type in ("application/json", "application/octet-stream"):
        assert _raw(server, header, **{"content-type": content_type}).status_code == 200
    assert "not text/plain" in v2_error(_raw(server, header, **{"content-type": "text/plain"}), 415)
    zipped = httpx.post(
        server.url + "/v2/models/linear/infer",
        content=gzip.compress(json.dumps(header).encode()),
        headers={"content-encoding": "gzip"},
    )
    assert zipped.json()["outputs"][0]["data"] == [linear("v1", 1, 2)]
    bad = httpx.post(
        server.url + "/v2/models/linear/infer", content=b"{}", headers={"content-encoding": "br"}
    )
    assert "not gzip or deflate" in v2_error(bad, 415)


def test_the_body_limit_holds_for_binary_and_compressed_bodies(server: Server) -> None:
    limit = 1024 * 1024
    count = limit // 8
    header = {"inputs": [{"name": "x", "shape": [count // 2, 2], "datatype": "FP64"}]}
    header["inputs"][0]["parameters"] = {"binary_data_size": count * 8}
    big = _raw(server, header, b"\0" * (count * 8))
    assert "over the limit of 1048576 bytes" in v2_error(big, 413)
    bomb = gzip.compress(b" " * (limit + 10) + json.dumps(_input(data=[1, 2])).encode())
    assert len(bomb) < 10_000
    inflated = httpx.post(
        server.url + "/v2/models/linear/infer", content=bomb, headers={"content-encoding": "gzip"}
    )
    assert "decompressed body is over the limit" in v2_error(inflated, 413)


def test_a_client_that_trickles_its_body_gets_408(tmp_path: Path) -> None:
    from .conftest import build_service

    with running(build_service(tmp_path / "service"), "--body-timeout", "1", workers=1) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v2/models/linear/infer HTTP/1.1\r\nHost: x\r\n"
                b'Content-Length: 1000\r\n\r\n{"inputs":'
            )
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        assert time.monotonic() - started < 5
        assert "did not arrive within 1 s" in json.loads(body)["error"]


def test_compressed_requests_from_tritonclient(client: triton.InferenceServerClient) -> None:
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "linear", [tensor("x", ROWS, "FP64")], request_compression_algorithm=algorithm
        )
        assert result.as_numpy("output").tolist() == [linear("v1", a, b) for a, b in ROWS]


def test_the_asyncio_client_works_too(server: Server) -> None:
    async def infer() -> list[float]:
        async with triton_aio.InferenceServerClient(server.url.removeprefix("http://")) as aio:
            assert await aio.is_model_ready("linear")
            result = await aio.infer("linear", [tensor("x", ROWS, "FP64", binary=False)])
            values: list[float] = result.as_numpy("output").tolist()
            return values

    assert asyncio.run(infer()) == [linear("v1", a, b) for a, b in ROWS.tolist()]


def test_predict_raising_is_500_in_the_protocol_shape_and_logged(server: Server) -> None:
    body = {"inputs": [{"name": "x", "shape": [], "datatype": "BYTES", "data": "raise"}]}
    response = httpx.post(server.url + "/v2/models/echo/infer", json=body)
    assert "failed to predict: RuntimeError" in v2_error(response, 500)
    request_id = response.headers["x-request-id"]
    logged = [r for r in server.log_lines() if r.get("request_id") == request_id]
    assert any("the model raised on purpose" in r.get("traceback", "") for r in logged)


def test_unknown_v2_paths_are_404_in_the_protocol_shape(server: Server) -> None:
    assert "no such path" in v2_error(httpx.get(server.url + "/v2/repository/index"), 404)
    assert "no such path" in v2_error(httpx.post(server.url + "/v2/models/linear/explain"), 404)


def test_metrics_count_v2_inferences_by_model_version_and_status(tmp_path: Path) -> None:
    from .conftest import build_service

    with running(build_service(tmp_path / "service"), workers=2) as server:
        with triton.InferenceServerClient(server.url.removeprefix("http://")) as client:
            for _ in range(5):
                client.infer("linear", [tensor("x", ROWS, "FP64")])
            for _ in range(2):
                client.infer("linear", [tensor("x", ROWS, "FP64")], model_version="v2")
            for model, inputs in (("linear", [tensor("x", [1.0], "FP64")]), ("nope", [])):
                with pytest.raises(InferenceServerException):
                    client.infer(model, inputs or [tensor("x", ROWS, "FP64")])
            server.post("/infer", {"model_id": "linear", "features": [1, 2]})
        text = httpx.get(server.url + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("lls_requests_total", model_id="linear", version="v1", status="200") == 6
    assert value("lls_requests_total", model_id="linear", version="v2", status="200") == 2
    assert value("lls_requests_total", model_id="linear", version="", status="400") == 1
    assert value("lls_request_errors_total", model_id="_none", version="", status="404") == 1
    assert value("lls_request_duration_seconds_count", model_id="linear", version="v2") == 2


# The codec on its own: the cases a client cannot easily send.


@pytest.mark.parametrize(
    ("value", "datatype", "shape"),
    [
        ([[1, 2], [3, 4]], "INT64", (2, 2)),
        ([1, 2.5], "FP64", (2,)),
        (np.array([[0.25], [0.5]], dtype=np.float32), "FP64", (2, 1)),
        (np.int64(7), "INT64", ()),
        (["a", "é"], "BYTES", (2,)),
        ([True, False], "BOOL", (2,)),
        ([], "FP64", (0,)),
    ],
)
def test_outputs_become_tensors_that_pack_and_decode_back(
    value: Any, datatype: str, shape: tuple[int, ...]
) -> None:
    out = output_tensor("output", value)
    assert (out.datatype, out.shape) == (datatype, shape)
    if out.flat:
        spec = {"name": "t", "shape": list(shape), "datatype": datatype}
        spec["parameters"] = {"binary_data_size": len(out.packed())}
        back = decode_inputs([spec], memoryview(out.packed()))
        assert back == [Tensor("t", datatype, shape, out.flat)]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({"label": 1}, "not of one tensor datatype (dict)"),
        ([[1, 2], [3]], "not rectangular"),
        ([1, "a"], "(int, str)"),
        ([2**64], "does not fit INT64"),
    ],
)
def test_outputs_that_are_not_tensors_are_refused(value: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        output_tensor("output", value)
