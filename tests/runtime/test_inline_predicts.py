"""Fast predicts on the event loop, slow ones on threads: the choice follows each version's
measured predict time, and whichever way a predict runs, its client gets the same answer."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving_runtime._batching import BatchPolicy, Scheduler
from serving_runtime._features import FeatureSpec
from serving_runtime._model import SelfTestReport, ServedModel

from .conftest import Server, build_service, running
from .test_offload import metric, wait_for

# Answers with the name of the thread its predict ran on; sleeps when asked (a predict that
# turned slow); holds a token's predict until the gate opens (the test knows it is under way).
WHERE = """
import sys
import threading
import time
from pathlib import Path


def hog():
    while True:  # holds the interpreter lock for a whole switch interval at a time
        pass


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
        if features == "hog":  # a busy thread beside the worker's own, with long turns
            sys.setswitchinterval(0.02)
            threading.Thread(target=hog, daemon=True).start()
            return "hog"
        if features == "yield":  # hands the interpreter lock over mid-predict, as native code
            time.sleep(0)
            return threading.current_thread().name
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


def test_a_fast_model_goes_inline_though_its_predicts_wait_for_the_interpreter(
    where: Path,
) -> None:
    # A predict that hands the interpreter lock over (native code does) waits to get it back
    # while another thread holds it: its wall time then says how busy the process is, not how
    # long the model takes. Measured by its CPU time, the fast model still goes inline. The
    # hog's turns (20 ms) keep each predict's wait well below the wall time past which the
    # runtime counts a predict as slow however little CPU it took (50 times the bound, 250 ms):
    # with 50-ms turns, answers took up to 456 ms in a run where this test failed.
    with running(where, "--inline-predict-ms", "5", workers=1) as server:
        assert infer(server, "hog").json()["output"] == "hog"
        seen = [infer(server, "yield").json()["output"] for _ in range(16)]
        assert seen[:15] == [PREDICT_THREAD] * 15  # with the hog's, 16 measured there
        assert seen[15] == LOOP


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


# A batched model that says where each row was predicted; while the file `hold` exists beside
# its artifact, a predict says it started (and where) and waits.
ROWS = """
import threading
import time
from pathlib import Path


class Rows:
    feature_names = ["a", "b"]
    test_data = [{"features": {"a": 0, "b": 0}, "expected": [0]}]

    def load(self, file):
        self.folder = Path(file).parent

    def predict(self, rows):
        if rows == [[0, 0]]:
            return [0]
        name = threading.current_thread().name
        if (self.folder / "hold").exists():
            (self.folder / "started").write_text(name)
            while (self.folder / "hold").exists():
                time.sleep(0.005)
        return [[a + b, name] for a, b in rows]
"""
BATCHED = {
    "models": {
        "rows": {
            "class": "rows_model:Rows",
            "primary": "1",
            "versions": {"1": {"artifact": "rows/artifact"}},
            "batching": {"max_rows": 12, "max_wait_ms": 2},
        },
        "other": {  # unbatched: its held predict holds the event loop
            "class": "rows_model:Rows",
            "primary": "1",
            "versions": {"1": {"artifact": "other/artifact"}},
        },
    }
}


def rows_service(root: Path, max_wait_ms: float = 2) -> Path:
    batched = copy.deepcopy(BATCHED)
    batched["models"]["rows"]["batching"]["max_wait_ms"] = max_wait_ms
    config = build_service(root, batched)
    (config.parent / "rows_model.py").write_text(ROWS)
    for model in ("rows", "other"):
        (config.parent / model).mkdir()
        (config.parent / model / "artifact").write_text("")
    return config


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    return rows_service(tmp_path / "service")


def row_calls(server: Server) -> float:
    return metric(server, "lls_batch_rows_count", model_id="rows", version="1")


def infer_other(server: Server, a: int) -> Any:
    return server.post("/infer", {"model_id": "other", "features": [[a, 1]]}).json()


