"""FastAPI + uvicorn, deployed as FastAPI's docs show: `uvicorn --workers 2`, pydantic models.

`infer` is a plain `def`: predict is blocking code, and FastAPI's docs say to declare such path
operations without `async`, so they run in its thread pool and never stall the event loop.
`app_async` is the same route as `async def` (predict on the event loop), a variant to compare.
"""

from __future__ import annotations

import os

import joblib  # type: ignore[import-untyped]
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ["BENCH_MODEL"])


class InferRequest(BaseModel):
    model_id: str
    features: list[float]


class InferResponse(BaseModel):
    model_id: str
    output: list[float]


def _predict(request: InferRequest) -> InferResponse:
    output = model.predict_proba(np.asarray([request.features]))[:, 1]
    return InferResponse(model_id=request.model_id, output=output.tolist())


app = FastAPI()
app_async = FastAPI()


@app.post("/infer")
def infer(request: InferRequest) -> InferResponse:
    return _predict(request)


@app_async.post("/infer")
async def infer_async(request: InferRequest) -> InferResponse:
    return _predict(request)
