"""SSE readers for the fan-out scenario: raw non-blocking sockets on epoll, in processes of
their own.

The figure of scenario 5 is the delay until the bytes of an event reach each reader. With
1,000 readers, whatever a reader costs per received chunk is paid a thousand times per event
by the readers' process, on the same 2 cores as the gateway and InvokeAI; a reader that costs
much measures itself. These readers do the least a reader can: ``epoll`` says which sockets
have data, each is read with one ``recv`` and the time of that ``recv`` is kept with its
bytes (``time.perf_counter``: CLOCK_MONOTONIC on Linux, the clock of every process, so stamps
compare with the independent listener's in its own process). Parsing comes after the run.
What is left per chunk is an ``epoll`` entry, a ``recv`` and a few Python operations: the
delay counted includes them, and the wait for the readers' process to get a core.

Run by ``ReaderProcesses`` (the parent side, below): each child opens its share of the
streams, says ``ready`` once every one of them has read its first event, reads until every
stream has ended, and writes what each stream received (``[(stamp, bytes), ...]``) to a
pickle file.

    python -m benchmarks._epoll_readers HOST PORT PATH COUNT OUT.pickle
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TERMINAL_MARKS = (b"event: run.succeeded", b"event: run.failed", b"event: run.canceled")
BODY_END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body: the stream has ended
READ_SIZE = 1 << 16
DEADLINE_SECONDS = 300.0

# Processes the readers are spread over. At 1,000 readers on the loaded 2-core machine, four
# alternating rounds (2 runs each) gave p50 41, 33, 113, 44 ms with two processes against 161,
# 69, 89, 118 ms with one: noisy, but the kernel can serve two readers' processes on both cores.
READER_PROCESSES = 2

Chunks = list[tuple[float, bytes]]


def shares(count: int, processes: int) -> list[int]:
    """``count`` readers spread as evenly as can be over at most ``processes`` processes."""
    spread = [count // processes + (i < count % processes) for i in range(processes)]
    return [share for share in spread if share]  # fewer readers than processes


@dataclass
class _Stream:
    sock: socket.socket
    chunks: Chunks = field(default_factory=list)
    tail: bytes = b""
    started: bool = False  # has read its first event
    terminal: bool = False


def _open(host: str, port: int, request: bytes, count: int) -> dict[int, _Stream]:
    streams: dict[int, _Stream] = {}
    for _ in range(count):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        sock.setblocking(False)
        streams[sock.fileno()] = _Stream(sock)
    return streams


def _read(stream: _Stream) -> tuple[bool, bool]:
    """One ``recv``: (whether the stream read its first event now, whether it has ended)."""
    try:
        data = stream.sock.recv(READ_SIZE)
    except BlockingIOError:
        return False, False
    now = time.perf_counter()
    if not data:
        return False, True
    stream.chunks.append((now, data))
    scan = stream.tail + data  # markers may straddle two reads
    stream.tail = scan[-40:]
    first = not stream.started and b"\ndata:" in scan
    stream.started = stream.started or first
    stream.terminal = stream.terminal or any(m in scan for m in TERMINAL_MARKS)
    return first, stream.terminal and BODY_END in scan


def read_streams(host: str, port: int, path: str, count: int) -> list[Chunks]:
    """Open ``count`` streams of ``path``; print ``ready`` once each read its first event;
    read until all have ended. Returns what each received, stamped per ``recv``."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    streams = _open(host, port, request.encode(), count)
    poller = select.epoll()
    for fd in streams:
        poller.register(fd, select.EPOLLIN)
    waiting, open_streams = count, set(streams)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while open_streams and time.monotonic() < deadline:
        for fd, _mask in poller.poll(1.0):
            first, ended = _read(streams[fd])
            if first:
                waiting -= 1
                if not waiting:
                    print("ready", flush=True)
            if ended:
                poller.unregister(fd)
                streams[fd].sock.close()
                open_streams.discard(fd)
    poller.close()
    for fd in open_streams:
        streams[fd].sock.close()
    return [s.chunks for s in streams.values()]


class ReaderProcesses:
    """``count`` streams of one path, spread over ``processes`` reader processes."""

    def __init__(self, gateway: str, path: str, count: int, processes: int = 1) -> None:
        host, port = gateway.removeprefix("http://").rsplit(":", 1)
        self._folder = tempfile.TemporaryDirectory()
        split = shares(count, processes)
        self._outputs = [Path(self._folder.name, f"readers-{i}.pickle") for i in range(len(split))]
        command = [sys.executable, "-m", "benchmarks._epoll_readers", host, port, path]
        self._children = [
            subprocess.Popen(
                [*command, str(share), str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            for share, out in zip(split, self._outputs, strict=True)
        ]

    def wait_ready(self) -> None:
        """Return once every stream has read its first event.

        Raises:
            RuntimeError: a reader process ended before that.
        """
        for child in self._children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a reader process ended early (exit {child.wait()})")

    def results(self, timeout: float = DEADLINE_SECONDS + 30) -> list[Chunks]:
        """Wait for every stream to end; what each received."""
        got: list[Chunks] = []
        for child, out in zip(self._children, self._outputs, strict=True):
            if child.wait(timeout) != 0:
                raise RuntimeError(f"a reader process failed (exit {child.returncode})")
            got += pickle.loads(out.read_bytes())
        return got

    def close(self) -> None:
        """End reader processes still running (after a failure) and remove their files."""
        for child in self._children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        self._folder.cleanup()


def main(argv: list[str]) -> None:
    host, port, path, count, out = argv
    chunks = read_streams(host, int(port), path, int(count))
    tmp = f"{out}.{os.getpid()}"
    Path(tmp).write_bytes(pickle.dumps(chunks))
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1:])
