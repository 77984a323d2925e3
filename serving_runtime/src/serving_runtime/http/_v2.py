"""The Open Inference Protocol (V2 REST) face, beside /infer: Triton and KServe clients as they are.

    GET  /v2                                          server metadata
    GET  /v2/health/live, /v2/health/ready            liveness, readiness
    GET  /v2/models/{name}[/versions/{v}]             model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready       model readiness
    POST /v2/models/{name}[/versions/{v}]/infer       inference

HTTP only: every operation is a data plane call, so versions resolve, metrics count and the
request log line is written exactly as for /infer (and bodies are read by the same reader).
Errors take the protocol's shape, {"error": "message"}, with the runtime's statuses. The binary
tensor data extension is supported both ways, since tritonclient uses it by default.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from serving_runtime._errors import (
    BadRequest,
    NotFound,
    NotReady,
    PredictFailed,
    UnsupportedMediaType,
)
from serving_runtime._model import ServedModel
from serving_runtime._tensors import Tensor, decode_inputs, output_tensor
from serving_runtime._version import __version__

from ._body import json_object, media_type, read_body
from ._types import (
    JSON,
    Context,
    Patterns,
    Request,
    Response,
    answerable,
    protocol_error_response,
    routing_key,
)
from ._watch import ClientWatch

OUTPUT = "output"  # the one output tensor: whatever predict() returns
SERVER_NAME = "lls-serving-runtime"
_MODEL_PATH = r"^/v2/models/([^/]+)(?:/versions/([^/]+))?"
_BINARY = (b"content-type", b"application/octet-stream")
# tritonclient sends no Content-Type; aiohttp (its asyncio client) sends octet-stream for JSON too.
_MEDIA_TYPES = frozenset({"", "application/json", "application/octet-stream"})
_REQUEST_FIELDS = frozenset({"id", "parameters", "inputs", "outputs"})

V2Handler = Callable[["V2Face", Request], Awaitable[Response]]


def _v2_errors(handler: V2Handler) -> V2Handler:
    """Answer a RequestError in the protocol's shape; log the team's traceback as the app does."""

    @functools.wraps(handler)
    async def answer(face: V2Face, request: Request) -> Response:
        try:
            return await handler(face, request)
        except Exception as exc:
            error = answerable(exc, request.request_id, face.context.log)
            request.error = error.code
            return protocol_error_response(error)

    return answer


class V2Face:
    """The V2 handlers, over the data plane."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.dataplane = context.dataplane

    def patterns(self) -> Patterns:
        """The V2 paths, inference first (the hot path); none can be written as a template."""
        return [
            (re.compile(_MODEL_PATH + "/infer$"), {"POST": self.infer}),
            (re.compile(_MODEL_PATH + "/ready$"), {"GET": self.model_ready}),
            (re.compile(_MODEL_PATH + "$"), {"GET": self.model_metadata}),
            (re.compile(r"^/v2/health/live$"), {"GET": self.live}),
            (re.compile(r"^/v2/health/ready$"), {"GET": self.ready}),
            (re.compile(r"^/v2/?$"), {"GET": self.server_metadata}),
            (re.compile(r"^/v2/"), {"GET": self.no_such_path, "POST": self.no_such_path}),
        ]

    @_v2_errors
    async def infer(self, request: Request) -> Response:
        """POST .../infer: input tensors in, the prediction out as the tensor `output`."""
        request.inference = True
        name, version = _name_version(request)
        if self.dataplane.knows(name):
            request.model_id = name
        header, binary = await _read_request(request, self.context)
        payload = _json_object(header)
        tensors = decode_inputs(payload.get("inputs"), binary)
        binary_output = _binary_output(payload)

        def features_for(model: ServedModel) -> Any:
            request.features = _features(model, tensors)
            return request.features

        prediction = await self.dataplane.infer(
            name,
            version,
            None,
            request.request_id,
            adapt=features_for,
            deadline=request.deadline,
            watch=ClientWatch(request.receive),
            routing_key=routing_key(request),
        )
        request.version = prediction.version
        try:
            tensor = output_tensor(OUTPUT, prediction.output)
        except ValueError as exc:
            raise PredictFailed(
                f"model {name!r} version {prediction.version!r} returned an output that is "
                f"not a tensor: {exc}"
            ) from None
        return _infer_response(
            payload, prediction.model_id, prediction.version, tensor, binary_output
        )

    @_v2_errors
    async def model_ready(self, request: Request) -> Response:
        """GET .../ready: 200 when the model (version) can serve, 503 when not yet."""
        name, version = _name_version(request)
        request.model_id, request.version = name, version
        try:
            self.dataplane.resolve(name, version)
        except NotReady:
            return 503, orjson.dumps({"name": name, "ready": False}), [JSON]
        return 200, orjson.dumps({"name": name, "ready": True}), [JSON]

    @_v2_errors
    async def model_metadata(self, request: Request) -> Response:
        """GET /v2/models/{name}[/versions/{v}]: versions, inputs and outputs."""
        name, version = _name_version(request)
        request.model_id, request.version = name, version
        described = self.dataplane.describe(name, version)
        model = described.model
        body = {
            "name": name,
            "versions": list(described.versions),
            "platform": described.class_path,
            "inputs": _input_metadata(model),
            "outputs": _output_metadata(model),
        }
        return 200, orjson.dumps(body), [JSON]

    @_v2_errors
    async def live(self, request: Request) -> Response:
        """GET /v2/health/live: the process answers."""
        return 200, b'{"live":true}', [JSON]

    @_v2_errors
    async def ready(self, request: Request) -> Response:
        """GET /v2/health/ready: as /readyz, every model has a serving version."""
        ready, _ = self.dataplane.ready()
        return (200 if ready else 503), orjson.dumps({"ready": ready}), [JSON]

    @_v2_errors
    async def server_metadata(self, request: Request) -> Response:
        """GET /v2: name, version and extensions."""
        body = {"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}
        return 200, orjson.dumps(body), [JSON]

    @_v2_errors
    async def no_such_path(self, request: Request) -> Response:
        """Any other /v2 path: a 404 in the protocol's shape."""
        raise NotFound(f"no such path: {request.path}")


def _name_version(request: Request) -> tuple[str, str | None]:
    name, version = request.params[0], request.params[1]
    return name, version or None


async def _read_request(request: Request, context: Context) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary data after it, within the body limit and time."""
    kind = media_type(request)
    if kind not in _MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"send V2 requests as application/json (binary data: application/octet-stream "
            f"with Inference-Header-Content-Length), not {kind}"
        )
    whole = memoryview(await read_body(request, context.settings))
    given = request.headers.get("inference-header-content-length")
    if given is None:
        return whole, whole[len(whole) :]
    try:
        split = int(given)
    except ValueError:
        raise BadRequest("Inference-Header-Content-Length is not a number") from None
    if not 0 < split <= len(whole):
        raise BadRequest(
            f"Inference-Header-Content-Length {split} is not within the body of {len(whole)} bytes"
        )
    return whole[:split], whole[split:]


def _json_object(header: memoryview) -> dict[str, Any]:
    payload = json_object(header, "request")
    unknown = payload.keys() - _REQUEST_FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    return payload


def _binary_output(payload: dict[str, Any]) -> bool:
    """Whether `output` goes back as binary data; refuses outputs the model has not."""
    parameters = payload.get("parameters") or {}
    binary = parameters.get("binary_data_output") is True if isinstance(parameters, dict) else False
    outputs = payload.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest("'outputs' must be a list of objects")
    for requested in outputs:
        if requested.get("name") != OUTPUT:
            raise BadRequest(f"no output {requested.get('name')!r}: the one output is {OUTPUT!r}")
        options = requested.get("parameters") or {}
        if "classification" in options or "shared_memory_region" in options:
            raise BadRequest("the classification and shared memory extensions are not supported")
        binary = options.get("binary_data", binary) is True
    return binary


def _features(model: ServedModel, tensors: list[Tensor]) -> Any:
    """What /infer's `features` would be for these tensors."""
    spec = model.spec
    if spec is None:
        if len(tensors) != 1:
            raise BadRequest(f"model {model.model_id!r} takes one input tensor, got {len(tensors)}")
        return tensors[0].nested()
    if len(tensors) == 1 and tensors[0].name not in spec.index:
        matrix = tensors[0]
        if len(matrix.shape) != 2 or matrix.shape[1] != len(spec.names):
            raise BadRequest(
                f"input {matrix.name!r} has shape {list(matrix.shape)}; {_takes(model)}"
            )
        return matrix.nested()
    by_name = {t.name: t for t in tensors}
    if by_name.keys() != spec.index.keys():
        unknown = sorted(by_name.keys() - spec.index.keys())
        missing = [n for n in spec.names if n not in by_name]
        problem = f"unknown input(s) {unknown}" if unknown else f"missing input(s) {missing}"
        raise BadRequest(f"{problem}; {_takes(model)}")
    rows = by_name[spec.names[0]].shape[0]
    for t in tensors:
        if t.shape not in ((rows,), (rows, 1)):
            raise BadRequest(
                f"input {t.name!r} has shape {list(t.shape)}; every feature input needs "
                f"shape [{rows}] or [{rows}, 1], as {spec.names[0]!r} has"
            )
    return spec.columns({name: tensor.flat for name, tensor in by_name.items()})


def _takes(model: ServedModel) -> str:
    names = model.spec.names if model.spec is not None else ()
    return (
        f"model {model.model_id!r} takes one input of shape [N, {len(names)}] or one input of "
        f"shape [N] per feature ({', '.join(names)})"
    )


def _infer_response(
    payload: dict[str, Any], model_id: str, version: str, tensor: Tensor, binary: bool
) -> Response:
    output: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype}
    output["shape"] = tensor.shape
    body: dict[str, Any] = {"model_name": model_id, "model_version": version}
    if "id" in payload:
        body["id"] = payload["id"]
    body["outputs"] = [output]
    if not binary:
        output["data"] = tensor.flat
        return 200, orjson.dumps(body), [JSON]
    try:
        data = tensor.packed()
    except (OverflowError, UnicodeEncodeError, struct.error) as exc:
        raise PredictFailed(f"model {model_id!r} output cannot be sent as binary: {exc}") from None
    output["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps(body)
    length = str(len(header)).encode()
    return 200, header + data, [_BINARY, (b"inference-header-content-length", length)]


def _input_metadata(model: ServedModel) -> list[dict[str, Any]]:
    # One input per feature, of its type's datatype; a feature that is more than a number
    # always present says so in parameters (its type, nullable: NaN is missing, its values).
    inputs: list[dict[str, Any]] = []
    for feature in model.spec.features if model.spec is not None else ():
        tensor: dict[str, Any] = {"name": feature.name, "datatype": feature.datatype, "shape": [-1]}
        if feature.type != "number" or feature.nullable:
            tensor["parameters"] = {k: v for k, v in feature.describe().items() if k != "name"}
        inputs.append(tensor)
    return inputs


def _output_metadata(model: ServedModel) -> list[dict[str, Any]]:
    # What the canaries answered: the datatype, and the shape with a variable first dimension.
    for row in model.selftest.rows:
        try:
            tensor = output_tensor(OUTPUT, row.got)
        except ValueError:
            continue
        shape = [-1, *tensor.shape[1:]] if tensor.shape else []
        return [{"name": OUTPUT, "datatype": tensor.datatype, "shape": shape}]
    return []
