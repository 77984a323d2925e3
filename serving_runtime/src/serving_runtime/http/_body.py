"""Reading a request's body: within its size limit (413), its time limit (408), inflated when
sent compressed (gzip or deflate; any other encoding is a 415)."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

import orjson

from serving_runtime._errors import (
    BadRequest,
    ClientGone,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from serving_runtime._settings import HttpSettings

from ._types import BODY_ERROR, WHOLE_BODY, Message, Request

_INFLATE = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def media_type(request: Request) -> str:
    """The Content-Type's media type, lower case ("" when none was sent)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def read_body(request: Request, settings: HttpSettings) -> bytes:
    """The whole body, decoded from its Content-Encoding.

    A body over the limit is refused from its Content-Length alone when it has one (before a
    client that asked `Expect: 100-continue` sends it); a body that is not whole within the
    body timeout of the request's arrival is a 408. Either way the connection closes after
    the answer, since the rest of the body is not read (see `Request.body_read`).
    """
    limit = settings.max_body_bytes
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity" and encoding not in _INFLATE:
        raise UnsupportedMediaType(f"Content-Encoding {encoding} is not gzip or deflate")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"body of {int(length)} bytes is over the limit of {limit} bytes")
    receive = request.receive
    whole = request.scope.get("extensions", {}).get(WHOLE_BODY)
    if whole is not None and whole():  # all arrived (the usual case): no deadline to arm
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body = message.get("body", b"")
            if len(body) > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            request.body_read = True
            return _inflate(body, encoding, limit) if encoding != "identity" else body
        return await _read_rest(request, settings, message)
    return await _read_rest(request, settings, None)


async def _read_rest(request: Request, settings: HttpSettings, first: Message | None) -> bytes:
    """The body from `first` on, as it arrives, within the body timeout."""
    limit = settings.max_body_bytes
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    body = bytearray()
    receive = request.receive
    broken = request.scope.get("extensions", {}).get(BODY_ERROR)
    try:
        async with asyncio.timeout(request.arrived + settings.body_timeout - time.monotonic()):
            while True:
                message = first if first is not None else await receive()
                first = None
                if broken is not None and (why := broken()) is not None:
                    raise BadRequest(why)
                if message["type"] != "http.request":
                    raise ClientGone("the client left before it sent its whole body")
                body += message.get("body", b"")
                if len(body) > limit:
                    raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
                if not message.get("more_body", False):
                    request.body_read = True
                    break
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {settings.body_timeout:g} s"
        ) from None
    if encoding != "identity":
        return _inflate(bytes(body), encoding, limit)
    return bytes(body)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_INFLATE[encoding])
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding} data: {exc}") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest(f"body is cut short {encoding} data")
    return data


async def read_json_object(request: Request, settings: HttpSettings) -> dict[str, Any]:
    """The body as a JSON object, sent as application/json."""
    kind = media_type(request)
    if kind != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json, not {kind or 'no content type'}"
        )
    return json_object(await read_body(request, settings), "body")


def json_object(data: bytes | memoryview, what: str) -> dict[str, Any]:
    """`data` parsed as a JSON object; a BadRequest about `what` if it is not one."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return payload
