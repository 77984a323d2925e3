"""The server as raw HTTP clients see it: pipelining, chunked bodies, 100-continue, HTTP/1.0,
header limits and deadlines, and the master's guarantees (--timeout, --max-requests, SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from serving_runtime.testing import free_port

from .conftest import Server, build_service, linear, running


@pytest.fixture(scope="module")
def proto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = build_service(tmp_path_factory.mktemp("protocol"))
    with running(config, "--body-timeout", "1", workers=2) as server:
        yield server


@contextmanager
def connect(server: Server) -> Iterator[tuple[socket.socket, BinaryIO]]:
    host, port = server.url.removeprefix("http://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as sock,
        sock.makefile("rb") as answers,
    ):
        yield sock, answers


def infer(features: Any, *headers: str, version: str = "1.1") -> bytes:
    body = json.dumps({"model_id": "linear", "features": features}).encode()
    head = [f"POST /infer HTTP/{version}", "Host: x", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answer(answers: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One answer off the connection: status, headers (lower-case names), body."""
    status_line = answers.readline()
    assert status_line, "the server closed the connection without an answer"
    status = int(status_line.split()[1])
    headers = {}
    while (line := answers.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = answers.read(int(headers.get("content-length", 0)))
    return status, headers, body


def closed(sock: socket.socket, answers: BinaryIO) -> bool:
    sock.settimeout(5)
    try:
        return answers.read(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        requests = [infer([i, 1]) for i in range(5)]
        requests.insert(2, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(b"".join(requests))  # in one write: the server reads them at once
        outputs = [json.loads(read_answer(answers)[2]) for _ in requests]
    assert outputs[2] == {"status": "alive"}
    del outputs[2]
    assert [o["output"] for o in outputs] == [[linear("v1", i, 1)] for i in range(5)]


def test_a_chunked_body_sent_in_pieces_is_read_whole(proto: Server) -> None:
    body = json.dumps({"model_id": "linear", "features": {"a": 4, "b": 2}}).encode()
    pieces = [body[:7], body[7:20], body[20:]]
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            time.sleep(0.05)
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, _, answer = read_answer(answers)
    assert status == 200
    assert json.loads(answer)["output"] == [linear("v1", 4, 2)]


def test_expect_100_continue_is_answered_before_the_body(proto: Server) -> None:
    request = infer([1, 2], "Expect: 100-continue")
    head, _, body = request.partition(b"\r\n\r\n")
    with connect(proto) as (sock, answers):
        sock.sendall(head + b"\r\n\r\n")
        assert answers.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert answers.readline() == b"\r\n"
        sock.sendall(body)
        status, _, answer = read_answer(answers)
    assert (status, json.loads(answer)["output"]) == (200, [5.0])


def test_a_body_over_the_limit_gets_413_without_100_continue(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        )
        status, headers, answer = read_answer(answers)
    assert status == 413
    assert json.loads(answer)["error"]["request_id"] == headers["x-request-id"]


def test_http_1_0_closes_unless_asked_to_keep_alive(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(infer([1, 2], version="1.0"))
        status, headers, _ = read_answer(answers)
        assert status == 200
        assert headers["connection"].lower() == "close"
        assert closed(sock, answers)
    with connect(proto) as (sock, answers):
        for i in range(2):
            sock.sendall(infer([i, 0], "Connection: keep-alive", version="1.0"))
            status, headers, answer = read_answer(answers)
            assert headers["connection"].lower() == "keep-alive"
            assert json.loads(answer)["output"] == [linear("v1", i, 0)]


def test_connection_close_is_honoured(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(infer([1, 2], "Connection: close") + infer([3, 4]))
        status, headers, _ = read_answer(answers)
        assert (status, headers["connection"]) == (200, "close")
        assert closed(sock, answers)  # the request after it is not answered


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (
            b"GET /livez HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
        ),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"POST /infer HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
        (
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", 400),
    ],
)
def test_bad_or_oversized_requests_are_refused_and_closed(
    proto: Server, request_bytes: bytes, status: int
) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(request_bytes)
        answered, headers, body = read_answer(answers)
        assert answered == status
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]["status"] == status
        assert closed(sock, answers)
    assert proto.post("/infer", {"model_id": "linear", "features": [1, 2]}).status_code == 200


def test_slow_headers_get_408_and_starve_no_one(proto: Server) -> None:
    slow = []
    for _ in range(20):
        host, port = proto.url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Ty")
        slow.append(sock)
    for i in range(10):
        answer = proto.post("/infer", {"model_id": "linear", "features": [i, 0]})
        assert answer.json()["output"] == [linear("v1", i, 0)]
    for sock in slow:
        sock.settimeout(30)  # only a hang: --body-timeout 1 bounds headers too
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")
        sock.close()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a long --body-timeout: clients that hold connections hold them meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192)  # the attack below opens 2 100 connections; the server inherits it
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    config = build_service(tmp_path_factory.mktemp("patient"))
    try:
        with running(config, "--body-timeout", "60", workers=2) as server:
            yield server
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_trickling_and_silent_clients_starve_no_one(patient: Server) -> None:
    host, port = patient.url.removeprefix("http://").split(":")
    address = (host, int(port))
    held = [socket.create_connection(address) for _ in range(2100)]  # never send a byte
    try:
        for _ in range(20):  # headers that never end
            held.append(socket.create_connection(address))
            held[-1].sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Ty")
        for _ in range(10):  # a body that never ends
            held.append(socket.create_connection(address))
            held[-1].sendall(infer([1, 2])[:-5])
        # All of them still within their deadline, unanswered: others are answered meanwhile.
        for i in range(10):
            answer = patient.post("/infer", {"model_id": "linear", "features": [i, 0]})
            assert answer.json()["output"] == [linear("v1", i, 0)]
        for sock in held[-30:]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1, socket.MSG_PEEK)
    finally:
        for sock in held:
            sock.close()


def test_a_malformed_chunk_is_a_400_at_once_not_a_408_at_the_deadline(patient: Server) -> None:
    with connect(patient) as (sock, answers):
        sock.settimeout(30)  # the deadline is 60 s: a 408 would come too late to be read
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nX-Request-Id: bad-chunk-1\r\n\r\n"
            b'3\r\n{"m\r\nZZ\r\n'
        )
        status, headers, body = read_answer(answers)
        assert (status, headers["connection"]) == (400, "close")
        error = json.loads(body)["error"]
        assert "chunk" in error["message"]
        assert error["request_id"] == headers["x-request-id"] == "bad-chunk-1"
        assert closed(sock, answers)
    logged = [r for r in patient.log_lines() if r.get("request_id") == "bad-chunk-1"]
    assert [r["status"] for r in logged] == [400]


