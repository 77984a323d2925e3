"""The ASGI application: routes, request ids, deadlines, errors, one log line and metrics each.

The faces (`_endpoints.py`, the runtime's JSON routes, and `_v2.py`, the Open Inference
Protocol) hold the handlers; this module routes to them and makes every answer the same way.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from serving_runtime._dataplane import DataPlane
from serving_runtime._errors import BadRequest, MethodNotAllowed, NotFound
from serving_runtime._features import FeatureSpec
from serving_runtime._logs import JsonLog
from serving_runtime._metrics import Metrics
from serving_runtime._settings import HttpSettings
from serving_runtime._tracing import Tracing

from ._endpoints import JsonFace
from ._types import (
    JSON,
    Context,
    Handler,
    Patterns,
    Receive,
    Request,
    Response,
    Routes,
    Scope,
    Send,
    answerable,
    error_response,
    request_id_from,
)
from ._v2 import V2Face

# probes and scrapes: logged only on error
_QUIET_PATHS = frozenset(
    {"/livez", "/readyz", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"}
)
_ENVOY_TIMEOUT = "x-envoy-expected-rq-timeout-ms"
# The runtime answers its own 504 this much before the proxy gives up (at most a tenth of the
# time given), so that its answer is not cut off by the proxy's timeout as it is being sent.
_PROXY_MARGIN_SECONDS = 0.05


class App:
    """The ASGI application of the runtime, over its data plane."""

    def __init__(
        self, dataplane: DataPlane, metrics: Metrics, log: JsonLog, settings: HttpSettings
    ):
        self.dataplane = dataplane
        self.metrics = metrics
        self.log = log
        self.settings = settings
        self.tracing: Tracing | None = None
        self._openapi: tuple[tuple[tuple[str, FeatureSpec | None], ...], bytes] | None = None
        context = Context(dataplane, metrics, log, settings)
        face = JsonFace(context)
        self.routes: Routes = {**face.routes(), "/openapi.json": {"GET": self.openapi}}
        self.patterns: Patterns = [*face.patterns(), *V2Face(context).patterns()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (or the server's lifespan events)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        request = Request(
            scope,
            receive,
            headers,
            request_id_from(headers.get("x-request-id")),
            scope["method"],
            scope["path"],
            time.monotonic(),
        )
        if self.tracing is None:
            status, body, answer_headers = await self._answer(request)
        else:
            with self.tracing.request(request.headers, request.method, request.path) as span:
                span.set_attribute("lls.request_id", request.request_id)
                status, body, answer_headers = await self._answer(request)
                span.set_attribute("http.response.status_code", status)
                if request.model_id is not None:
                    span.set_attribute("lls.model_id", request.model_id)
                    span.set_attribute("lls.version", request.version or "")
        answer_headers.append((b"x-request-id", request.request_id.encode()))
        answer_headers.append((b"content-length", str(len(body)).encode()))
        if not request.body_read and _has_body(headers):
            # What is left of the body is not read: the next request cannot be found after it.
            answer_headers.append((b"connection", b"close"))
        elif scope["http_version"] == "1.0" and headers.get("connection") == "keep-alive":
            answer_headers.append((b"connection", b"keep-alive"))
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": body})
        self._record(request, status, time.perf_counter() - started)

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except Exception as exc:  # every failure is answered, in the one error shape
            error = answerable(exc, request.request_id, self.log)
            request.error = error.code
            return error_response(error, request.request_id)

    async def _dispatch(self, request: Request) -> Response:
        scope = request.scope
        if scope["http_version"] == "1.1" and "host" not in request.headers:
            raise BadRequest("an HTTP/1.1 request needs a Host header")
        metrics_port = self.settings.metrics_port
        port = (scope.get("server") or (None, None))[1]  # None on a Unix socket
        if metrics_port is not None and port is not None:
            if port == metrics_port and request.path != "/metrics":
                raise NotFound(f"only /metrics is served on the metrics port, not {request.path}")
            if port != metrics_port and request.path == "/metrics":
                raise NotFound(f"metrics are scraped on port {metrics_port}, not on this one")
        methods = self.routes.get(request.path)
        if methods is None:
            for pattern, candidates in self.patterns:
                match = pattern.match(request.path)
                if match is not None:
                    request.params = match.groups()
                    methods = candidates
                    break
            else:
                raise NotFound(f"no such path: {request.path}")
        method = request.method
        handler: Handler | None = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = tuple(methods)
            if "GET" in methods:
                allowed = (*allowed, "HEAD")
            raise MethodNotAllowed(f"{request.path} takes {', '.join(allowed)}", allowed)
        request.deadline = self._deadline(request)
        return await handler(request)

    def _deadline(self, request: Request) -> float | None:
        seconds = self.settings.request_timeout or None
        given = request.headers.get(_ENVOY_TIMEOUT)
        if given is not None and given.isdigit() and int(given) > 0:
            # The proxy gives up on the request then: an answer after it reaches no one.
            proxy = int(given) / 1000
            proxy -= min(_PROXY_MARGIN_SECONDS, proxy / 10)
            seconds = proxy if seconds is None else min(seconds, proxy)
        return None if seconds is None else request.arrived + seconds

    def _record(self, request: Request, status: int, seconds: float) -> None:
        if request.inference:
            self.metrics.observe(request.model_id, request.version, status, seconds)
        elif request.path in _QUIET_PATHS and status < 400:
            return
        fields: dict[str, Any] = {
            "request_id": request.request_id,
            "method": request.method,
            "path": request.path,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        if request.model_id is not None:
            fields["model_id"] = request.model_id
            fields["version"] = request.version
        if request.error is not None:
            fields["error"] = request.error
        if self.settings.log_features and request.features is not None:
            fields["features"] = request.features
        level = "info" if status < 500 or status == 504 else "error"
        self.log.event(level if status != 499 else "warning", "request", **fields)

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json: this API, generated from the route table."""
        from ._openapi import document

        models = self.dataplane.feature_specs()
        key = tuple(models.items())  # specs compare by identity
        if self._openapi is None or self._openapi[0] != key:  # a new primary may type anew
            self._openapi = key, orjson.dumps(document(self, models))
        return 200, self._openapi[1], [JSON]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.dataplane.scheduler.start()  # this process's predict threads
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _has_body(headers: dict[str, str]) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
