"""Tracing against a real OTLP/HTTP receiver on 127.0.0.1; nothing of it when off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .conftest import running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """Takes OTLP/HTTP protobuf exports, as a collector would, and keeps their spans."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest.FromString(body)
        self.server.paths.append(self.path)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}


def test_spans_for_request_validation_and_predict_honour_the_callers_trace(
    fresh_service: Path, receiver: Receiver
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "fraud-score",
    }
    with running(fresh_service, workers=2, env=env) as server:
        answer = server.post(
            "/infer",
            {"model_id": "linear", "features": [1, 2]},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "trace-me"},
        )
        assert answer.status_code == 200
        deadline = time.monotonic() + 20
        while len({s.name for s in receiver.spans}) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert receiver.paths[0] == "/v1/traces"
    mine = [s for s in receiver.spans if s.trace_id.hex() == TRACE_ID]
    by_name = {s.name: s for s in mine}
    assert set(by_name) == {"POST /infer", "validate", "predict"}
    request = by_name["POST /infer"]
    assert request.parent_span_id.hex() == PARENT_ID
    assert attributes(request)["http.response.status_code"] == 200
    assert attributes(request)["lls.request_id"] == "trace-me"
    for step in ("validate", "predict"):
        assert by_name[step].parent_span_id == request.span_id
        assert attributes(by_name[step]) == {
            "lls.model_id": "linear",
            "lls.version": "v1",
            "lls.request_id": "trace-me",
        }


def test_without_an_endpoint_nothing_of_opentelemetry_is_loaded(
    fresh_service: Path, short_tmp: Path
) -> None:
    code = (
        "import sys, serving_runtime; "
        f"app = serving_runtime.create_app({str(fresh_service)!r}); "
        "print(app.tracing, any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    temporary = short_tmp
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TMPDIR": str(temporary)},
    )
    assert result.stdout.split()[-2:] == ["None", "False"]
    assert list(temporary.iterdir()) == []  # its own state folder went with it
