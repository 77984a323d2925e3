"""The HTTP face as a client sees it: answers, every error case, request ids, logs."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from .conftest import Server, linear


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error body, after checking the shared shape and the echoed request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    assert error["code"]
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def test_infer_answers_with_output_model_version_and_request_id(server: Server) -> None:
    response = server.post("/infer", {"model_id": "linear", "features": {"a": 2, "b": 3}})
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "model_id": "linear",
        "version": "v1",
        "request_id": response.headers["x-request-id"],
        "output": [linear("v1", 2, 3)],
    }


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ([4, 1], [linear("v1", 4, 1)]),
        ([[1, 0], {"a": 0, "b": 1}], [linear("v1", 1, 0), linear("v1", 0, 1)]),
    ],
)
def test_features_as_list_or_rows(server: Server, features: Any, expected: list[float]) -> None:
    response = server.post("/infer", {"model_id": "linear", "features": features})
    assert response.json()["output"] == expected


def test_explicit_version_is_served(server: Server) -> None:
    response = server.post("/infer", {"model_id": "linear", "version": "v2", "features": [1, 0]})
    assert (response.json()["version"], response.json()["output"]) == ("v2", [linear("v2", 1, 0)])


def test_request_id_is_taken_from_the_request_and_echoed(server: Server) -> None:
    response = server.post(
        "/infer", {"model_id": "echo", "features": 1}, headers={"x-request-id": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"


def test_a_request_id_that_is_not_an_id_is_replaced(server: Server) -> None:
    response = server.post(
        "/infer", {"model_id": "echo", "features": 1}, headers={"x-request-id": "a b\tc"}
    )
    assert response.headers["x-request-id"] not in ("a b\tc", "")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"features": [1, 2]}', "model_id"),
        (b'{"model_id": 7, "features": [1, 2]}', "model_id"),
        (b'{"model_id": "linear"}', "features is required"),
        (b'{"model_id": "linear", "features": [1, 2], "extra": 1}', "unknown field(s): extra"),
        (b'{"model_id": "linear", "features": [1, 2, 3]}', "has 3 values, expected 2"),
        (b'{"model_id": "linear", "features": {"a": 1}}', "missing 'b'"),
        (b'{"model_id": "linear", "features": {"a": 1, "b": 2, "c": 3}}', "unknown feature 'c'"),
        (b'{"model_id": "linear", "features": {"a": 1, "b": "x"}}', "features.b must be a number"),
        (b'{"model_id": "linear", "features": []}', "non-empty list"),
        (b'{"model_id": "linear", "features": [[1, 2], 3]}', "features[1] must be"),
        (b'{"model_id": "linear", "features": [1, true]}', "features[1] (b) must be a number"),
    ],
)
def test_malformed_requests_get_400_naming_the_problem(
    server: Server, body: bytes, needle: str
) -> None:
    response = httpx.post(
        server.url + "/infer", content=body, headers={"content-type": "application/json"}
    )
    assert needle in error_of(response, 400)["message"]


def test_unknown_model_and_version_get_404(server: Server) -> None:
    unknown = server.post("/infer", {"model_id": "nope", "features": [1, 2]})
    assert "unknown model 'nope'" in error_of(unknown, 404)["message"]
    version = server.post("/infer", {"model_id": "linear", "version": "v9", "features": [1, 2]})
    assert "no version 'v9'" in error_of(version, 404)["message"]
    path = httpx.get(server.url + "/nowhere")
    error_of(path, 404)


def test_wrong_method_gets_405_with_allow(server: Server) -> None:
    response = httpx.get(server.url + "/infer")
    error_of(response, 405)
    assert response.headers["allow"] == "POST"


def test_body_over_the_limit_gets_413_without_reading_it(server: Server) -> None:
    big = b'{"model_id": "echo", "features": "' + b"x" * (1024 * 1024) + b'"}'
    response = httpx.post(
        server.url + "/infer", content=big, headers={"content-type": "application/json"}
    )
    assert "over the limit of 1048576 bytes" in error_of(response, 413)["message"]


def test_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    def chunks() -> Any:
        yield b'{"model_id": "echo", "features": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(
        server.url + "/infer", content=chunks(), headers={"content-type": "application/json"}
    )
    error_of(response, 413)


def test_wrong_content_type_gets_415(server: Server) -> None:
    response = httpx.post(server.url + "/infer", content=b'{"model_id": "echo", "features": 1}')
    assert "application/json" in error_of(response, 415)["message"]


def test_predict_raising_gets_500_with_request_id_and_the_worker_lives_on(server: Server) -> None:
    before = _worker_pids(server)
    for _ in range(6):  # reach both workers
        response = server.post("/infer", {"model_id": "echo", "features": "raise"})
        error = error_of(response, 500)
        assert error["code"] == "predict_failed"
        assert "RuntimeError" in error["message"]
    ok = server.post("/infer", {"model_id": "echo", "features": "fine"})
    assert ok.json()["output"] == "fine"
    assert _worker_pids(server) == before
    logged = [r for r in server.log_lines() if r.get("request_id") == error["request_id"]]
    assert any("the model raised on purpose" in r.get("traceback", "") for r in logged)


def test_a_version_that_failed_its_selftests_never_serves(server: Server) -> None:
    response = server.post("/infer", {"model_id": "linear", "version": "bad", "features": [1, 2]})
    assert "failed its self-tests" in error_of(response, 503)["message"]


def test_liveness_readiness_and_listing(server: Server) -> None:
    assert httpx.get(server.url + "/livez").status_code == 200
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"]["linear"] == {"ready": True, "version": "v1"}
    models = {m["model_id"]: m for m in httpx.get(server.url + "/models").json()["models"]}
    states = {v["version"]: v["state"] for v in models["linear"]["versions"]}
    assert states == {"v1": "serving", "v2": "loaded", "bad": "failed"}
    bad = next(v for v in models["linear"]["versions"] if v["version"] == "bad")
    assert bad["selftest"]["failures"] == 1


def test_one_json_log_line_per_request_without_features(server: Server) -> None:
    response = server.post("/infer", {"model_id": "linear", "features": {"a": 9, "b": 9}})
    request_id = response.headers["x-request-id"]
    time.sleep(0.1)
    lines = [r for r in server.log_lines() if r.get("request_id") == request_id]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request"
    assert (line["model_id"], line["version"], line["status"]) == ("linear", "v1", 200)
    assert line["latency_ms"] > 0
    assert "features" not in line


def test_features_are_logged_only_when_asked(fresh_service: Any) -> None:
    from .conftest import running

    with running(fresh_service, "--log-features", workers=1) as server:
        response = server.post("/infer", {"model_id": "linear", "features": [7, 7]})
        time.sleep(0.1)
        line = next(
            r for r in server.log_lines() if r.get("request_id") == response.headers["x-request-id"]
        )
    assert line["features"] == [7, 7]


def test_a_raw_socket_client_gets_a_valid_answer(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"model_id": "echo", "features": [1, "x"]}).encode()
    request = (
        f"POST /infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["output"] == [1, "x"]


def _worker_pids(server: Server) -> set[int]:
    lines = server.log_lines()
    return {r["pid"] for r in lines if "Booting worker" in r.get("message", "")}
