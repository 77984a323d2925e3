"""A bounded load generator for the tests: client threads on loopback, stopped by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Result:
    started: float
    status: int | None
    body: Any = None
    error: str | None = None


@dataclass
class Load:
    """`clients` threads posting `body(i)` to `url` until stop() (or `limit` s, whatever first)."""

    url: str
    body: Callable[[int], Any]
    clients: int = 8
    limit: float = 60.0
    keep_alive: bool = True
    results: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.limit)
        return self.results

    def _client(self, n: int) -> None:
        deadline = time.monotonic() + self.limit
        headers = {} if self.keep_alive else {"Connection": "close"}
        with httpx.Client(timeout=30, headers=headers) as client:
            i = n
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = client.post(self.url, json=self.body(i))
                    try:
                        body = response.json()
                    except ValueError:  # e.g. a proxy's own plain-text error
                        body = response.text
                    result = Result(started, response.status_code, body)
                except httpx.HTTPError as exc:
                    result = Result(started, None, error=type(exc).__name__)
                with self._lock:
                    self.results.append(result)
                i += self.clients
