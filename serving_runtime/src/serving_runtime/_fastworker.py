"""A Gunicorn worker with one event loop per process: llhttp parses, the app runs inline.

Gunicorn's own HTTP/1 parser is pure Python and its threaded worker hands every request to a
thread and back, which together cost over ten times what the app does. This worker keeps the
master (prefork, replacement of dead workers, --timeout, signals) and replaces the rest: one
`selectors` loop accepts, reads and writes without blocking, httptools (llhttp, the C parser
uvicorn uses) parses, and the app runs in the loop as soon as a request is whole.

The body is read by the loop, never by the app: a client that trickles holds no one up, and
a body that is too big or too late is answered from what arrived (see `_Conn.on_headers_complete`
and `_Conn.expire`). Predicts run one at a time per process, so a predict that blocks on I/O
blocks its worker: `--worker threads` suits those.
"""

from __future__ import annotations

import io
import mmap
import os
import selectors
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
import orjson
from gunicorn.workers.base import Worker

from ._settings import HttpSettings

_READ_SIZE = 65536
_BACKPRESSURE = 1 << 20  # answers not yet taken by the client, past which it is not read
_STOP_LINGER = 2.0  # idle connections stay open this long once stopping, as Gunicorn's do
_TICK = 0.2  # how often deadlines are checked
_YIELD = 0.001  # how long a worker with more connections leaves a new one to the others
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})
_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}  # fmt: skip


class _Refused(Exception):
    """A request the worker answers itself, without the app: malformed or over a limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _TimedOutBody(io.RawIOBase):
    """wsgi.input of a body that did not arrive in time: reading it raises TimeoutError."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise TimeoutError("the body did not arrive in time")


class _ReadSocket:
    """The `gunicorn.socket` the app sees when the body timed out: the app bounds its read
    through it (settimeout) and stops reading on timeout (shutdown); the loop did both."""

    def settimeout(self, value: float | None) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


class _Request:
    __slots__ = (
        "answered",
        "body",
        "complete",
        "continued",
        "deadline",
        "environ",
        "expect_continue",
        "headers",
        "headers_done",
        "keep_alive",
        "timed_out",
        "too_large",
        "url",
        "version",
    )  # fmt: skip

    def __init__(self, deadline: float) -> None:
        self.environ: dict[str, Any] = {}
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.deadline = deadline  # for the headers, then for the body
        self.headers_done = False
        self.complete = False
        self.answered = False
        self.too_large = False  # answered from its headers (or first bytes); the rest dropped
        self.timed_out = False
        self.expect_continue = False
        self.continued = False
        self.keep_alive = True
        self.version = "1.1"

    @property
    def ready(self) -> bool:
        return self.complete or self.too_large or self.timed_out