def raw_request(a: int, rows: int = 1) -> bytes:
    body = json.dumps({"model_id": "rows", "features": [[a, 1]] * rows}).encode()
    head = "POST /infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def raw_answer(connection: socket.socket) -> Any:
    """The JSON body of the next response on `connection`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += connection.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


def connect(server: Server, count: int) -> list[socket.socket]:
    where_to = urlsplit(server.url)
    address = (where_to.hostname or "", where_to.port or 80)
    return [socket.create_connection(address) for _ in range(count)]


@contextmanager
def loop_held(server: Server, rows: Path) -> Iterator[None]:
    """While the block runs, a predict of the other model holds the worker's event loop: what
    the block sends is read in one turn once it ends."""
    for i in range(16):  # the other model measured fast (a held predict sends 16 to the thread)
        assert infer_other(server, i)["output"][0][0] == i + 1
    folder = rows.parent / "other"
    (folder / "started").unlink(missing_ok=True)
    (folder / "hold").write_text("")
    held: list[Any] = []
    holder = threading.Thread(target=lambda: held.append(infer_other(server, 7)))
    holder.start()
    try:
        wait_for((folder / "started").exists)
        assert (folder / "started").read_text() == LOOP
        yield
    finally:
        (folder / "hold").unlink()
        holder.join()
    assert held[0]["output"] == [[8, LOOP]]


def burst(server: Server, rows: Path, firsts: list[int]) -> list[Any]:
    """Requests for `rows` (one row each, `[first, 1]`), each on a connection of its own, that
    the loop reads in one turn. Their answers, in order."""
    connections = connect(server, len(firsts))
    try:
        with loop_held(server, rows):
            for first, connection in zip(firsts, connections, strict=True):
                connection.sendall(raw_request(first))
        return [raw_answer(connection)["output"] for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def measured_at_six_rows(server: Server) -> None:
    """The batched model measured fast at 6 rows: batches of up to 12 run on the loop."""
    for i in range(20):
        server.post("/infer", {"model_id": "rows", "features": [[i, 1]] * 6})


def test_a_batched_model_predicts_inline_when_alone_and_batches_concurrent_requests(
    rows: Path,
) -> None:
    """A single client of a fast batched model gets the unbatched (inline) speed; requests
    that arrive together become one predict call on the loop, of at most twice the rows
    measured fast so far (so batches grow, measured, up to max_rows)."""
    with running(rows, "--inline-predict-ms", "50", workers=1) as server:
        seen = [
            server.post("/infer", {"model_id": "rows", "features": [[i, 1]]}) for i in range(30)
        ]
        assert [s.json()["output"] for s in seen[:16]] == [
            [[i + 1, PREDICT_THREAD]] for i in range(16)
        ]
        assert [s.json()["output"] for s in seen[-5:]] == [[[i + 1, LOOP]] for i in range(25, 30)]

        # Measured fast at one row: five together go as 2 rows, then (2 measured) the 3 left.
        calls = row_calls(server)
        answers = burst(server, rows, [200 + i for i in range(5)])
        assert [[row[0] for row in answer] for answer in answers] == [[201 + i] for i in range(5)]
        assert all(answer[0][1] == LOOP for answer in answers), answers
        assert row_calls(server) - calls == 2
        # 3 measured: 12 go as 6, then the 6 left; then, 6 measured, 12 at once (max_rows 12).
        calls = row_calls(server)
        answers = burst(server, rows, [300 + i for i in range(12)])
        assert [answer[0][0] for answer in answers] == [301 + i for i in range(12)]
        assert row_calls(server) - calls == 2
        calls = row_calls(server)
        answers = burst(server, rows, [400 + i for i in range(13)])
        assert [answer[0][0] for answer in answers] == [401 + i for i in range(13)]
        assert all(answer[0][1] == LOOP for answer in answers), answers
        assert row_calls(server) - calls == 2  # never more than max_rows in one call


def test_a_client_that_left_while_its_batch_waited_on_the_loop_is_never_predicted(
    tmp_path: Path,
) -> None:
    """A fast batched model whose batch waits for more rows (max_wait_ms) on the loop: a
    client that leaves meanwhile is not predicted, and the one that stays is."""
    config = rows_service(tmp_path / "service", max_wait_ms=1000)
    with running(config, "--inline-predict-ms", "50", workers=1) as server:
        measured_at_six_rows(server)
        staying, leaving = connect(server, 2)
        try:
            with loop_held(server, config):
                staying.sendall(raw_request(1))
                leaving.sendall(raw_request(2))
            # Two rows of twelve: the batch waits, on the loop, for more.
            wait_for(lambda: metric(server, "lls_requests_waiting", model_id="rows") == 2)
            rows_before = metric(server, "lls_batch_rows_sum", model_id="rows", version="1")
            leaving.close()
            labels = {"model_id": "rows", "reason": "client_gone"}
            wait_for(lambda: metric(server, "lls_requests_abandoned_total", **labels) == 1)
            assert raw_answer(staying)["output"] == [[2, LOOP]]
        finally:
            staying.close()
            leaving.close()
        predicted = metric(server, "lls_batch_rows_sum", model_id="rows", version="1")
        assert predicted - rows_before == 1  # the staying client's row alone


def test_a_batch_waiting_on_the_loop_goes_once_it_is_full(tmp_path: Path) -> None:
    """max_wait_ms holds a batch back for more rows, not once it has them: a request that
    fills the waiting batch sends it at once."""
    config = rows_service(tmp_path / "service", max_wait_ms=1000)
    with running(config, "--inline-predict-ms", "50", workers=1) as server:
        measured_at_six_rows(server)
        connections = connect(server, 3)
        try:
            with loop_held(server, config):
                for first, connection in zip((10, 20), connections[:2], strict=True):
                    connection.sendall(raw_request(first, rows=4))
            # 8 rows of 12 wait for more; 4 more fill the batch.
            connections[2].sendall(raw_request(30, rows=4))
            answers = [raw_answer(connection)["output"] for connection in connections]
        finally:
            for connection in connections:
                connection.close()
        assert [answer[0][0] for answer in answers] == [11, 21, 31]
        # None waited the full second: the batch went when it was full.
        waited = metric(
            server, "lls_batch_wait_seconds_bucket", model_id="rows", version="1", le="1.0"
        )
        assert waited == metric(
            server, "lls_batch_wait_seconds_count", model_id="rows", version="1"
        )


@given(requests=st.lists(st.lists(st.integers(-1000, 1000), min_size=1, max_size=6), max_size=16))
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_inline_or_batched_every_client_gets_its_own_rows(
    batched_inline: Server, requests: list[list[int]]
) -> None:
    answers: list[Any] = [None] * len(requests)

    def post(i: int) -> None:
        rows = [[a, 1] for a in requests[i]]
        answers[i] = batched_inline.post("/infer", {"model_id": "rows", "features": rows})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert [row[0] for row in answer.json()["output"]] == [a + 1 for a in request]


@pytest.fixture(scope="module")
def batched_inline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The batched model, measured fast: single requests inline from the start."""
    config = rows_service(tmp_path_factory.mktemp("batched-inline"))
    with running(config, "--inline-predict-ms", "50", workers=1) as server:
        for i in range(20):
            server.post("/infer", {"model_id": "rows", "features": [[i, 1]] * 6})
        answer = server.post("/infer", {"model_id": "rows", "features": [[1, 1]]})
        assert answer.json()["output"] == [[2, LOOP]]
        yield server


