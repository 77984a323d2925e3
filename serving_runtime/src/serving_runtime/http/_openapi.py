"""The OpenAPI document of the runtime's JSON face, generated from the app's own route table.

Every exact route and every parametrised route with named groups is listed with the summary
its handler's docstring gives; the request and answer schemas below are keyed by handler.
/infer's request names each model that declares its features, with the type of each (its
primary's declaration; see `_features.py`). Served at GET /openapi.json; the docs and the fuzz
tests read it from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from serving_runtime._features import FeatureSpec
from serving_runtime._version import __version__

from ._types import RouteTable

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message", "request_id"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }
    },
}
_NUMBER = {"type": "number"}
_ROW = {
    "oneOf": [
        {"type": "array", "items": _NUMBER},
        {"type": "object", "additionalProperties": _NUMBER},
    ]
}
_ROUTING_KEY = {
    "type": "string",
    "description": "in an experiment (traffic split), the same key always reaches the same "
    "version (as the header x-routing-key does); without either, a version at random at the "
    "weights",
}
_INFER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model_id", "features"],
    "additionalProperties": False,
    "properties": {
        "model_id": {"type": "string", "minLength": 1, "description": "the model to ask"},
        "version": {"type": "string", "description": "a version; the primary when absent"},
        "routing_key": _ROUTING_KEY,
        "features": {
            "description": "one row (an object keyed by feature name, or a list of numbers in "
            "the declared order) or a list of rows; a model that declares no feature names "
            "receives any JSON value as sent",
            "oneOf": [_ROW, {"type": "array", "items": _ROW, "minItems": 1}, {}],
        },
    },
}
_INFER_ANSWER = {
    "type": "object",
    "required": ["model_id", "version", "request_id", "output"],
    "properties": {
        "model_id": {"type": "string"},
        "version": {"type": "string"},
        "request_id": {"type": "string"},
        "output": {"description": "what the model's predict() returned, as JSON"},
    },
}
_ADMIN_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string"},
        "artifact": {"type": "string", "description": "load: artifact of a new version"},
        "class": {"type": "string", "description": "load: module:Class of a new version"},
        "shadow": {"type": "boolean", "description": "load: run it as a shadow"},
        "weights": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "integer", "minimum": 0},
            "description": "traffic: each version's whole-number weight; {} or null ends it",
        },
    },
}
_OBJECT = {"type": "object"}
_ROUTING_KEY_HEADER = {
    "name": "x-routing-key",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": _ROUTING_KEY["description"],
}
_V2_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32"]
_V2_DATATYPES += ["INT64", "FP16", "FP32", "FP64", "BYTES"]
_V2_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "description": "echoed in the answer"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"enum": _V2_DATATYPES},
                    "data": {"type": "array", "description": "the elements, flat or nested"},
                },
            },
        },
    },
}
_V2_ANSWER = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _OBJECT},
    },
}
_V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

# handler name -> (request body schema or None, {status: (description, schema)})
_SCHEMAS: dict[str, tuple[dict[str, Any] | None, dict[int, tuple[str, dict[str, Any]]]]] = {
    "infer": (
        _INFER_REQUEST,
        {
            200: ("the model's answer", _INFER_ANSWER),
            400: ("malformed JSON, fields or features", _ERROR),
            404: ("unknown model or version", _ERROR),
            413: ("body over the configured limit", _ERROR),
            415: ("body not sent as application/json", _ERROR),
            500: ("the model's predict() raised", _ERROR),
            503: ("the model has no serving version", _ERROR),
        },
    ),
    "livez": (None, {200: ("the process answers", _OBJECT)}),
    "readyz": (None, {200: ("ready", _OBJECT), 503: ("not ready, with reasons", _OBJECT)}),
    "list_models": (None, {200: ("models, versions, states, self-tests", _OBJECT)}),
    "prometheus": (None, {200: ("Prometheus text format", {"type": "string"})}),
    "openapi": (None, {200: ("this document", _OBJECT)}),
    "admin": (
        _ADMIN_REQUEST,
        {
            200: ("done; the new primary", _OBJECT),
            400: ("missing or malformed fields", _ERROR),
            403: ("over TCP without the admin token (the admin socket needs none)", _ERROR),
            404: ("unknown model or version", _ERROR),
            409: ("the change cannot apply to the current state", _ERROR),
            422: ("the version failed to load or its self-tests", _ERROR),
        },
    ),
}
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def document(
    app: RouteTable, models: Mapping[str, FeatureSpec | None] | None = None
) -> dict[str, Any]:
    """OpenAPI 3.1 for every route of `app` whose path can be written as a template.

    With `models` (model id -> its features), /infer's request schema has one branch per
    model that declares features, its rows typed feature by feature.
    """
    requests = {"infer": _infer_request(models or {})}
    paths: dict[str, Any] = {}
    for path, methods in app.routes.items():
        paths[path] = _operations(methods, [], requests)
    for pattern, methods in app.patterns:
        source = pattern.pattern
        if not source.endswith("$") or "(?P<" not in source:
            continue  # not a template (e.g. the V2 face, which follows its own spec)
        template = _GROUP.sub(lambda m: "{" + m.group(1) + "}", source.strip("^$"))
        paths[template] = _operations(methods, list(pattern.groupindex), requests)
    for path, operation in _v2_infer().items():
        paths[path] = {"post": operation}
    for method in paths.get("/infer", {}).values():
        method["parameters"] = [_ROUTING_KEY_HEADER]
    return {
        "openapi": "3.1.0",
        "info": {"title": "lls serving runtime", "version": __version__},
        "paths": paths,
    }


def _v2_infer() -> dict[str, dict[str, Any]]:
    """The V2 face's inference paths (its other paths follow the protocol's own document):
    listed here for the routing key's header, in the JSON form of the protocol only."""
    answers = {
        200: ("the prediction, as the tensor `output`", _V2_ANSWER),
        400: ("malformed request, or tensors that do not fit the model", _V2_ERROR),
        404: ("unknown model or version", _V2_ERROR),
        413: ("body over the configured limit", _V2_ERROR),
        415: ("body of another content type", _V2_ERROR),
        500: ("the model's predict() raised", _V2_ERROR),
        503: ("the model has no serving version", _V2_ERROR),
    }
    found = {}
    for path, names in {
        "/v2/models/{model_name}/infer": ["model_name"],
        "/v2/models/{model_name}/versions/{model_version}/infer": ["model_name", "model_version"],
    }.items():
        found[path] = {
            "operationId": "v2_infer" if len(names) == 1 else "v2_infer_version",
            "summary": "Open Inference Protocol (V2) inference: input tensors in, the "
            "prediction out as the tensor `output`",
            "parameters": [
                *(
                    {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                    for n in names
                ),
                _ROUTING_KEY_HEADER,
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _V2_REQUEST}},
            },
            "responses": {
                str(status): {
                    "description": text,
                    "content": {"application/json": {"schema": schema}},
                }
                for status, (text, schema) in answers.items()
            },
        }
    return found


