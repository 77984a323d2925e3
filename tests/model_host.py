"""A plain HTTP server over a folder, as a model registry's bucket serves artifacts by URI, and
one that holds its requests, as a registry in trouble does."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder and prints nothing; `served` lists the paths asked for, in order,
    once per request (an error is logged twice: its message, then its request line)."""

    served: list[str]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.served.append(self.path)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """The folder served on a free port of 127.0.0.1: its URL, and the paths asked for."""
    served: list[str] = []
    handler = type("Handler", (QuietHandler,), {"served": served})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


class HeldServer:
    """An artifact server that holds every request it gets until released, then answers
    `body` (200), or 404 without one. It counts the connections made to it."""

    def __init__(self, body: bytes | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.body = body
        self.connections = 0
        self.connected = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            self.connected.set()
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            asked = b""
            while b"\r\n\r\n" not in asked:  # the whole request read: closing sends no RST
                chunk = connection.recv(4096)
                if not chunk:
                    return
                asked += chunk
            self.release.wait()
            if self.body is None:
                answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
            else:
                head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(self.body)}\r\n\r\n"
                answer = head.encode() + self.body
            with contextlib.suppress(OSError):  # the client gave up on it meanwhile
                connection.sendall(answer)

    def close(self) -> None:
        self.release.set()
        self.listener.close()
