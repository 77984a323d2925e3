"""A client that pipelines requests without reading its answers holds one read's worth of them.

The runtime's HTTP protocol, on uvicorn's own server in this process over a real socket, on
uvloop as a worker runs it: the test looks at the connection between the loop's turns, so it
waits for events, never for time.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
import uvloop

from serving_runtime.http._protocol import LimitedProtocol, Limits, protocol_for

REQUESTS = 500
REQUEST = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


async def livez(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    head = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": b"{}"})


async def pipelined() -> None:
    http = protocol_for(Limits(10.0, 4094, 100, 8190))
    config = uvicorn.Config(livez, http=http, lifespan="off", log_level="warning")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as Server.serve sets it
    listener = socket.create_server(("127.0.0.1", 0))
    await server.startup(sockets=[listener])
    try:
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        writer.write(REQUEST * REQUESTS)  # a few kilobytes: one read of the server's
        await writer.drain()
        while server.server_state.total_requests < 3:  # three answered, the rest queued
            await asyncio.sleep(0)
        (connection,) = server.server_state.connections
        assert isinstance(connection, LimitedProtocol)
        assert connection.pipeline, "the requests of that one read are queued"
        # uvicorn reads again after every answer: here not while any request waits.
        assert not connection.transport.is_reading()

        answered = 0
        while answered < REQUESTS:
            line = await reader.readline()
            assert line.startswith(b"HTTP/1.1 200"), line
            while (await reader.readline()) != b"\r\n":
                pass
            assert await reader.readexactly(2) == b"{}"
            answered += 1
        # Every request was answered, and the connection reads again for the next ones.
        while not connection.transport.is_reading():
            await asyncio.sleep(0)
        writer.write(REQUEST)
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await server.shutdown(sockets=[listener])
        listener.close()


def test_a_pipelining_client_is_read_no_further_until_its_queued_requests_start() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(pipelined())
