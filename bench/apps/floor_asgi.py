"""The floor, ASGI flavour: a bare ASGI callable with orjson, predict inline on the event loop.

Served by `uvicorn --workers 2` with uvloop and httptools: what the runtime's server moves bytes
with, without the runtime (no routing, validation, threads, logs or metrics).
"""

from __future__ import annotations

import os
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import orjson

MODEL = joblib.load(os.environ["BENCH_MODEL"])
HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    payload = orjson.loads(body)
    output = MODEL.predict_proba(np.asarray([payload["features"]]))[:, 1]
    data = orjson.dumps({"output": output}, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = [*HEADERS, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})
