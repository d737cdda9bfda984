"""``RelayResponse``, the ASGI response behind ``GET /images/{name}``, driven at the ASGI level.

The body source and the exit stack stand in for InvokeAI's response and its connection; the
``receive`` callables behave as uvicorn's does (the request, then nothing until the caller
disconnects). The end-to-end download runs against the real InvokeAI in
``test_images_boards_models``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.api.routes.images import RelayResponse

HEADERS = {"content-length": "12", "cache-control": "max-age=3600"}


class Upstream:
    """A body source that counts what was pulled, and an exit stack that records its close."""

    def __init__(self, chunks: list[bytes], *, then: str = "end") -> None:
        self.chunks = chunks
        self.then = then  # "end", "stall" (never another byte) or "fail"
        self.pulled = 0
        self.released = asyncio.Event()
        self.stack = contextlib.AsyncExitStack()
        self.stack.callback(self.released.set)

    async def body(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)  # as a socket read waits for its data
            self.pulled += 1
            yield chunk
        if self.then == "stall":
            await asyncio.Event().wait()
        if self.then == "fail":
            raise ConnectionResetError("InvokeAI went away")

    def response(self) -> RelayResponse:
        return RelayResponse(self.body(), self.stack, media_type="image/png", headers=HEADERS)


class Caller:
    """uvicorn's side: records what was sent; disconnects after ``leave_after`` body messages."""

    def __init__(self, leave_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave_after = leave_after
        self._gone = asyncio.Event()
        self._requested = False

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self._gone.is_set():
            return  # uvicorn drops what is sent after a disconnect (ASGI 2.3)
        self.sent.append(message)
        bodies = [m for m in self.sent if m["type"] == "http.response.body"]
        if self.leave_after is not None and len(bodies) >= self.leave_after:
            self._gone.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def relay(upstream: Upstream, caller: Caller) -> None:
    scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}
    await asyncio.wait_for(upstream.response()(scope, caller.receive, caller.send), 5)


async def test_every_chunk_is_sent_as_it_comes_with_the_upstream_length() -> None:
    upstream = Upstream([b"abcd", b"efgh", b"ijkl"])
    caller = Caller()
    await relay(upstream, caller)
    start = caller.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-length"] == b"12" and headers[b"content-type"] == b"image/png"
    assert [m["body"] for m in caller.sent[1:]] == [b"abcd", b"efgh", b"ijkl", b""]
    assert [m["more_body"] for m in caller.sent[1:]] == [True, True, True, False]
    assert upstream.released.is_set()


async def test_a_caller_leaving_stops_the_relay_and_releases_invokeai() -> None:
    upstream = Upstream([b"x" * 10] * 1000)
    caller = Caller(leave_after=2)
    await relay(upstream, caller)
    assert upstream.released.is_set()
    assert upstream.pulled < 10, "the rest of the image must not be read from InvokeAI"


async def test_a_caller_leaving_while_invokeai_stalls_releases_it_at_once() -> None:
    upstream = Upstream([b"abcd"], then="stall")
    caller = Caller(leave_after=1)
    await relay(upstream, caller)  # within wait_for's 5 s, not after a read timeout
    assert upstream.released.is_set()
    assert caller.body() == b"abcd"


async def test_invokeai_failing_mid_body_is_raised_after_the_release() -> None:
    upstream = Upstream([b"abcd"], then="fail")
    caller = Caller()
    with pytest.raises(ConnectionResetError, match="InvokeAI went away"):
        await relay(upstream, caller)
    assert upstream.released.is_set()
    assert caller.body() == b"abcd"  # no end-of-body message: the server closes the connection
    assert caller.sent[-1]["more_body"] is True


async def test_the_server_cancelling_the_response_releases_invokeai() -> None:
    upstream = Upstream([b"abcd"], then="stall")
    caller = Caller()
    scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}
    task = asyncio.ensure_future(upstream.response()(scope, caller.receive, caller.send))
    while not caller.sent[1:]:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.released.is_set()
