"""uvicorn's HTTP/1.1 protocol (httptools), with the deadlines and limits it lacks.

uvicorn parses, keeps connections alive, pipelines and answers `Expect: 100-continue`; what it
does not do, measured against this runtime's tests (docs/design.md has the figures):

- bound the time to send a request's headers, or to send anything at all on a new connection
  (a client that opens connections and sends nothing, or trickles its headers, holds them
  for ever): here a request's headers must be whole within the header timeout, a 408 if some
  came, a silent close if none did;
- bound the request line and the headers (httptools buffers any size): 414 and 431, with
  Gunicorn's `limit_request_*` settings;
- answer protocol errors in the runtime's JSON error shape (uvicorn's are plain text), after
  the answers to the requests before the bad one; a body that breaks (a malformed chunk) is
  the app's 400 at once, not a 408 at the body's deadline;
- read a connection's next bytes only once every request parsed from it has started: uvicorn
  reads again after every answer and every read of a body, and one read can hold thousands of
  small pipelined requests, each queued with its scope, so a client that pipelines without
  reading its answers grew a worker by hundreds of megabytes in seconds;
- stop gracefully without a race on idle keep-alive connections: one closed at once may be
  carrying the client's next request; here it gets a moment, and that request is answered with
  `Connection: close`;
- hand a kept-alive connection over to the pod's other workers (`hand_over`: its next answer
  says `Connection: close`, so the client reconnects, wherever the kernel sends it);
- tell the app which requests came through the admin socket, from a process of this user's
  (the scope extension `ADMIN`): the only authority for admin calls but a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from typing import Any, ClassVar, NamedTuple

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving_runtime._admin_socket import peer_may_administer

from ._types import ADMIN, BODY_ERROR, WHOLE_BODY, error_body, request_id_from

_STOP_LINGER = 2.0  # idle connections stay open this long once stopping


class Limits(NamedTuple):
    """What a connection may take before the app sees a request."""

    header_timeout: float  # seconds for a request's headers (and a new connection's first)
    request_line: int  # bytes of the request line (414 past it)
    fields: int  # headers (431 past it)
    field_size: int  # bytes of one header (431 past it)

    @property
    def header_bytes(self) -> int:
        """All the headers of a request together, at most."""
        return self.request_line + self.fields * (self.field_size + 4)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _PipelineFlow(FlowControl):
    """uvicorn's flow control of one connection, whose reading stays paused while requests
    parsed from it wait behind the one under way (pipelined)."""

    def __init__(self, transport: asyncio.Transport, pipeline: deque[Any]) -> None:
        super().__init__(transport)
        self._pipeline = pipeline

    def resume_reading(self) -> None:
        if not self._pipeline:
            super().resume_reading()


class LimitedProtocol(HttpToolsProtocol):
    """One client connection; `limits` is set on a subclass per server (see `protocol_for`)."""

    limits: ClassVar[Limits] = Limits(10.0, 4094, 100, 8190)
    admin_socket: ClassVar[str | None] = None  # the listener whose connections may call admin

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_message = False  # a request's first byte came, its last not yet
        self._headers_pending = True  # the next bytes are a request line and headers
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._handed_over = False  # the next answer is this connection's last
        self._refused = False
        self._refusal: bytes | None = None  # the error to send once earlier answers are out
        self._admin = False
        self._body_error: str | None = None  # why the body of the request under way broke

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _PipelineFlow(transport, self.pipeline)
        sock = transport.get_extra_info("socket")
        admin_socket = self.admin_socket
        if admin_socket is not None and sock is not None and sock.family == socket.AF_UNIX:
            self._admin = sock.getsockname() == admin_socket and peer_may_administer(sock)
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._stop_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the answer is out or on its way: what follows is dropped
        self._unset_keepalive_if_required()
        if self._headers_pending:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.header_bytes:
                self._refuse(_Refused(431, "header_fields_too_large", "the headers are too large"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switch here: the request is answered as it is, then the connection
            # closes (what follows it is not HTTP/1.1).
            self._refused = True
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if not isinstance(cause, _Refused):
                cause = _Refused(400, "bad_request", f"malformed request: {exc}")
            self._refuse(cause)

    # the parser's callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        if self._stop_timer is not None:  # a request came after all
            self._stop_timer.cancel()
            self._stop_timer = None
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._headers_late
            )

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.request_line:
            raise _Refused(414, "uri_too_long", "the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        if len(name) + len(value) > limits.field_size:
            raise _Refused(
                431,
                "header_fields_too_large",
                f"header {name[:64].decode('latin-1')!r} is too long",
            )
        if len(self.headers) >= limits.fields:
            raise _Refused(431, "header_fields_too_large", f"more than {limits.fields} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        cycle = self.cycle
        # The app reads a body that is already whole without arming a timer for it.
        extensions: dict[str, Any] = {
            WHOLE_BODY: lambda: not cycle.more_body,
            BODY_ERROR: lambda: self._body_error,
            ADMIN: self._admin,
        }
        self.scope["extensions"] = extensions
        if self._stopping or self._handed_over:
            cycle.keep_alive = False
        elif self.parser.get_http_version() == "1.0" and self.parser.should_keep_alive():
            cycle.keep_alive = True  # HTTP/1.0 with Connection: keep-alive (the app says so)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._headers_pending = True
        self._header_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # which may start the last request queued: read on
        if self.flow.read_paused and not self.pipeline and not self.transport.is_closing():
            self.flow.resume_reading()
        if self._refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._send_refusal()

    # handing over to the other workers, and stopping

    def hand_over(self) -> None:
        """This connection's next answer (or the one under way, if it has not started) tells the
        client to close it and reconnect: another worker may take it."""
        self._handed_over = True
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """The server stops: finish what is under way, then close."""
        self._stopping = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif not self._in_message:
            # Idle; the client's next request may already be on its way: a moment for it.
            self._unset_keepalive_if_required()
            self._stop_timer = self.loop.call_later(_STOP_LINGER, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._stop_timer = None
        if not self._in_message and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    # errors of the connection's own

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self._in_message:  # nothing at all was sent
            self.transport.close()
            return
        self._refuse(_Refused(408, "request_timeout", "the request headers did not arrive in time"))

    def _refuse(self, refused: _Refused) -> None:
        """Answer the requests before the bad one, then its error; then close."""
        self._refused = True
        cycle = self.cycle
        if self._in_message and cycle is not None and cycle.more_body:
            # Its body broke (a malformed chunk): the app, reading it, answers the error (with
            # the request's id, logged as any), rather than a 408 once its deadline passed.
            self._body_error = refused.message
            cycle.keep_alive = False
            cycle.message_event.set()
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
            return
        if refused.status != 408:
            self.logger.warning("Invalid request: %s", refused.message)
        body = error_body(refused.status, refused.code, refused.message, request_id_from(None))
        head = [
            STATUS_LINE[refused.status],
            *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        ]
        self._refusal = b"".join(head) + body
        with contextlib.suppress(RuntimeError):
            self.transport.pause_reading()
        if self.cycle is None or (self.cycle.response_complete and not self.pipeline):
            self._send_refusal()

    def _send_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None and not self.transport.is_closing():
            self.transport.write(refusal)
            self.transport.close()


def protocol_for(limits: Limits, admin_socket: str | None = None) -> type[LimitedProtocol]:
    """The protocol class of a server with these limits, and this admin socket."""
    attributes = {"limits": limits, "admin_socket": admin_socket}
    return type("LimitedProtocol", (LimitedProtocol,), attributes)
