"""Knowing that a client left while its request waited for its turn to be predicted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._types import Receive


class ClientWatch:
    """The scheduler's `Watch` over an ASGI connection whose request body was read whole.

    After the body, the server's `receive()` returns only when the client disconnects (ASGI's
    `http.disconnect`): a task waits for that while the request is queued, and no longer.
    """

    __slots__ = ("_receive", "_task")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[None] | None = None

    def start(self, on_gone: Callable[[], None]) -> None:
        """Call `on_gone` when the client disconnects."""
        self._task = asyncio.get_running_loop().create_task(self._wait(on_gone))

    async def _wait(self, on_gone: Callable[[], None]) -> None:
        message = await self._receive()
        self._task = None
        if message["type"] == "http.disconnect":
            on_gone()

    def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
