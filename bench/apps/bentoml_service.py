"""BentoML: a @bentoml.service with 2 workers and one @bentoml.api, as BentoML's docs write it.

`infer` is a sync method: BentoML runs sync APIs in a thread pool (`threads`, 1 by default),
which is what its docs advise for blocking, CPU-bound code. The worker count comes from
BENCH_WORKERS (the benchmark's --workers). Access logs are off, as for every peer here.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib  # type: ignore[import-untyped]
import numpy as np

WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))


@bentoml.service(workers=WORKERS, logging={"access": {"enabled": False}})
class Bench:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api
    def infer(self, model_id: str, features: list[float]) -> dict[str, Any]:
        output = self.model.predict_proba(np.asarray([features]))[:, 1]
        return {"model_id": model_id, "output": output.tolist()}
