"""Fast predicts on the event loop, slow ones on threads: the choice follows each version's
measured predict time, and whichever way a predict runs, its client gets the same answer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, build_service, running
from .test_offload import metric, wait_for

# Answers with the name of the thread its predict ran on; sleeps when asked (a predict that
# turned slow); holds a token's predict until the gate opens (the test knows it is under way).
WHERE = """
import threading
import time
from pathlib import Path


class Where:
    test_data = [("pass", "pass")]

    def load(self, file):
        self.folder = Path(file).parent

    def predict(self, features):
        if features == "pass":
            return "pass"
        if features == "where":
            return threading.current_thread().name
        if isinstance(features, list):  # rows: where each was predicted
            return [threading.current_thread().name for _ in features]
        if features == "raise":
            raise RuntimeError("the model raised on purpose")
        if "sleep" in features:
            time.sleep(features["sleep"])
            return threading.current_thread().name
        token = features["token"]
        (self.folder / f"started-{token}").write_text(threading.current_thread().name)
        while not (self.folder / "open").exists():
            time.sleep(0.01)
        return token
"""
CONFIG = {
    "models": {
        "where": {
            "class": "where_model:Where",
            "primary": "1",
            "versions": {"1": {"artifact": "where/artifact"}},
        }
    }
}
LOOP = "MainThread"  # the worker's event loop runs on its main thread
PREDICT_THREAD = "lls-predict-0"


@pytest.fixture
def where(tmp_path: Path) -> Path:
    config = build_service(tmp_path / "service", CONFIG)
    (config.parent / "where_model.py").write_text(WHERE)
    (config.parent / "where").mkdir()
    (config.parent / "where" / "artifact").write_text("")
    return config


def infer(server: Server, features: Any) -> httpx.Response:
    return server.post("/infer", {"model_id": "where", "features": features})


def threads_of(server: Server, count: int) -> list[str]:
    return [infer(server, "where").json()["output"] for _ in range(count)]


def test_a_fast_model_goes_inline_and_back_to_threads_once_it_turns_slow(where: Path) -> None:
    # A bound far above what the fast predicts take, even on a busy machine: the test does not
    # depend on how fast the machine is.
    with running(where, "--inline-predict-ms", "50", workers=1) as server:
        # Measured on the predict thread first; inline once measured fast.
        seen = threads_of(server, 30)
        assert seen[:16] == [PREDICT_THREAD] * 16
        assert seen[-5:] == [LOOP] * 5

        # Inline, a predict that raises is still a 500 naming the request, the worker lives.
        failed = server.post(
            "/infer", {"model_id": "where", "features": "raise"}, headers={"x-request-id": "r-1"}
        )
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error == {
            "status": 500,
            "code": "predict_failed",
            "message": error["message"],
            "request_id": "r-1",
        }
        assert "RuntimeError" in error["message"]
        logged = [r for r in server.log_lines() if r.get("request_id") == "r-1"]
        assert any("the model raised on purpose" in r.get("traceback", "") for r in logged)
        assert threads_of(server, 1) == [LOOP]

        # The predict that turns slow runs inline once (at least 0.5 s, so the moving average
        # passes 50 ms); the next ones go to the thread, and probes never wait behind them.
        assert infer(server, {"sleep": 0.5}).json()["output"] == LOOP
        answers: list[httpx.Response] = []
        slow = threading.Thread(target=lambda: answers.append(infer(server, {"token": "t"})))
        slow.start()
        try:
            gate = where.parent / "where"
            wait_for((gate / "started-t").exists)
            assert (gate / "started-t").read_text() == PREDICT_THREAD
            for path in ("/livez", "/readyz", "/metrics", "/v2/health/live"):
                assert httpx.get(server.url + path, timeout=30).status_code == 200
            assert answers == []  # answered while the slow predict was still held
        finally:
            (where.parent / "where" / "open").write_text("")
            slow.join()
        assert answers[0].json()["output"] == "t"
        # Every predict counted, inline or not: one call of one row each.
        calls = metric(server, "lls_batch_rows_count", model_id="where", version="1")
        assert calls == 30 + 1 + 1 + 1 + 1


def test_inline_predicts_can_be_turned_off(where: Path) -> None:
    with running(where, "--inline-predict-ms", "0", workers=1) as server:
        assert threads_of(server, 40) == [PREDICT_THREAD] * 40


def test_a_request_of_more_rows_than_any_measured_goes_to_a_thread(where: Path) -> None:
    """What a predict takes grows with its rows: a client that sends many once the version
    predicts inline must not hold the event loop (and the probes) for all of them."""
    with running(where, "--inline-predict-ms", "50", workers=1) as server:
        seen = [infer(server, ["row"]).json()["output"] for _ in range(30)]
        assert seen[-5:] == [[LOOP]] * 5
        assert infer(server, ["row"] * 50).json()["output"] == [PREDICT_THREAD] * 50
        # measured at 50 rows, fast: a request of as many may now run inline, not one more
        assert infer(server, ["row"] * 50).json()["output"] == [LOOP] * 50
        assert infer(server, ["row"] * 51).json()["output"] == [PREDICT_THREAD] * 51


def test_a_predict_that_raised_does_not_count_as_fast(where: Path) -> None:
    with running(where, "--inline-predict-ms", "50", workers=1) as server:
        for _ in range(20):
            assert infer(server, "raise").status_code == 500
        assert threads_of(server, 1) == [PREDICT_THREAD]  # nothing measured yet


def test_predicts_stay_on_threads_when_there_are_several(where: Path) -> None:
    """More than one predict thread is for predicts that wait (on I/O): those are never run on
    the loop, however fast they were so far."""
    with running(where, "--inline-predict-ms", "50", "--threads", "2", workers=1) as server:
        assert LOOP not in threads_of(server, 40)
