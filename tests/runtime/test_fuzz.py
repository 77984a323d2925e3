"""Fuzzing the JSON face: no input, however malformed, gets a 5xx or takes the server down.

Schemathesis generates requests from the runtime's own OpenAPI document (valid and invalid
ones) and checks every answer against it; hypothesis throws arbitrary bodies at /infer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from .conftest import CONFIG, Server, build_service, running

# The linear model only: the echo model raises on purpose for some inputs.
FUZZ_CONFIG = {"models": {"linear": CONFIG["models"]["linear"]}}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = build_service(tmp_path_factory.mktemp("fuzz"), FUZZ_CONFIG)
    with running(config, workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def api(fuzz_server: Server) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    return schema.exclude(path_regex="^/admin/")  # changes state; covered by test_load.py


def test_every_answer_follows_the_document_and_none_is_a_server_error(
    api: schemathesis.BaseSchema,
) -> None:
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:
        # The V2 protocol's rules between fields (as many elements as the shape holds, of its
        # datatype) are beyond a JSON schema: a 400 for breaking them is right, not a rejection
        # of valid data.
        beyond = [positive_data_acceptance] if operation.path.startswith("/v2/") else []
        fuzz(operation, beyond)


def fuzz(operation: Any, excluded: list[Any]) -> None:
    """Valid and invalid requests of one operation, each answer checked against the document."""

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=excluded)

    call()


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(
    body=st.one_of(
        st.binary(max_size=64),
        JSON.map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {"model_id": st.sampled_from(["linear", "", "nope"]), "features": JSON},
            optional={"version": JSON},
        ).map(lambda value: json.dumps(value).encode()),
    )
)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_bodies_get_an_answer_below_500(fuzz_server: Server, body: bytes) -> None:
    response = httpx.post(
        fuzz_server.url + "/infer", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (body, response.text)
    if response.status_code != 200:
        assert response.json()["error"]["status"] == response.status_code


def test_the_server_is_still_up_after_the_fuzzing(fuzz_server: Server) -> None:
    answer = fuzz_server.post("/infer", {"model_id": "linear", "features": [1, 2]})
    assert answer.json()["output"] == [5.0]


def test_the_document_lists_the_routes_the_server_answers(fuzz_server: Server) -> None:
    document = httpx.get(fuzz_server.url + "/openapi.json").json()
    for path in document["paths"]:
        if "{" not in path:
            assert httpx.request("OPTIONS", fuzz_server.url + path).status_code == 405


def test_the_document_gives_the_routing_key_header_on_both_faces(fuzz_server: Server) -> None:
    document = httpx.get(fuzz_server.url + "/openapi.json").json()
    for path in (
        "/infer",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        headers = [p["name"] for p in document["paths"][path]["post"]["parameters"]]
        assert "x-routing-key" in headers, path
    answer = httpx.post(
        fuzz_server.url + "/v2/models/linear/infer",
        json={"inputs": [{"name": "rows", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
        headers={"x-routing-key": "customer-1"},
    )
    assert answer.json()["outputs"][0]["data"] == [5.0]
