"""Adaptive batching as clients see it: concurrent requests to a model become one predict call,
and each client gets exactly the answer it would have got alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Server, build_service, linear, running
from .test_offload import metric, records, wait_for

# The linear model, with a hold: while the file `hold` exists beside its artifact, predict waits,
# so requests queue behind it and the test knows they will be batched. A row whose `a` is 666
# makes predict raise, as a bad input would.
HELD = """
import time
from pathlib import Path

from linear_model import Linear


class Held(Linear):
    def load(self, file):
        super().load(file)
        self.hold = Path(file).parent / "hold"

    def predict(self, rows):
        while self.hold.exists():
            time.sleep(0.005)
        if any(a == 666 for a, _ in rows):
            raise ValueError("666 is not a value this model takes")
        return super().predict(rows)
"""
MAX_ROWS = 12
BATCHED = {
    "models": {
        "linear": {
            "class": "held_model:Held",
            "primary": "v1",
            "versions": {
                "v1": {"artifact": "artifacts/v1.json"},
                "v2": {"artifact": "artifacts/v2.json", "shadow": True},
            },
            "batching": {"max_rows": MAX_ROWS, "max_wait_ms": 2},
        }
    },
    "recording": {"path": "records", "features": True},
}


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = build_service(tmp_path_factory.mktemp("batched"), BATCHED)
    (config.parent / "held_model.py").write_text(HELD)
    # Predicts on the thread only: these tests hold one predict so that requests queue behind
    # it, and a held predict on the event loop would hold the whole server (inline batched
    # predicts are tested in test_inline_predicts.py).
    with running(config, "--inline-predict-ms", "0", workers=1) as server:
        yield server


def hold(server: Server) -> Path:
    return server.config.parent / "artifacts" / "hold"


def batch_calls(server: Server) -> tuple[float, float]:
    """(predict calls, rows predicted) so far."""
    labels = {"model_id": "linear", "version": "v1"}
    return (
        metric(server, "lls_batch_rows_count", **labels),
        metric(server, "lls_batch_rows_sum", **labels),
    )


def post_all(server: Server, requests: list[tuple[str, Any, dict[str, str]]]) -> list[Any]:
    """Each (path, body, headers) from its own thread, at once; the answers in order."""
    answers: list[Any] = [None] * len(requests)

    def post(i: int) -> None:
        path, body, headers = requests[i]
        answers[i] = httpx.post(server.url + path, json=body, headers=headers, timeout=30)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def queued_behind_a_held_predict(
    server: Server, requests: list[tuple[str, Any, dict[str, str]]]
) -> list[Any]:
    """Send `requests` while one predict is held, release it once all of them wait."""
    hold(server).write_text("")
    answers: list[Any] = []
    primed: list[Any] = []
    body = {"model_id": "linear", "features": [0, 0]}
    primer = threading.Thread(target=lambda: primed.append(server.post("/infer", body)))
    started = metric(server, "lls_batch_wait_seconds_count", model_id="linear")
    primer.start()
    try:  # the primer's predict holds the one predict thread...
        wait_for(
            lambda: metric(server, "lls_batch_wait_seconds_count", model_id="linear") > started
        )
        sender = threading.Thread(target=lambda: answers.extend(post_all(server, requests)))
        sender.start()
        wait_for(lambda: metric(server, "lls_requests_waiting", model_id="linear") == len(requests))
    finally:
        hold(server).unlink()
    sender.join()
    primer.join()
    assert primed[0].json()["output"] == [0.0]
    return answers


# Never 666 first: that row fails its predict on purpose (the next test).
FIRST = st.integers(-1000, 1000).filter(lambda a: a != 666)
ROWS = st.lists(st.tuples(FIRST, st.integers(-1000, 1000)), min_size=1, max_size=8)


@given(requests=st.lists(ROWS, min_size=2, max_size=24))
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_client_gets_exactly_its_own_rows_answers_in_order(
    batched: Server, requests: list[list[tuple[int, int]]]
) -> None:
    calls, rows = batch_calls(batched)
    bodies = [
        ("/infer", {"model_id": "linear", "features": [list(r) for r in request]}, {})
        for request in requests
    ]
    answers = queued_behind_a_held_predict(batched, bodies)
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"] == [linear("v1", a, b) for a, b in request]
    # Every row was predicted once, in no more calls than requests.
    more_calls, more_rows = batch_calls(batched)
    assert more_rows - rows == 1 + sum(len(r) for r in requests)
    assert more_calls - calls <= 1 + len(requests)


def test_queued_requests_become_one_predict_call(batched: Server) -> None:
    calls, _ = batch_calls(batched)
    bodies = [("/infer", {"model_id": "linear", "features": [i, 2]}, {}) for i in range(30)]
    answers = queued_behind_a_held_predict(batched, bodies)
    assert [a.json()["output"] for a in answers] == [[linear("v1", i, 2)] for i in range(30)]
    # the primer, then 30 rows in calls of 12 at most: 12, 12, 6
    assert batch_calls(batched)[0] - calls == 1 + 3


def test_a_batch_that_raises_is_retried_request_by_request_so_only_the_bad_one_fails(
    batched: Server,
) -> None:
    requests = [[[1, 2]], [[666, 1]], [[3, 4], [5, 6]], [[7, 8]]]
    bodies = [("/infer", {"model_id": "linear", "features": r}, {}) for r in requests]
    answers = queued_behind_a_held_predict(batched, bodies)
    assert [a.status_code for a in answers] == [200, 500, 200, 200]
    assert answers[1].json()["error"]["code"] == "predict_failed"
    assert answers[0].json()["output"] == [linear("v1", 1, 2)]
    assert answers[2].json()["output"] == [linear("v1", 3, 4), linear("v1", 5, 6)]
    assert answers[3].json()["output"] == [linear("v1", 7, 8)]


def test_a_request_larger_than_a_batch_goes_alone_and_batches_never_exceed_the_limit(
    batched: Server,
) -> None:
    big = [[i, 1] for i in range(MAX_ROWS + 5)]
    requests = [[[1, 1]] * 5, big, [[2, 2]] * 5, [[3, 3]] * 5]
    bodies = [("/infer", {"model_id": "linear", "features": r}, {}) for r in requests]
    scrape_before = httpx.get(batched.url + "/metrics").text
    answers = queued_behind_a_held_predict(batched, bodies)
    for request, answer in zip(requests, answers, strict=True):
        assert answer.json()["output"] == [linear("v1", a, b) for a, b in request]
    scrape = httpx.get(batched.url + "/metrics").text
    over = 'lls_batch_rows_bucket{le="16.0",model_id="linear",version="v1"}'
    total = 'lls_batch_rows_count{model_id="linear",version="v1"}'

    def value(text: str, name: str) -> float:
        return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])

    # Only the big request's call has more than MAX_ROWS (12 < 16 < 17) rows.
    beyond = (value(scrape, total) - value(scrape, over)) - (
        value(scrape_before, total) - value(scrape_before, over)
    )
    assert beyond == 1


def test_v2_metrics_shadows_and_records_see_requests_not_batches(batched: Server) -> None:
    requested = metric(batched, "lls_requests_total", model_id="linear", status="200")
    v2 = {"inputs": [{"name": "rows", "shape": [2, 2], "datatype": "FP64", "data": [9, 1, 8, 2]}]}
    bodies = [
        ("/infer", {"model_id": "linear", "features": [[1, 0]]}, {"x-request-id": "batch-a"}),
        ("/v2/models/linear/infer", v2, {"x-request-id": "batch-b"}),
        ("/infer", {"model_id": "linear", "features": [[2, 0], [3, 0]]}, {"x-request-id": "c"}),
    ]
    answers = queued_behind_a_held_predict(batched, bodies)
    assert answers[0].json()["output"] == [linear("v1", 1, 0)]
    assert answers[1].json()["outputs"][0]["data"] == [linear("v1", 9, 1), linear("v1", 8, 2)]
    assert answers[2].json()["output"] == [linear("v1", 2, 0), linear("v1", 3, 0)]
    # One request each in the metrics, the primer too.
    wait_for(
        lambda: (
            metric(batched, "lls_requests_total", model_id="linear", status="200") == requested + 4
        )
    )
    # The shadow compared, and the sink recorded, each request with its own rows.
    wanted = {"batch-a": [[1.0, 0.0]], "batch-b": [[9.0, 1.0], [8.0, 2.0]]}
    wanted["c"] = [[2.0, 0.0], [3.0, 0.0]]

    def recorded() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for record in records(batched.config):
            if record["request_id"] in wanted:
                found.setdefault(record["request_id"], []).append(record)
        return found

    wait_for(lambda: sum(len(v) for v in recorded().values()) == 6)
    for request_id, rows in wanted.items():
        kinds = {r["kind"]: r for r in recorded()[request_id]}
        assert kinds["primary"]["features"] == rows
        assert kinds["primary"]["output"] == [linear("v1", a, b) for a, b in rows]
        assert kinds["shadow"]["output"] == [linear("v2", a, b) for a, b in rows]


def test_a_single_request_to_an_idle_model_does_not_wait(batched: Server) -> None:
    before = metric(batched, "lls_batch_wait_seconds_sum", model_id="linear")
    count = metric(batched, "lls_batch_wait_seconds_count", model_id="linear")
    for i in range(20):
        answer = batched.post("/infer", {"model_id": "linear", "features": [i, 1]})
        assert answer.json()["output"] == [linear("v1", i, 1)]
    # Each found the model idle and went at once, though max_wait_ms is 2: no wait at all.
    assert metric(batched, "lls_batch_wait_seconds_count", model_id="linear") == count + 20
    assert metric(batched, "lls_batch_wait_seconds_sum", model_id="linear") == before
