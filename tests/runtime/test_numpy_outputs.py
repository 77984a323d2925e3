"""A model that returns a numpy view, as `predict_proba(X)[:, 1]` does: every path writes it.

With several rows, that column is a view across the rows, not a C-contiguous array, which
orjson does not write by itself: the answer, the self-tests, batches, shadows and records must
all still see the model's numbers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .conftest import build_service, running, wait_for
from .test_offload import first_offload_pid, metric, records

SCORES = """
import numpy as np


class Scores:
    feature_names = ["a", "b"]
    # Several rows in one canary: its output is a view across them.
    test_data = [{"features": [[1, 2], [3, 4], [0, 0]], "expected": [3.0, 7.0, 0.0]}]

    def load(self, file):
        pass

    def predict(self, rows):
        x = np.asarray(rows, dtype=float)
        both = np.column_stack([-x.sum(axis=1), x.sum(axis=1)])  # as predict_proba's columns
        return both[:, 1]
"""


def score(row: list[float]) -> float:
    return float(sum(row))


def service(root: Path) -> Path:
    version: dict[str, Any] = {}
    config = {
        "models": {
            "scores": {
                "class": "scores_model:Scores",
                "primary": "v1",
                "versions": {"v1": version, "v2": {"shadow": True}},
            },
            "batched": {
                "class": "scores_model:Scores",
                "primary": "v1",
                "versions": {"v1": version},
                "batching": {"max_rows": 64, "max_wait_ms": 5},
            },
        },
        "recording": {"path": "records"},
    }
    path = build_service(root, config)
    (root / "scores_model.py").write_text(SCORES)
    return path


def test_a_view_across_rows_is_answered_tested_batched_shadowed_and_recorded(
    tmp_path: Path,
) -> None:
    config = service(tmp_path)
    rows = [[1.5, 2.0], [3.0, -4.0], [0.25, 0.5]]
    with running(config, workers=1) as server:
        first_offload_pid(server)  # listening: no job is dropped for want of it
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 200, ready.text  # the three-row canaries passed
        answer = server.post("/infer", {"model_id": "scores", "features": rows})
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"] == [score(r) for r in rows]

        # Batched: concurrent requests of several rows each, every one its own rows' outputs.
        asked = [[[float(i), float(j)] for j in range(1 + i % 4)] for i in range(24)]

        def infer(features: list[list[float]]) -> httpx.Response:
            return server.post("/infer", {"model_id": "batched", "features": features})

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(infer, asked))
        for features, got in zip(asked, answers, strict=True):
            assert got.status_code == 200, got.text
            assert got.json()["output"] == [score(r) for r in features]

        # The shadow compared it (agreeing: the same model) and the records hold the numbers.
        labels = {"model_id": "scores", "primary_version": "v1", "shadow_version": "v2"}
        wait_for(lambda: metric(server, "lls_shadow_comparisons_total", **labels) == 1)
        assert metric(server, "lls_shadow_comparisons_total", outcome="agree", **labels) == 1
        request_id = answer.json()["request_id"]

        def recorded() -> list[dict[str, Any]]:
            primary = records(config, "--kind", "primary")
            return [r for r in primary if r["request_id"] == request_id]

        wait_for(lambda: len(recorded()) == 1)
        assert recorded()[0]["output"] == [score(r) for r in rows]
