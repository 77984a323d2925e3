"""Train the benchmark model and time its predict in-process, the baseline every stack adds to.

The model's libraries (scikit-learn, joblib, numpy: `python3 dev.py bench` installs them) are
imported where they are used, so that the report's types import without them (tests/bench).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611


@dataclass(frozen=True)
class Artifact:
    path: Path  # the joblib file every stack loads
    canary: Path  # the runtime's self-test rows, as JSON
    row: list[float]  # the single row every request sends
    expected: float  # predict_proba(row)[:, 1], what every stack must answer


def train(out: Path) -> Artifact:
    import joblib  # type: ignore[import-untyped]
    import numpy as np
    from sklearn.datasets import make_classification  # type: ignore[import-untyped]
    from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped]

    from bench.apps.runtime_model import N_FEATURES

    x, y = make_classification(
        n_samples=5000, n_features=N_FEATURES, n_informative=10, random_state=SEED
    )
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    clf.fit(x, y)
    path = out / "model.joblib"
    joblib.dump(clf, path)
    row = [round(float(v), 6) for v in x[0]]
    expected = float(clf.predict_proba(np.asarray([row]))[0, 1])
    canary = out / "canary.json"
    canary.write_text(json.dumps([{"features": row, "expected": [expected]}]))
    return Artifact(path=path, canary=canary, row=row, expected=expected)


@dataclass(frozen=True)
class PredictTiming:
    mean_ms: float
    p50_ms: float


def time_predict(artifact: Artifact, calls: int = 3000) -> PredictTiming:
    """Time BenchModel.predict on one row, exactly the call a server makes per request."""
    from bench.apps.runtime_model import BenchModel

    model = BenchModel()
    model.load(artifact.path)
    rows = [artifact.row]
    for _ in range(300):
        model.predict(rows)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        model.predict(rows)
        samples.append(time.perf_counter_ns() - start)
    return PredictTiming(
        mean_ms=statistics.fmean(samples) / 1e6, p50_ms=statistics.median(samples) / 1e6
    )
