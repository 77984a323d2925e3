"""What every module of the HTTP layer shares: the request, the answer, and the error bodies.

Every error the runtime answers, from the app or from the connection itself, has one JSON
shape, built here only:

    {"error": {"status": 404, "code": "not_found", "message": "...", "request_id": "..."}}

The Open Inference Protocol's routes answer theirs in that protocol's shape, {"error": "..."},
built here too.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from serving_runtime._dataplane import DataPlane
from serving_runtime._errors import MethodNotAllowed, RequestError
from serving_runtime._logs import JsonLog
from serving_runtime._metrics import Metrics
from serving_runtime._settings import HttpSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Response = tuple[int, bytes, Headers]

JSON: tuple[bytes, bytes] = (b"content-type", b"application/json")
# A scope extension of the runtime's own server: a callable telling whether the request's body
# has all arrived, so the app reads it without arming a timer for it.
WHOLE_BODY = "lls.whole_body"
# Another: a callable giving why the request's body broke in the parser (a malformed chunk),
# else None; the app answers that as a 400.
BODY_ERROR = "lls.body_error"
# Another: true when the request came through the admin socket from a process of the server's
# own user (or root); see `serving_runtime._admin_socket`.
ADMIN = "lls.admin"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def request_id_from(given: str | None) -> str:
    """The client's (or proxy's) `x-request-id` when it is a plain id, else a new one."""
    return given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()


ROUTING_KEY_HEADER = "x-routing-key"


def routing_key(request: Request) -> str | None:
    """The request's `x-routing-key` (None when absent or empty): one caller, one version."""
    return request.headers.get(ROUTING_KEY_HEADER) or None


@dataclass
class Request:
    """One request as the handlers see it; model and version are filled in for the log."""

    scope: Scope
    receive: Receive
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    request_id: str
    method: str
    path: str
    arrived: float  # time.monotonic()
    deadline: float | None = None  # time.monotonic(): past it, no one waits for the answer
    model_id: str | None = None
    version: str | None = None
    features: Any = None
    params: tuple[str, ...] = field(default=())
    inference: bool = False  # counted in the request metrics
    error: str | None = None  # the code of the error answered, for the log
    body_read: bool = False  # else a body sent is left unread: the connection closes


Handler = Callable[[Request], Awaitable[Response]]
Routes = dict[str, dict[str, Handler]]
Patterns = list[tuple[re.Pattern[str], dict[str, Handler]]]


class RouteTable(Protocol):
    """What the OpenAPI document is made from."""

    routes: Routes
    patterns: Patterns


@dataclass(frozen=True)
class Context:
    """What the handlers of every face work with."""

    dataplane: DataPlane
    metrics: Metrics
    log: JsonLog
    settings: HttpSettings


def error_body(status: int, code: str, message: str, request_id: str) -> bytes:
    """The one JSON body of every error the runtime answers."""
    error = {"status": status, "code": code, "message": message, "request_id": request_id}
    return orjson.dumps({"error": error})


def error_response(exc: RequestError, request_id: str) -> Response:
    """A RequestError as the runtime answers it."""
    headers = [JSON]
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", ", ".join(exc.allowed).encode()))
    return exc.status, error_body(exc.status, exc.code, exc.message, request_id), headers


def answerable(exc: Exception, request_id: str, log: JsonLog) -> RequestError:
    """The error to answer for `exc`, logged with its traceback when the team's code or the
    runtime's raised (a client's mistake is logged by the request's line only)."""
    if isinstance(exc, RequestError):
        if exc.__cause__ is not None:  # the team's code raised: keep its traceback
            log.event(
                "error",
                exc.code,
                request_id=request_id,
                message=exc.message,
                traceback="".join(traceback.format_exception(exc.__cause__)),
            )
        return exc
    log.event(
        "error",
        "unhandled",
        request_id=request_id,
        traceback="".join(traceback.format_exception(exc)),
    )
    return RequestError(f"internal error; see the log for request id {request_id}")


def protocol_error_response(exc: RequestError) -> Response:
    """A RequestError in the Open Inference Protocol's shape: {"error": "message"}."""
    return exc.status, orjson.dumps({"error": exc.message}), [JSON]
