"""OpenTelemetry tracing: off unless an OTLP endpoint is configured, then one server span per
request with `validate` and `predict` children, carrying model, version and request id.

Set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) to turn it on; the
standard OTEL_* variables configure the rest. Needs `lls-serving-runtime[tracing]`. When off,
nothing of OpenTelemetry is imported and the request path pays one `is None` test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._logs import JsonLog

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Tracing:
    """Spans for this process; the exporter starts in each worker after fork, on first use."""

    def __init__(self, service_name: str) -> None:
        self.service_name = os.environ.get("OTEL_SERVICE_NAME", service_name)
        self._pid = 0
        self._tracer: Any = None
        self._propagator: Any = None

    @classmethod
    def from_environment(cls, service_name: str, log: JsonLog) -> Tracing | None:
        """Tracing when an OTLP endpoint is set and OpenTelemetry is installed, else None."""
        if not any(os.environ.get(name) for name in _ENDPOINTS):
            return None
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError:
            log.event(
                "warning",
                "tracing_unavailable",
                message="an OTLP endpoint is set but OpenTelemetry is not installed: "
                "install lls-serving-runtime[tracing]",
            )
            return None
        return cls(service_name)

    def _start(self) -> None:
        # After fork: the batch exporter's thread must belong to this process.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.propagate import get_global_textmap
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": self.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = provider.get_tracer("serving_runtime")
        self._propagator = get_global_textmap()
        self._pid = os.getpid()

    @contextmanager
    def request(self, headers: dict[str, str], method: str, path: str) -> Iterator[Any]:
        """The server span of one request, child of the caller's trace context if sent.

        `headers` are the request's, with lower-case names (the trace context is read there).
        """
        if self._pid != os.getpid():
            self._start()
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract(headers)
        with self._tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            yield span

    @contextmanager
    def step(self, name: str, model_id: str, version: str, request_id: str) -> Iterator[None]:
        """A child span of the current request: validate or predict."""
        with self._tracer.start_as_current_span(
            name,
            attributes={
                "lls.model_id": model_id,
                "lls.version": version,
                "lls.request_id": request_id,
            },
        ):
            yield
