"""A plain HTTP server over a folder, as a model registry's bucket serves artifacts by URI."""

from __future__ import annotations

import functools
import http.server
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