class _Conn:
    """One client connection: the parser's protocol, its requests in order, unsent bytes."""

    def __init__(self, worker: FastWorker, sock: socket.socket, client: Any, server: Any) -> None:
        self.worker = worker
        self.sock = sock
        self.client = client
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Request] = deque()  # received (whole or in part), unanswered
        self.current: _Request | None = None  # the one the parser is in
        self.out = bytearray()
        self.last_active = time.monotonic()
        self.reading = True  # more requests may come
        self.finished = False  # an answer said "Connection: close": nothing follows it
        self.refusal: bytes | None = None  # the error that follows the last good answer
        self.draining = False  # answered and half-closed; what the client sends is dropped

    # httptools callbacks

    def on_message_begin(self) -> None:
        request = _Request(time.monotonic() + self.worker.body_timeout)
        self.current = request
        self.pending.append(request)

    def on_url(self, url: bytes) -> None:
        request = self.current
        assert request is not None
        request.url += url
        if len(request.url) > self.worker.cfg.limit_request_line:
            raise _Refused(414, "the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        assert request is not None
        cfg = self.worker.cfg
        if len(name) + len(value) > cfg.limit_request_field_size:
            raise _Refused(431, f"header {name[:64].decode('latin-1')!r} is too long")
        if len(request.headers) >= cfg.limit_request_fields:
            raise _Refused(431, f"more than {cfg.limit_request_fields} headers")
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None
        parser = self.parser
        request.headers_done = True
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        request.environ = environ = self.worker.environ(self, request, parser.get_method())
        request.deadline = time.monotonic() + self.worker.body_timeout
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > self.worker.max_body_bytes:
            request.too_large = True  # the app answers 413 from the length alone
        elif request.version == "1.1":
            request.expect_continue = environ.get("HTTP_EXPECT", "").lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        request = self.current
        assert request is not None
        if request.too_large:
            return
        request.body += body
        if len(request.body) > self.worker.max_body_bytes:
            # One byte past the limit tells the app, as a chunked body would; the rest is dropped.
            del request.body[self.worker.max_body_bytes + 1 :]
            request.too_large = True

    def on_message_complete(self) -> None:
        request = self.current
        assert request is not None
        request.complete = True
        self.current = None

    # events

    def on_event(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ and (self.reading or self.draining):
            self.read()

    def read(self) -> None:
        try:
            data = self.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if self.draining:  # what a client sent after its last answer: dropped, till it closes
            if not data:
                self.close()
            return
        self.last_active = time.monotonic()
        if not data:
            # The client sent all it will: answer what is whole, then close.
            self.drop_partial()
            self.reading = False
        else:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self.drop_partial()  # no protocol switch here: answer what came, then close
                self.reading = False
            except httptools.HttpParserError as exc:
                cause = exc.__context__
                if not isinstance(cause, _Refused):
                    cause = _Refused(400, f"malformed request: {exc}")
                self.refuse(cause)
        self.serve()

    def drop_partial(self) -> None:
        request = self.current
        if request is not None and self.pending and self.pending[-1] is request:
            self.pending.pop()
        self.current = None

    def refuse(self, refused: _Refused) -> None:
        """Answer the requests before the bad one, then its error; then close."""
        self.drop_partial()
        self.reading = False
        self.refusal = self.worker.error(refused.status, refused.message)

    def serve(self) -> None:
        """Answer, in order, every request that is ready; then send."""
        worker = self.worker
        pending = self.pending
        while pending and pending[0].ready and not self.finished:
            request = pending.popleft()
            more = bool(pending) or self.current is not None
            if not worker.answer(self, request, more):
                self.finished = True
                self.reading = False
        if self.finished:
            pending.clear()
        elif not pending and self.refusal is not None:
            self.out += self.refusal
            self.finished = True
        elif pending and self.reading:
            head = pending[0]
            if head.expect_continue and not head.continued and not head.body:
                head.continued = True
                self.out += _CONTINUE
        self.flush()

    def flush(self) -> None:
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent:
                del self.out[:sent]
                self.last_active = time.monotonic()
        if not self.out and (self.finished or (not self.reading and not self.pending)):
            self.linger()
            return
        self.watch()

    def watch(self) -> None:
        """Tell the selector what this connection waits for."""
        reading = (self.reading and len(self.out) < _BACKPRESSURE) or self.draining
        self.worker.watch(self, reading, bool(self.out))

    def linger(self) -> None:
        """Close after the last answer: FIN first, then drop what the client still sends for
        a moment, so that unread bytes do not make the kernel reset the answer away."""
        if self.draining:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.draining = True
        self.reading = False
        self.last_active = time.monotonic()
        self.watch()

    def expire(self, now: float) -> None:
        """Close or answer a connection whose time is up."""
        if self.draining:
            if now - self.last_active > _STOP_LINGER:
                self.close()
            return
        request = self.current
        if request is None or not self.reading:
            if now - self.last_active > self.worker.idle_timeout(self):
                self.close()
            return
        if now < request.deadline:
            return
        if not request.headers_done:
            self.refuse(_Refused(408, "the request headers did not arrive in time"))
        elif request.answered:  # a body too large, still being dropped
            self.close()
            return
        else:
            request.timed_out = True
        self.serve()

    def close(self) -> None:
        self.worker.forget(self)
        self.sock.close()


class _Shares:
    """How many connections each worker holds, in memory mapped before fork and shared.

    Every worker is woken by a new connection and the first awake takes it; a client that
    opens its connections at once (a proxy's pool, a load generator) can end up with most on
    one worker and one core. A worker holding more connections than another leaves the next
    one to it for a millisecond, then takes it if it is still there.
    """

    SLOTS = 256  # slot = worker age modulo this: live workers are far fewer

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self.SLOTS * 8)
        self._slots = memoryview(self._memory).cast("i")  # per slot: count, second written

    def publish(self, slot: int, count: int) -> None:
        self._slots[2 * slot] = count
        self._slots[2 * slot + 1] = int(time.monotonic()) or 1

    def withdraw(self, slot: int) -> None:
        self._slots[2 * slot + 1] = 0

    def least_other(self, slot: int) -> int | None:
        """The fewest connections a live worker other than `slot` holds (None: no other)."""
        now = int(time.monotonic())
        slots = self._slots
        least = None
        for index in range(0, 2 * self.SLOTS, 2):
            written = slots[index + 1]
            if written and now - written <= 2 and index != 2 * slot:
                count = slots[index]
                least = count if least is None or count < least else least
        return least


StartResponse = Callable[..., Callable[[bytes], None]]


class FastWorker(Worker):  # type: ignore[misc]
    """Gunicorn worker: one event loop, httptools parsing, the WSGI app called inline."""

    shares = _Shares()  # made on import, in the master: every worker forked shares it

    def init_process(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.conns: dict[_Conn, tuple[bool, bool]] = {}  # -> (reading, writing) watched
        self.accepting = True
        self.resume_accepting_at = 0.0  # after leaving a connection to the other workers
        self.slot = self.age % _Shares.SLOTS
        self.stopping_at = 0.0
        self._date = ("", 0)
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False  # the loop wakes on the signal's byte in Gunicorn's pipe

    # the loop

    def run(self) -> None:
        settings = getattr(self.wsgi, "settings", None)  # the app's limits, enforced here
        if not isinstance(settings, HttpSettings):
            settings = HttpSettings()
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        for listener in self.sockets:
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ, listener)
        self.selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        self.loop(lambda: self.alive)
        self.stop_accepting()
        self.stopping_at = time.monotonic()
        deadline = self.stopping_at + self.cfg.graceful_timeout
        self.loop(lambda: bool(self.conns) and time.monotonic() < deadline)
        for conn in list(self.conns):
            conn.close()
        self.selector.close()

    def loop(self, go_on: Callable[[], bool]) -> None:
        notified = ticked = 0.0
        select = self.selector.select
        while go_on():
            now = time.monotonic()
            if now - notified >= 0.5:
                self.notify()  # the master's --timeout: a predict stuck longer gets us killed
                self.shares.publish(self.slot, len(self.conns))
                notified = now
                if os.getppid() != self.ppid:
                    self.log.info("Parent changed, shutting down: %s", self)
                    self.alive = False
                    return
            timeout = _TICK if self.conns else 1.0
            if self.resume_accepting_at:
                timeout = min(timeout, max(0.0, self.resume_accepting_at - now))
            for key, mask in select(timeout):
                target = key.data
                if isinstance(target, _Conn):
                    try:
                        target.on_event(mask)
                    except Exception:  # a fault of this worker's: lose one connection only
                        self.log.exception("Error serving a connection")
                        target.close()
                elif target is None:
                    self.drain_pipe()
                else:
                    self.take(target)
            now = time.monotonic()
            if now - ticked >= _TICK:
                ticked = now
                for conn in list(self.conns):
                    conn.expire(now)
            full = len(self.conns) >= self.cfg.worker_connections
            if self.resume_accepting_at and now >= self.resume_accepting_at:
                self.resume_accepting_at = 0.0
                if self.alive and not full:
                    self.pause_accepting(False)
                    for listener in self.sockets:
                        self.accept(listener)  # what the others left after all
            elif self.accepting and full:
                self.pause_accepting(True)
            elif not (self.accepting or full or self.resume_accepting_at) and self.alive:
                self.pause_accepting(False)

    def drain_pipe(self) -> None:
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except OSError:
            pass

    def take(self, listener: socket.socket) -> None:
        least = self.shares.least_other(self.slot)
        if least is not None and len(self.conns) > least:
            self.pause_accepting(True)
            self.resume_accepting_at = time.monotonic() + _YIELD
        else:
            self.accept(listener)

    def accept(self, listener: socket.socket) -> bool:
        # One connection per wake-up: the other workers, woken too, take their share.
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:
            self.log.warning("accept failed: %s", exc)
            return False
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(self, sock, client, listener.getsockname())
        self.conns[conn] = (True, False)
        self.selector.register(sock, selectors.EVENT_READ, conn)
        self.shares.publish(self.slot, len(self.conns))
        return True

    def pause_accepting(self, pause: bool) -> None:
        for listener in self.sockets:
            if pause:
                self.selector.unregister(listener)
            else:
                self.selector.register(listener, selectors.EVENT_READ, listener)
        self.accepting = not pause

    def stop_accepting(self) -> None:
        """Take what is already queued on the listening sockets, then close them.

        The master closes its copy on SIGTERM; once every worker has closed its own, the
        kernel refuses new connections at once (a proxy retries elsewhere) instead of
        queueing them to be reset unanswered. See GracefulThreadWorker.
        """
        self.shares.withdraw(self.slot)
        for listener in self.sockets:
            if self.accepting:
                self.selector.unregister(listener)
            while self.accept(listener):
                pass
            listener.close()
        self.accepting = False

    def watch(self, conn: _Conn, reading: bool, writing: bool) -> None:
        before = self.conns.get(conn)
        if before is None or before == (reading, writing):
            return
        events = (selectors.EVENT_READ if reading else 0) | (
            selectors.EVENT_WRITE if writing else 0
        )
        if not events:
            self.selector.unregister(conn.sock)
        elif before == (False, False):
            self.selector.register(conn.sock, events, conn)
        else:
            self.selector.modify(conn.sock, events, conn)
        self.conns[conn] = (reading, writing)

    def forget(self, conn: _Conn) -> None:
        watched = self.conns.pop(conn, None)
        if watched is not None and watched != (False, False):
            self.selector.unregister(conn.sock)
        if self.alive:
            self.shares.publish(self.slot, len(self.conns))

    def idle_timeout(self, conn: _Conn) -> float:
        keepalive = float(self.cfg.keepalive)
        if not self.stopping_at:
            return keepalive
        # Stopping: a request may be on its way on an idle connection; wait a little for it.
        return min(keepalive, self.stopping_at + _STOP_LINGER - conn.last_active)

    # requests

    def environ(self, conn: _Conn, request: _Request, method: bytes) -> dict[str, Any]:
        url = request.url
        if not url.startswith(b"/"):
            parsed = httptools.parse_url(url)  # absolute form: http://host/path?query
            path, query = parsed.path or b"/", parsed.query or b""
        else:
            path, _, query = url.partition(b"?")
            query = query.partition(b"#")[0]
        server = conn.server
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "RAW_URI": url.decode("latin-1"),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
            "SERVER_NAME": str(server[0]) if isinstance(server, tuple) else str(server),
            "SERVER_PORT": str(server[1]) if isinstance(server, tuple) else "",
            "REMOTE_ADDR": conn.client[0] if isinstance(conn.client, tuple) else "",
            "REMOTE_PORT": str(conn.client[1]) if isinstance(conn.client, tuple) else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper()
            value = raw_value.decode("latin-1").strip(" \t")
            if "_" in name:
                continue  # as Gunicorn: X_Forwarded_For must not pass for X-Forwarded-For
            if name == "CONTENT-TYPE":
                key = "CONTENT_TYPE"
            elif name == "CONTENT-LENGTH":
                key = "CONTENT_LENGTH"
            else:
                key = "HTTP_" + name.replace("-", "_")
            if key in environ:
                environ[key] += "," + value
            else:
                environ[key] = value
        return environ

    def answer(self, conn: _Conn, request: _Request, more: bool) -> bool:
        """Run the app on one request and queue its answer; whether the connection stays."""
        request.answered = True
        environ = request.environ
        if request.timed_out and not request.too_large:
            environ["wsgi.input"] = io.BufferedReader(_TimedOutBody())
            environ["gunicorn.socket"] = _ReadSocket()
        else:
            environ["wsgi.input"] = io.BytesIO(request.body)
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keep_alive = (
            request.keep_alive
            and self.cfg.keepalive > 0
            and not request.timed_out
            and (self.alive or more)
        )
        status, headers, body = self.call(environ)
        conn.out += self.head(request.version, status, headers, len(body), keep_alive)
        if environ["REQUEST_METHOD"] != "HEAD":
            conn.out += body
        return keep_alive

    def call(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        try:
            result: Iterable[bytes] = self.wsgi(environ, start_response)
            try:
                written.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            status, headers = started
            for name, value in headers:
                if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                    raise ValueError(f"header {name!r} holds a line break")
            return status, headers, b"".join(written)
        except Exception:
            self.log.exception("Error handling request %s", environ.get("RAW_URI"))
            status, headers, body = self.error_parts(500, "internal error in the server")
            return status, headers, body

    def head(
        self, version: str, status: str, headers: list[tuple[str, str]], length: int,
        keep_alive: bool,
    ) -> bytes:  # fmt: skip
        lines = [f"HTTP/{version} {status}\r\n"]
        has_length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered in _HOP_BY_HOP:
                continue
            has_length = has_length or lowered == "content-length"
            lines.append(f"{name}: {value}\r\n")
        if not has_length:
            lines.append(f"Content-Length: {length}\r\n")
        lines.append(self.date())
        if not keep_alive:
            lines.append("Connection: close\r\n\r\n")
        elif version == "1.0":
            lines.append("Connection: keep-alive\r\n\r\n")
        else:
            lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def date(self) -> str:
        now = int(time.time())
        if self._date[1] != now:
            self._date = (f"Date: {formatdate(now, usegmt=True)}\r\n", now)
        return self._date[0]

    def error_parts(self, status: int, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
        # The app's error shape, for what never reached the app.
        request_id = os.urandom(16).hex()
        code = _REASONS[status].lower().replace(" ", "_")
        error = {"status": status, "code": code, "message": message, "request_id": request_id}
        headers = [("Content-Type", "application/json"), ("X-Request-Id", request_id)]
        return f"{status} {_REASONS[status]}", headers, orjson.dumps({"error": error})

    def error(self, status: int, message: str) -> bytes:
        """An answer of the worker's own, closing the connection."""
        status_line, headers, body = self.error_parts(status, message)
        if status != 408:
            self.log.warning("Invalid request: %s", message)
        return self.head("1.1", status_line, headers, len(body), False) + body
