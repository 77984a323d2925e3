"""The runtime's JSON face: /infer, the probes, the listing, /metrics and the admin changes."""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

import orjson

from serving_runtime._errors import BadRequest, Forbidden, PredictFailed
from serving_runtime._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving_runtime._model import dump_output

from ._body import read_json_object
from ._types import (
    ADMIN,
    JSON,
    Context,
    Handler,
    Patterns,
    Request,
    Response,
    Routes,
    routing_key,
)
from ._watch import ClientWatch

ADMIN_PATH = re.compile(
    r"^/admin/models/(?P<model_id>[^/]+)/(?P<operation>promote|rollback|load|unload|traffic)$"
)
_INFER_FIELDS = frozenset({"model_id", "version", "features", "routing_key"})
_METRICS = (b"content-type", METRICS_CONTENT_TYPE.encode())


class JsonFace:
    """The handlers of the runtime's own routes, over the data plane."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.dataplane = context.dataplane
        self.settings = context.settings

    def routes(self) -> Routes:
        """Exact paths and their handlers by method."""
        return {
            "/infer": {"POST": self.infer},
            "/livez": {"GET": self.livez},
            "/readyz": {"GET": self.readyz},
            "/models": {"GET": self.list_models},
            "/metrics": {"GET": self.prometheus},
        }

    def patterns(self) -> Patterns:
        """Paths with parameters; their groups become the request's params."""
        admin: dict[str, Handler] = {"POST": self.admin}
        return [(ADMIN_PATH, admin)]

    async def infer(self, request: Request) -> Response:
        """POST /infer: {"model_id", "version"?, "features", "routing_key"?} -> the output.

        `routing_key` (or the header x-routing-key) keeps a caller on one version of an
        experiment."""
        request.inference = True
        payload = await read_json_object(request, self.settings)
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
        key = payload.get("routing_key")
        if key is not None and not isinstance(key, str):
            raise BadRequest("routing_key must be a string")
        request.features = payload["features"]
        if self.dataplane.knows(model_id):
            request.model_id = model_id
        prediction = await self.dataplane.infer(
            model_id,
            version,
            request.features,
            request.request_id,
            deadline=request.deadline,
            watch=ClientWatch(request.receive),
            routing_key=key if key is not None else routing_key(request),
        )
        request.version = prediction.version
        body = {
            "model_id": prediction.model_id,
            "version": prediction.version,
            "request_id": request.request_id,
            "output": prediction.output,
        }
        try:
            data = dump_output(body)
        except TypeError as exc:
            raise PredictFailed(
                f"model {model_id!r} version {prediction.version!r} returned an output that is "
                f"not JSON: {exc}"
            ) from exc
        return 200, data, [JSON]

    async def livez(self, request: Request) -> Response:
        """GET /livez: the process answers."""
        return 200, b'{"status":"alive"}', [JSON]

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: 200 when every model has a serving version that passed its self-tests."""
        ready, detail = self.dataplane.ready()
        body = {"status": "ready" if ready else "not_ready", "models": detail}
        return (200 if ready else 503), orjson.dumps(body), [JSON]

    async def list_models(self, request: Request) -> Response:
        """GET /models: every model, its versions, their state and self-test results."""
        listing = {"models": self.dataplane.models(), "plan": self.dataplane.plan_status()}
        return 200, orjson.dumps(listing), [JSON]

    async def prometheus(self, request: Request) -> Response:
        """GET /metrics: Prometheus text format."""
        self.dataplane.sync()
        return 200, self.context.metrics.render(), [_METRICS]

    async def admin(self, request: Request) -> Response:
        """POST /admin/models/{id}/{promote,rollback,load,unload,traffic}: admin socket or
        token only."""
        self._check_admin(request)
        model_id, operation = request.params
        request.model_id = model_id
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
        payload = await read_json_object(request, self.settings) if has_body else {}
        arguments: dict[str, Any] = {}
        if operation == "traffic":
            arguments["weights"] = _weights(payload.get("weights"))
        elif operation != "rollback":
            version = payload.get("version")
            if not isinstance(version, str) or not version:
                raise BadRequest(f"{operation} needs a 'version' (string)")
            arguments["version"] = request.version = version
        if operation == "load" and payload.get("artifact") is not None:
            shadow = payload.get("shadow", False)
            if not isinstance(shadow, bool):
                raise BadRequest("shadow must be true or false")
            chosen = payload.get("class")
            arguments["spec"] = self.dataplane.new_version(
                model_id, str(payload["artifact"]), str(chosen) if chosen else None, shadow
            )
        # A load runs the version's self-tests: off the event loop, which goes on serving.
        result = await asyncio.to_thread(self.dataplane.change, operation, model_id, **arguments)
        return 200, orjson.dumps(result), [JSON]

    def _check_admin(self, request: Request) -> None:
        # Never the peer's address: a proxy on this host relays strangers from 127.0.0.1.
        if request.scope.get("extensions", {}).get(ADMIN) is True:
            return
        token = self.settings.admin_token
        if not token:
            raise Forbidden(
                "admin calls are taken on the admin socket only (serving-runtime admin, on the "
                "server's host or inside its pod); over TCP they need the server's --admin-token"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise Forbidden("admin calls over TCP need 'Authorization: Bearer <token>'")


def _weights(given: Any) -> dict[str, int]:
    """An experiment's weights from an admin body: {"v1": 90, "v2": 10}; null or {} ends it."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise BadRequest('weights must be an object of version: weight, e.g. {"v1": 90}')
    for version, weight in given.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise BadRequest(f"weight of {version!r} must be a whole number, 0 or more")
    return dict(given)