def test_a_trickled_body_gets_408_from_the_app_with_a_request_id(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\nX-Request-Id: trickle-1\r\n\r\n{"model_id"'
        )
        status, headers, body = read_answer(answers)
        assert status == 408
        assert headers["x-request-id"] == "trickle-1"
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert closed(sock, answers)
    time.sleep(0.1)
    logged = [r for r in proto.log_lines() if r.get("request_id") == "trickle-1"]
    assert [r["status"] for r in logged] == [408]


def test_a_predict_that_hangs_past_timeout_gets_its_worker_replaced(fresh_service: Path) -> None:
    args = ("--timeout", "2", "--request-timeout", "1")
    with running(fresh_service, *args, workers=1) as server:
        hung = server.post("/infer", {"model_id": "echo", "features": {"sleep": 30}})
        assert hung.status_code == 504  # its deadline passed: answered, though predict runs on
        assert hung.json()["error"]["code"] == "deadline_exceeded"
        assert httpx.get(server.url + "/livez", timeout=10).status_code == 200

        def replaced() -> bool:
            messages = [r.get("message", "") for r in server.log_lines()]
            return any("WORKER TIMEOUT" in m for m in messages)

        deadline = time.monotonic() + 30
        while not replaced():  # the master kills the worker stuck in predict and forks another
            assert time.monotonic() < deadline
            time.sleep(0.2)
        while True:
            try:
                answer = server.post("/infer", {"model_id": "echo", "features": "back"})
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert answer.json()["output"] == "back"


def test_max_requests_restarts_the_worker_and_fails_no_request(fresh_service: Path) -> None:
    with running(fresh_service, "--max-requests", "5", workers=1) as server:

        def booted() -> int:
            return sum("Booting worker" in r.get("message", "") for r in server.log_lines())

        with httpx.Client(timeout=30) as client:  # keep-alive: the worker closes, it reconnects
            for i in range(5000):
                answer = client.post(
                    server.url + "/infer", json={"model_id": "linear", "features": [i, 0]}
                )
                assert answer.json()["output"] == [linear("v1", i, 0)]
                if i % 10 == 0 and booted() >= 4:
                    break
        assert booted() >= 4


def test_sigterm_answers_what_was_received_then_exits(tmp_path: Path) -> None:
    config = build_service(tmp_path / "svc")
    port = free_port()
    command = [sys.executable, "-m", "serving_runtime", "serve", "--config", str(config)]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", tmp_path / "server.log", config)
    try:
        _wait(server)
        with connect(server) as (busy, busy_answers), connect(server) as (idle, idle_answers):
            idle.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(idle_answers)[0] == 200
            slow = json.dumps({"model_id": "echo", "features": {"sleep": 1}}).encode()
            busy.sendall(
                b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(slow), slow) + infer([2, 1])
            )
            time.sleep(0.3)  # the first is being predicted, the second waits behind it
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            first, second = read_answer(busy_answers), read_answer(busy_answers)
            assert (first[0], json.loads(first[2])["output"]) == (200, "slept")
            assert (second[0], json.loads(second[2])["output"]) == (200, [linear("v1", 2, 1)])
            assert second[1]["connection"] == "close"
            assert closed(busy, busy_answers)
            assert closed(idle, idle_answers)  # idle keep-alive: closed, unanswered
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - signalled < 10
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/livez")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_many_clients_at_once_on_one_worker(fresh_service: Path) -> None:
    with running(fresh_service, workers=1) as server:
        errors: list[str] = []

        def client(n: int) -> None:
            with httpx.Client(timeout=30) as http:
                for i in range(30):
                    a = n * 100 + i
                    out = http.post(
                        server.url + "/infer", json={"model_id": "linear", "features": [a, 1]}
                    ).json()
                    if out.get("output") != [linear("v1", a, 1)]:
                        errors.append(f"{a} -> {out}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []


def _wait(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("server not ready")


def test_the_workers_of_runtime_0_3_are_still_accepted_and_serve_alike(
    fresh_service: Path,
) -> None:
    def worker_of(server: Server) -> str:
        lines = [r.get("message", "") for r in server.log_lines()]
        return next(m.removeprefix("Using worker: ") for m in lines if "Using worker" in m)

    for chosen in ("", "fast", "threads"):
        env = {"SERVING_RUNTIME_WORKER": chosen}
        with running(fresh_service, workers=1, env=env) as server:
            assert worker_of(server) == "RuntimeWorker"
            answer = server.post("/infer", {"model_id": "linear", "features": [1, 2]})
            assert answer.json()["output"] == [5.0]


def test_idle_connections_starve_no_one_and_are_closed_after_the_header_timeout(
    proto: Server,
) -> None:
    host, port = proto.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(300)]
    try:
        for i in range(10):  # while they hold their connections, others are answered
            answer = proto.post("/infer", {"model_id": "linear", "features": [i, 0]})
            assert answer.json()["output"] == [linear("v1", i, 0)]
        for sock in idle:  # --body-timeout 1 bounds a new connection's wait for a request
            sock.settimeout(10)
            assert sock.recv(65536) == b""  # closed, without an answer to nothing
    finally:
        for sock in idle:
            sock.close()


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_deadline_not_after_it(
    proto: Server,
) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n"
        )
        first = b""
        for _ in range(200):  # 40 s at this pace: the answer must come long before
            try:
                sock.sendall(b" ")
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                continue
            break
        sock.settimeout(10)
        status, _, body = read_answer(answers)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert first == b"H"


