"""Direct writes of SSE chunks (``wire.write_direct``), on asyncio's loop and on uvloop's.

The served gateway runs on uvloop (uvicorn's default when it is installed); the other SSE
tests run on the test session's asyncio loop. Here the stream contract of test_sse_routes.py
runs again on uvloop, where the broker's writes must go straight to the socket, and the
direct write itself is checked on both loops with a real socket: bytes in order, none lost,
whatever the socket's buffer takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from app.streaming import wire
from tests.app import test_sse_routes as routes

LoopFactory = Callable[[], asyncio.AbstractEventLoop]
LOOPS: dict[str, LoopFactory] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(factory: LoopFactory, coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


# -- the write on a real socket -----------------------------------------------------------------


class _Sink(asyncio.Protocol):
    pass


async def _writer_and_peer() -> tuple[asyncio.WriteTransport, int, socket.socket]:
    """A transport on one end of a loopback TCP connection with small buffers, and the peer."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        peer.connect(server.getsockname())
        ours, _ = server.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(_Sink, ours)
    return cast(asyncio.WriteTransport, transport), ours.fileno(), peer


async def _read_all(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(peer, 1 << 16), 10)
        assert chunk, "the connection ended early"
        got += chunk
    return bytes(got)


async def _writes_in_order_with_nothing_lost() -> None:
    transport, fd, peer = await _writer_and_peer()
    # Far more than the socket takes: the rest of each frame goes to the transport's buffer.
    frames = [bytes([65 + n]) * 1_000_000 for n in range(3)]
    peer.setblocking(False)
    early = b""
    for frame in frames:
        wire.write_direct(transport, fd, frame)
        assert transport.get_write_buffer_size() > 0  # the socket did not take it all
        # The peer reads, the loop does not run: the socket has room again while the
        # transport still holds the rest of the frame, which the next frame must not overtake.
        with contextlib.suppress(BlockingIOError):
            early += peer.recv(1 << 16)
    assert early  # the first frame's start came straight from the socket
    got = early + await _read_all(peer, 3_000_000 - len(early))
    assert got == b"".join(frames)
    transport.close()
    peer.close()


async def _a_gone_peer_closes_the_transport() -> None:
    transport, fd, peer = await _writer_and_peer()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # a reset
    for _ in range(50):
        if transport.is_closing():
            break
        wire.write_direct(transport, fd, b"x" * 1000)  # never raises
        await asyncio.sleep(0.01)
    assert transport.is_closing()


@pytest.mark.parametrize("loop", LOOPS)
def test_direct_writes_keep_order_and_lose_nothing(loop: str) -> None:
    run_on(LOOPS[loop], _writes_in_order_with_nothing_lost())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_direct_write_to_a_gone_peer_closes_the_connection(loop: str) -> None:
    run_on(LOOPS[loop], _a_gone_peer_closes_the_transport())


class _TlsTransport(asyncio.Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"ssl_object": object(), "socket": socket.socket()}.get(name, default)


def test_no_direct_write_under_tls() -> None:
    transport = _TlsTransport()
    sock = transport.get_extra_info("socket")
    try:
        assert wire._socket_fd(transport) is None  # the socket's bytes must be encrypted
    finally:
        sock.close()


# -- the stream contract, served on uvloop ------------------------------------------------------


RouteTest = Callable[..., Coroutine[Any, Any, None]]
ROUTE_TESTS: dict[str, RouteTest] = {
    "follow": routes.test_follow_a_run_from_first_event_to_last,
    "slow reader": routes.test_a_reader_that_stops_reading_holds_up_no_one_and_catches_up,
    "resume mid-burst": routes.test_resume_during_a_burst_has_no_loss_and_no_repeats,
    "fan-out": routes.test_every_subscriber_gets_every_event,
    "heartbeats": routes.test_heartbeat_comments_with_a_short_ping,
    "all events, filtered": routes.test_all_events_stream_filters_by_workflow_and_resumes,
}


@pytest.mark.parametrize("name", ROUTE_TESTS)
def test_streams_on_uvloop_write_straight_to_the_socket(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = 0
    write = wire.write_direct

    def counted(transport: asyncio.WriteTransport, fd: int, data: bytes) -> None:
        nonlocal direct
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        direct += 1
        write(transport, fd, data)

    monkeypatch.setattr(wire, "write_direct", counted)
    run_on(uvloop.new_event_loop, ROUTE_TESTS[name](tmp_path))
    assert direct > 0  # the broker's writes took the direct path


def test_a_stuck_reader_is_dropped_on_uvloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_on(
        uvloop.new_event_loop,
        routes.test_a_stuck_reader_is_dropped_after_the_send_timeout(tmp_path, monkeypatch),
    )