def test_a_lone_request_to_a_batched_model_goes_inline_without_a_turn_of_the_loop() -> None:
    # The HTTP worker tells the scheduler how many requests its process is answering. With
    # none but its own, a request for a batched model measured fast is predicted at once;
    # else (or untold) it gives the loop one turn first, so that the requests read with it
    # can say they are there and be batched with it.
    turns: list[int] = []

    class Model:
        def predict(self, rows: list[list[float]]) -> list[int]:
            return [len(turns) for _ in rows]  # how many turns the loop took since asked

    model = ServedModel("m", "1", Model(), FeatureSpec(["x"]), SelfTestReport((), 0.0))

    async def lone_request(in_flight: Callable[[], int] | None) -> Any:
        scheduler = Scheduler(1, {"m": BatchPolicy(32, 0.0)})
        scheduler.in_flight = in_flight
        for _ in range(16):  # measured fast, on the thread
            await scheduler.predict(model, [[1.0]])
        turns.clear()
        asyncio.get_running_loop().call_soon(turns.append, 1)
        return await scheduler.predict(model, [[1.0]])

    assert asyncio.run(lone_request(lambda: 1)) == [0]
    assert asyncio.run(lone_request(lambda: 2)) == [1]
    assert asyncio.run(lone_request(None)) == [1]
