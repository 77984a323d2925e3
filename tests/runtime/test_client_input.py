"""Client input that a framework cannot take is the client's error (4xx), never a 500; bodies
may come compressed."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Server, build_service, running

# What scikit-learn, XGBoost, LightGBM and ONNX Runtime do with rows: float32, and a ValueError
# for a value that is not finite there (scikit-learn's words).
FLOAT32 = """
import numpy as np


class Float32:
    feature_names = ["a", "b"]
    test_data = [{"features": {"a": 1, "b": 2}, "expected": [3.0]}]

    def load(self, file):
        pass

    def predict(self, rows):
        x = np.asarray(rows, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("Input X contains infinity or a value too large for dtype('float32').")
        return x.sum(axis=1).astype(float).tolist()
"""
CONFIG = {"models": {"f32": {"class": "f32_model:Float32", "primary": "1", "versions": {"1": {}}}}}


@pytest.fixture(scope="module")
def f32(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = build_service(tmp_path_factory.mktemp("f32"), CONFIG)
    (config.parent / "f32_model.py").write_text(FLOAT32)
    with running(config, workers=1) as server:
        yield server


@pytest.mark.parametrize("value", [1e308, -1e300, 3.5e38])
def test_a_feature_no_model_can_take_is_a_400_naming_it(f32: Server, value: float) -> None:
    answer = f32.post("/infer", {"model_id": "f32", "features": {"a": value, "b": 1}})
    assert answer.status_code == 400, answer.text
    assert "features.a" in answer.json()["error"]["message"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300])
def test_v2_binary_data_no_model_can_take_is_a_400(f32: Server, value: float) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "rows",
                    "shape": [1, 2],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    answer = httpx.post(
        f32.url + "/v2/models/f32/infer",
        content=header + struct.pack("<2d", value, 1.0),
        headers={"inference-header-content-length": str(len(header))},
    )
    assert answer.status_code == 400, answer.text
    assert "features" in answer.json()["error"]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_infer_takes_a_compressed_body(f32: Server, encoding: str, compress: object) -> None:
    body = json.dumps({"model_id": "f32", "features": [[1, 2], [3, 4]]}).encode()
    answer = httpx.post(
        f32.url + "/infer",
        content=compress(body),  # type: ignore[operator]
        headers={"content-type": "application/json", "content-encoding": encoding},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == [3.0, 7.0]


def test_an_encoding_the_runtime_does_not_know_is_a_415(f32: Server) -> None:
    answer = httpx.post(
        f32.url + "/infer",
        content=b"...",
        headers={"content-type": "application/json", "content-encoding": "br"},
    )
    assert answer.status_code == 415
    assert "br" in answer.json()["error"]["message"]


def test_a_gzip_bomb_is_a_413(f32: Server) -> None:
    bomb = gzip.compress(b'{"model_id": "f32", "features": "' + b" " * (8 << 20) + b'"}')
    answer = httpx.post(
        f32.url + "/infer",
        content=bomb,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert answer.status_code == 413
    assert "decompressed" in answer.json()["error"]["message"]


def test_the_server_was_never_answering_500(f32: Server) -> None:
    statuses = [r["status"] for r in f32.log_lines() if r.get("event") == "request"]
    assert statuses
    assert all(status < 500 for status in statuses)


def test_the_model_itself_is_fine(tmp_path: Path, f32: Server) -> None:
    assert f32.post("/infer", {"model_id": "f32", "features": [1, 2]}).json()["output"] == [3.0]
