"""The floor, WSGI flavour: a bare WSGI callable with orjson, nothing between socket and model."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import orjson

MODEL = joblib.load(os.environ["BENCH_MODEL"])
HEADERS = [("content-type", "application/json")]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload = orjson.loads(environ["wsgi.input"].read(length))
    output = MODEL.predict_proba(np.asarray([payload["features"]]))[:, 1]
    body = orjson.dumps({"output": output}, option=orjson.OPT_SERIALIZE_NUMPY)
    start_response("200 OK", [*HEADERS, ("content-length", str(len(body)))])
    return [body]
