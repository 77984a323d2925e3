"""The floor, RSGI flavour: granian's own interface, predicting on the worker's event loop."""

from __future__ import annotations

import os
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import orjson

MODEL = joblib.load(os.environ["BENCH_MODEL"])
HEADERS = [("content-type", "application/json")]


async def app(scope: Any, protocol: Any) -> None:
    payload = orjson.loads(await protocol())
    output = MODEL.predict_proba(np.asarray([payload["features"]]))[:, 1]
    body = orjson.dumps({"output": output}, option=orjson.OPT_SERIALIZE_NUMPY)
    protocol.response_bytes(200, HEADERS, body)