def _infer_request(models: Mapping[str, FeatureSpec | None]) -> dict[str, Any]:
    typed = {model_id: spec for model_id, spec in models.items() if spec is not None}
    if not typed:
        return _INFER_REQUEST
    others = {
        **_INFER_REQUEST,
        "properties": {
            **_INFER_REQUEST["properties"],
            "model_id": {
                "type": "string",
                "minLength": 1,
                "not": {"enum": list(typed)},
                "description": "a model that declares no features",
            },
        },
    }
    branches = [_typed_request(model_id, spec) for model_id, spec in typed.items()]
    return {"oneOf": [*branches, others]}


def _typed_request(model_id: str, spec: FeatureSpec) -> dict[str, Any]:
    values = [feature.json_schema() for feature in spec.features]
    by_name = {
        "type": "object",
        "properties": dict(zip(spec.names, values, strict=True)),
        "required": list(spec.names),
        "additionalProperties": False,
    }
    in_order = {"type": "array", "prefixItems": values, "items": False}
    in_order |= {"minItems": len(values), "maxItems": len(values)}
    row = {"oneOf": [by_name, in_order]}
    names = ", ".join(
        f"{f.name} ({f.type}{', nullable' if f.nullable else ''})" for f in spec.features
    )
    return {
        "type": "object",
        "required": ["model_id", "features"],
        "additionalProperties": False,
        "properties": {
            "model_id": {"const": model_id},
            "version": {"type": "string", "description": "a version; the primary when absent"},
            "routing_key": _ROUTING_KEY,
            "features": {
                "description": f"one row or a list of rows of {model_id}'s features: {names}",
                "oneOf": [row, {"type": "array", "items": row, "minItems": 1}],
            },
        },
    }


def _operations(
    methods: dict[str, Any], parameters: list[str], requests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    operations = {}
    for method, handler in methods.items():
        name = handler.__name__
        request, answers = _SCHEMAS.get(name, (None, {200: ("answer", _OBJECT)}))
        request = requests.get(name, request)
        operation: dict[str, Any] = {
            "operationId": name,
            "summary": (handler.__doc__ or name).strip().splitlines()[0],
            "responses": {
                str(status): {
                    "description": text,
                    "content": {_media(name, status): {"schema": schema}},
                }
                for status, (text, schema) in answers.items()
            },
        }
        if parameters:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in parameters
            ]
        if request is not None:
            operation["requestBody"] = {
                "required": name == "infer",
                "content": {"application/json": {"schema": request}},
            }
        operations[method.lower()] = operation
    return operations


def _media(handler: str, status: int) -> str:
    return "text/plain" if handler == "prometheus" and status == 200 else "application/json"
