"""Flask + Gunicorn sync, written the straightforward way the seed platform's services were."""

from __future__ import annotations

import os

import joblib  # type: ignore[import-untyped]
import numpy as np
from flask import Flask, Response, jsonify, request

model = joblib.load(os.environ["BENCH_MODEL"])
app = Flask(__name__)


@app.post("/infer")
def infer() -> Response:
    payload = request.get_json()
    output = model.predict_proba(np.asarray([payload["features"]]))[:, 1]
    return jsonify({"model_id": payload["model_id"], "output": output.tolist()})