def test_an_early_413_closes_the_connection_so_the_next_request_cannot_hang(
    proto: Server,
) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        )
        status, headers, _ = read_answer(answers)
        assert status == 413
        assert headers["connection"] == "close"
        assert closed(sock, answers)


def test_an_early_413_without_expect_closes_with_the_body_half_sent(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n" + b" " * 65536
        )
        status, headers, _ = read_answer(answers)
        assert (status, headers["connection"]) == (413, "close")
        with contextlib.suppress(OSError):  # the next request, on the same connection
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed(sock, answers)


def test_head_answers_like_get_without_a_body(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(
            b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status_line = answers.readline()
        headers = {}
        while (line := answers.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        get = httpx.get(proto.url + "/readyz")
        assert status_line.split()[1] == b"200"
        assert int(headers["content-length"]) == len(get.content)
        # No body followed the HEAD answer: the next bytes are the next answer.
        assert read_answer(answers)[:1] == (200,)


def test_http_1_1_without_host_is_a_400(proto: Server) -> None:
    with connect(proto) as (sock, answers):
        sock.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
        status, _, body = read_answer(answers)
    assert status == 400
    assert "Host" in json.loads(body)["error"]["message"]


def test_a_graceful_stop_closes_every_socket_once(tmp_path: Path) -> None:
    """uvicorn and Gunicorn each close a worker's listening sockets as it stops: closing the
    same descriptor twice logged `Error while closing socket [Errno 9]` at every stop, and
    could close another file that had taken the number meanwhile."""
    config = build_service(tmp_path / "service")
    with running(config) as server:
        answer = server.post("/infer", {"model_id": "linear", "features": [[1, 2]]})
        assert answer.status_code == 200
        # Ready means one worker serves; a worker stopped while it still boots has no server
        # to finish, so wait for both (on a busy machine Gunicorn forks them seconds apart).
        server.wait_serving(2)
    messages = [line.get("message", "") for line in server.log_lines()]
    assert messages.count("Finished server process") == 0  # uvicorn's own words carry the pid
    assert sum(m.startswith("Finished server process") for m in messages) == 2  # both workers
    assert "Shutting down: Master" in messages
    assert not [m for m in messages if "Error while closing socket" in m]
