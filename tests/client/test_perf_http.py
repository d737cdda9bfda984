"""The aiohttp-backed transport under ``HttpCore``, against a small local aiohttp server.

The server here is not InvokeAI: it checks what the transport does with bytes on the wire
(compression, chunking, uploads, streaming, timeouts, refused connections). The real-server
suites cover the transport with InvokeAI itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from invokeai_py_client._aiohttp import AiohttpTransport
from invokeai_py_client._http import STREAM_BUFFER_BYTES, HttpCore, is_loopback_url
from invokeai_py_client.exceptions import APIConnectionError, APITimeoutError, NotFoundError


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body_length": len(body),
            "body_head": body[:200].decode("latin-1"),
        }
    )


async def _gzipped(request: web.Request) -> web.Response:
    payload = json.dumps({"items": list(range(500))}).encode()
    return web.Response(
        body=gzip.compress(payload),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(20):
        await response.write(bytes([i]) * 10_000)
    await response.write_eof()
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({})


BIG_BODY = bytes(range(256)) * (5 * 4096) + b"tail"  # 5 MiB and 4 bytes


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=BIG_BODY, content_type="image/png")


async def _missing(request: web.Request) -> web.Response:
    return web.json_response({"detail": "no such item"}, status=404)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/api/v1/echo", _echo)
    app.router.add_get("/api/v1/gzipped", _gzipped)
    app.router.add_get("/api/v1/chunked", _chunked)
    app.router.add_get("/api/v1/slow", _slow)
    app.router.add_get("/api/v1/missing", _missing)
    app.router.add_get("/api/v1/big", _big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _core(base_url: str, timeout: float = 5.0) -> HttpCore:
    return HttpCore(
        base_url=base_url, api_prefix="/api/v1", timeout=timeout, verify=True, max_retries=0
    )


async def test_json_round_trip_with_headers_query_and_body(base_url: str) -> None:
    http = _core(base_url)
    http.token = "secret-token"
    body = await http.post_json("/echo", params={"a": "1"}, json_body={"x": [1, 2, 3]})
    await http.aclose_current()
    assert body["method"] == "POST" and body["query"] == {"a": "1"}
    assert body["headers"]["authorization"] == "Bearer secret-token"
    assert body["headers"]["content-type"] == "application/json"
    assert json.loads(body["body_head"]) == {"x": [1, 2, 3]}
    assert int(body["headers"]["content-length"]) == body["body_length"]
    # Loopback: no compression asked for.
    assert body["headers"]["accept-encoding"] == "identity"


async def test_multipart_upload_is_sent_whole(base_url: str) -> None:
    http = _core(base_url)
    data = bytes(range(256)) * 1000
    body = await http.post_json("/echo", files={"file": ("a.png", data, "image/png")})
    await http.aclose_current()
    assert body["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert body["body_length"] > len(data)
    assert int(body["headers"]["content-length"]) == body["body_length"]
    assert "transfer-encoding" not in body["headers"]


async def test_gzip_is_decoded_once(base_url: str) -> None:
    http = _core(base_url)
    body = await http.get_json("/gzipped")
    await http.aclose_current()
    assert body == {"items": list(range(500))}


async def test_chunked_body_streams_in_pieces(base_url: str) -> None:
    http = _core(base_url)
    received = bytearray()
    async with http.stream("GET", "/chunked") as response:
        async for chunk in response.aiter_bytes():
            received.extend(chunk)
    await http.aclose_current()
    assert bytes(received) == b"".join(bytes([i]) * 10_000 for i in range(20))


async def test_many_requests_reuse_the_pool(base_url: str) -> None:
    http = _core(base_url)
    answers = await asyncio.gather(
        *(http.get_json("/echo", params={"i": str(i)}) for i in range(50))
    )
    await http.aclose_current()
    assert [a["query"]["i"] for a in answers] == [str(i) for i in range(50)]


async def test_status_errors_are_ours(base_url: str) -> None:
    http = _core(base_url)
    with pytest.raises(NotFoundError, match="no such item"):
        await http.get_json("/missing")
    await http.aclose_current()


async def test_read_timeout_is_ours(base_url: str) -> None:
    http = _core(base_url, timeout=0.2)
    with pytest.raises(APITimeoutError):
        await http.get_json("/slow")
    await http.aclose_current()


async def test_refused_connection_is_ours() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = _core(f"http://127.0.0.1:{port}")
    with pytest.raises(APIConnectionError):
        await http.get_json("/echo")
    await http.aclose_current()


async def test_stream_bytes_yields_the_body_in_whole_chunks(base_url: str) -> None:
    http = _core(base_url)
    http.token = "secret-token"
    async with http.stream_bytes("/big", chunk_size=1 << 20) as (status, headers, chunks):
        received = [chunk async for chunk in chunks]
    async with http.stream_bytes("/echo") as (_, _, chunks):
        echoed = json.loads(b"".join([chunk async for chunk in chunks]))
    await http.aclose_current()
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert int(headers["content-length"]) == len(BIG_BODY)
    assert b"".join(received) == BIG_BODY
    assert [len(c) for c in received] == [1 << 20] * 5 + [4]
    assert echoed["headers"]["authorization"] == "Bearer secret-token"
    assert echoed["headers"]["accept-encoding"] == "identity"


async def test_stream_bytes_as_they_arrive(base_url: str) -> None:
    http = _core(base_url)
    async with http.stream_bytes("/big", chunk_size=None) as (status, headers, chunks):
        pieces = [chunk async for chunk in chunks]
    # A chunked body marks its chunk ends with empty reads: they are not its end.
    async with http.stream_bytes("/chunked", chunk_size=None) as (_, chunked_headers, chunks):
        chunked = [chunk async for chunk in chunks]
    await http.aclose_current()
    assert status == 200 and int(headers["content-length"]) == len(BIG_BODY)
    assert b"".join(pieces) == BIG_BODY
    assert len(pieces) > 1 and all(0 < len(p) <= STREAM_BUFFER_BYTES for p in pieces)
    assert chunked_headers["transfer-encoding"] == "chunked"
    assert b"".join(chunked) == b"".join(bytes([i]) * 10_000 for i in range(20))
    assert all(chunked)


async def test_stream_bytes_as_they_arrive_across_late_chunk_ends() -> None:
    # Each chunk's closing CRLF arrives after its data: the reader sees the chunk's end
    # only after reading the data, as an empty read that must not end the body.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for word in (b"hello", b"world"):
            writer.write(b"5\r\n" + word)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = _core(f"http://127.0.0.1:{port}")
    try:
        async with http.stream_bytes("/late", chunk_size=None) as (_, _, chunks):
            body = b"".join([chunk async for chunk in chunks])
    finally:
        await http.aclose_current()
        server.close()
        await server.wait_closed()
    assert body == b"helloworld"


async def test_stream_bytes_left_early_then_reused(base_url: str) -> None:
    http = _core(base_url)
    async with http.stream_bytes("/big", chunk_size=1000) as (_, _, chunks):
        first = await anext(chunks)
    async with http.stream_bytes("/big") as (_, _, chunks):
        whole = b"".join([chunk async for chunk in chunks])
    await http.aclose_current()
    assert first == BIG_BODY[:1000]
    assert whole == BIG_BODY


async def test_stream_bytes_missing_is_not_found(base_url: str) -> None:
    http = _core(base_url)
    with pytest.raises(NotFoundError, match="no such item") as caught:
        async with http.stream_bytes("/missing"):
            pytest.fail("a 404 must not enter the block")
    await http.aclose_current()
    assert caught.value.body == {"detail": "no such item"}


async def test_stream_bytes_refused_connection_is_ours() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = _core(f"http://127.0.0.1:{port}")
    with pytest.raises(APIConnectionError):
        async with http.stream_bytes("/big"):
            pytest.fail("a refused connection must not enter the block")
    await http.aclose_current()


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:9090", True),
        ("http://127.8.0.1", True),
        ("http://localhost:9090", True),
        ("http://[::1]:9090", True),
        ("https://invoke.example.com", False),
        ("http://192.168.1.20:9090", False),
        ("http://[2001:db8::1]", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


async def test_plain_json_request_goes_straight_through_aiohttp(base_url: str) -> None:
    # No query and no files: the hot-path form (enqueue, queue item reads), sent by aiohttp
    # directly; what reaches the server and what comes back is the same as via httpx.
    http = _core(base_url)
    http.token = "secret-token"
    plain = await http.post_json("/echo", json_body={"x": "é", "n": [1, 2]})
    via_httpx = await http.post_json("/echo", params={}, json_body={"x": "é", "n": [1, 2]})
    response = await http.request("GET", "/echo")
    await http.aclose_current()
    assert plain["method"] == "POST" and plain["query"] == {}
    assert plain["headers"]["authorization"] == "Bearer secret-token"
    assert plain["headers"]["content-type"] == "application/json"
    assert plain["headers"]["accept-encoding"] == "identity"
    assert json.loads(plain["body_head"].encode("latin-1")) == {"x": "é", "n": [1, 2]}
    assert plain["body_length"] == via_httpx["body_length"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert str(response.request.url) == f"{base_url}/api/v1/echo"
    assert response.json()["body_length"] == 0


async def test_plain_request_refused_keeps_the_connect_error_as_cause() -> None:
    # The enqueue logic tells "never sent" from "answer lost" by this cause.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = _core(f"http://127.0.0.1:{port}")
    with pytest.raises(APIConnectionError) as caught:
        await http.post_json("/echo", json_body={})
    await http.aclose_current()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_idle_connections_are_not_reused_past_the_keepalive() -> None:
    # A server that resets a kept-alive connection when a second request comes on it: what a
    # server closing an idle connection just as the client reuses it looks like. Past the
    # transport's keep-alive the client opens a new connection instead, so no request is lost.
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len(served)
        served.append(0)
        while await reader.readuntil(b"\r\n\r\n"):
            if served[connection]:  # a reused connection: reset it
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            served[connection] += 1
            body = b'{"ok": true}'
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HttpCore(
        base_url=f"http://127.0.0.1:{port}",
        api_prefix="/api/v1",
        timeout=5,
        verify=True,
        max_retries=0,
        transport=AiohttpTransport(keepalive_seconds=0.05),
    )
    try:
        assert await http.post_json("/enqueue", json_body={}) == {"ok": True}
        await asyncio.sleep(0.2)  # idle for longer than the keep-alive
        assert await http.post_json("/enqueue", json_body={}) == {"ok": True}
    finally:
        await http.aclose_current()
        server.close()
        await server.wait_closed()
    assert served == [1, 1]  # two connections, one request each
