"""The HTTP face: a plain WSGI application over the data plane. The only layer that knows HTTP.

Every answer is JSON (but /metrics); every error has one shape:
    {"error": {"status": 404, "code": "not_found", "message": "...", "request_id": "..."}}
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._dataplane import DataPlane
from ._errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PredictFailed,
    RequestError,
    RequestTimeout,
    UnsupportedMediaType,
)
from ._logs import JsonLog
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._metrics import Metrics
from ._registry import VersionSpec
from ._settings import HttpSettings
from ._tracing import Tracing

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_ADMIN_PATH = re.compile(
    r"^/admin/models/(?P<model_id>[^/]+)/(?P<operation>promote|rollback|load|unload)$"
)
_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_ENVOY_EXTERNAL_ADDRESS")
# probes and scrapes: logged only on error
_QUIET_PATHS = frozenset(
    {"/livez", "/readyz", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"}
)
_INFER_FIELDS = frozenset({"model_id", "version", "features"})
_REASONS = {
    200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content",
    500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip
JSON_HEADER = ("Content-Type", "application/json")


@dataclass
class Request:
    """One request as the handlers see it; model and version are filled in for the log."""

    environ: Environ
    request_id: str
    path: str
    model_id: str | None = None
    version: str | None = None
    features: Any = None
    params: tuple[str, ...] = field(default=())
    inference: bool = False  # counted in the request metrics


Response = tuple[int, bytes, list[tuple[str, str]]]
Handler = Callable[[Request], Response]


class App:
    """The WSGI application: routes, request ids, errors, one log line and metrics per request."""

    def __init__(
        self, dataplane: DataPlane, metrics: Metrics, log: JsonLog, settings: HttpSettings
    ):
        self.dataplane = dataplane
        self.metrics = metrics
        self.log = log
        self.settings = settings
        self.tracing: Tracing | None = None
        self._openapi: bytes | None = None
        self.routes: dict[str, dict[str, Handler]] = {
            "/infer": {"POST": self.infer},
            "/livez": {"GET": self.livez},
            "/readyz": {"GET": self.readyz},
            "/models": {"GET": self.list_models},
            "/metrics": {"GET": self.prometheus},
            "/openapi.json": {"GET": self.openapi},
        }
        # Paths with parameters, tried in order after the exact ones; groups become params.
        from ._v2 import v2_routes  # the Open Inference Protocol face, beside /infer

        self.patterns: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (_ADMIN_PATH, {"POST": self.admin}),
            *v2_routes(self),
        ]

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID")
        request_id = given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()
        request = Request(environ, request_id, environ.get("PATH_INFO") or "/")
        if self.tracing is None:
            status, body, headers = self._answer(request)
        else:
            with self.tracing.request(environ, request_id) as span:
                status, body, headers = self._answer(request)
                span.set_attribute("http.response.status_code", status)
                if request.model_id is not None:
                    span.set_attribute("lls.model_id", request.model_id)
                    span.set_attribute("lls.version", request.version or "")
        headers.append(("X-Request-Id", request_id))
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS.get(status, '')}", headers)
        self._record(request, status, time.perf_counter() - started)
        return [body]

    def _answer(self, request: Request) -> Response:
        request_id = request.request_id
        try:
            return self._dispatch(request)
        except RequestError as exc:
            if exc.__cause__ is not None:  # the team's code raised: keep its traceback
                self.log.event(
                    "error",
                    exc.code,
                    request_id=request_id,
                    message=exc.message,
                    traceback="".join(traceback.format_exception(exc.__cause__)),
                )
            return self._error(exc, request_id)
        except Exception:
            self.log.event(
                "error", "unhandled", request_id=request_id, traceback=traceback.format_exc()
            )
            return self._error(
                RequestError("internal error; see the log for this request id"), request_id
            )

    def _dispatch(self, request: Request) -> Response:
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
        handler = methods.get(request.environ["REQUEST_METHOD"])
        if handler is None:
            allowed = tuple(methods)
            raise MethodNotAllowed(f"{request.path} takes {', '.join(allowed)}", allowed)
        return handler(request)

    def _record(self, request: Request, status: int, seconds: float) -> None:
        if request.inference:
            self.metrics.observe(request.model_id, request.version, status, seconds)
        elif request.path in _QUIET_PATHS and status < 400:
            return
        fields: dict[str, Any] = {
            "request_id": request.request_id,
            "method": request.environ.get("REQUEST_METHOD"),
            "path": request.path,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        if request.model_id is not None:
            fields["model_id"] = request.model_id
            fields["version"] = request.version
        if self.settings.log_features and request.features is not None:
            fields["features"] = request.features
        self.log.event("info" if status < 500 else "error", "request", **fields)

    # Endpoints

    def infer(self, request: Request) -> Response:
        """POST /infer: {"model_id", "version"?, "features"} -> the model's output."""
        request.inference = True
        payload = self._json_body(request)
        unknown = payload.keys() - _INFER_FIELDS
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        model_id = payload.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise BadRequest("model_id is required and must be a string")
        version = payload.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            version = str(version)
        if version is not None and not isinstance(version, str):
            raise BadRequest("version must be a string")
        if "features" not in payload:
            raise BadRequest("features is required")
        request.features = payload["features"]
        if model_id in self.dataplane.registry.snapshot:
            request.model_id = model_id
        prediction = self.dataplane.infer(model_id, version, request.features, request.request_id)
        request.version = prediction.version
        body = {
            "model_id": prediction.model_id,
            "version": prediction.version,
            "request_id": request.request_id,
            "output": prediction.output,
        }
        try:
            data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise PredictFailed(
                f"model {model_id!r} version {prediction.version!r} returned an output that is "
                f"not JSON: {exc}"
            ) from exc
        return 200, data, [JSON_HEADER]

    def livez(self, request: Request) -> Response:
        """GET /livez: the process answers."""
        return 200, b'{"status":"alive"}', [JSON_HEADER]

    def readyz(self, request: Request) -> Response:
        """GET /readyz: 200 when every model has a serving version that passed its self-tests."""
        ready, detail = self.dataplane.ready()
        body = {"status": "ready" if ready else "not_ready", "models": detail}
        return (200 if ready else 503), orjson.dumps(body), [JSON_HEADER]

    def list_models(self, request: Request) -> Response:
        """GET /models: every model, its versions, their state and self-test results."""
        listing = {"models": self.dataplane.models(), "plan": self.dataplane.plan_status()}
        return 200, orjson.dumps(listing), [JSON_HEADER]

    def prometheus(self, request: Request) -> Response:
        """GET /metrics: Prometheus text format."""
        self.dataplane.sync()
        return 200, self.metrics.render(), [("Content-Type", METRICS_CONTENT_TYPE)]

    def openapi(self, request: Request) -> Response:
        """GET /openapi.json: this API, generated from the route table."""
        if self._openapi is None:
            from ._openapi import document

            self._openapi = orjson.dumps(document(self))
        return 200, self._openapi, [JSON_HEADER]

    def admin(self, request: Request) -> Response:
        """POST /admin/models/{id}/{promote,rollback,load,unload}: localhost or token only."""
        self._check_admin(request.environ)
        model_id, operation = request.params
        request.model_id = model_id
        payload = self._json_body(request) if _has_body(request.environ) else {}
        arguments: dict[str, Any] = {}
        if operation != "rollback":
            version = payload.get("version")
            if not isinstance(version, str) or not version:
                raise BadRequest(f"{operation} needs a 'version' (string)")
            arguments["version"] = request.version = version
        if operation == "load" and payload.get("artifact") is not None:
            entry = self.dataplane.registry.snapshot.get(model_id)
            if entry is None:
                raise NotFound(f"unknown model {model_id!r}")
            default_class = entry.versions[entry.plan.primary].spec.class_path
            class_path = payload.get("class") or default_class
            shadow = payload.get("shadow", False)
            if not isinstance(shadow, bool):
                raise BadRequest("shadow must be true or false")
            arguments["spec"] = VersionSpec(str(class_path), str(payload["artifact"]), shadow)
        result = self.dataplane.change(operation, model_id, **arguments)
        return 200, orjson.dumps(result), [JSON_HEADER]

    # Helpers

    def _check_admin(self, environ: Environ) -> None:
        token = self.settings.admin_token
        if token:
            given = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Forbidden("admin calls need 'Authorization: Bearer <token>'")
            return
        local = environ.get("REMOTE_ADDR") in {"127.0.0.1", "::1"}
        if not local or any(h in environ for h in _PROXY_HEADERS):
            raise Forbidden(
                "admin calls are accepted from this host only (set an admin token to allow more)"
            )

    def _json_body(self, request: Request) -> dict[str, Any]:
        environ = request.environ
        media_type = (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType(
                f"send the body as application/json, not {media_type or 'no content type'}"
            )
        body = self.read_body(environ)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise BadRequest("body must be a JSON object")
        return payload

    def read_body(self, environ: Environ) -> bytes:
        """The request body, within the size limit (413) and the time limit (408)."""
        limit = self.settings.max_body_bytes
        length = environ.get("CONTENT_LENGTH")
        size = limit + 1  # without a length (chunked), read one byte past the limit
        if length:
            try:
                size = int(length)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
            if size > limit:
                raise PayloadTooLarge(f"body of {size} bytes is over the limit of {limit} bytes")
        body = self._read_timed(environ, size)
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        return body

    def _read_timed(self, environ: Environ, size: int) -> bytes:
        # A client that trickles its body would hold a worker thread for as long as it likes:
        # bound the wait, then stop reading from it (the answer still reaches it).
        sock = environ.get("gunicorn.socket")
        if sock is None:
            data: bytes = environ["wsgi.input"].read(size)
            return data
        sock.settimeout(self.settings.body_timeout)
        try:
            data = environ["wsgi.input"].read(size)
        except TimeoutError:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            raise RequestTimeout(
                f"the body did not arrive within {self.settings.body_timeout:g} s"
            ) from None
        sock.settimeout(None)
        return data

    @staticmethod
    def _error(exc: RequestError, request_id: str) -> Response:
        body = {
            "error": {
                "status": exc.status,
                "code": exc.code,
                "message": exc.message,
                "request_id": request_id,
            }
        }
        headers = [JSON_HEADER]
        if isinstance(exc, MethodNotAllowed):
            headers.append(("Allow", ", ".join(exc.allowed)))
        return exc.status, orjson.dumps(body), headers


def _has_body(environ: Environ) -> bool:
    return (
        environ.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in environ
    )
