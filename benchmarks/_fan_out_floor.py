"""The floor under scenario 5: one event written to N loopback sockets, with no gateway.

The gateway's fan-out cannot beat the machine it runs on. This measures what the kernel alone
costs: a process writes one 200-byte frame to each of N connected TCP sockets on loopback
(``os.write`` in a loop, ``TCP_NODELAY`` as uvicorn sets it), and readers laid out as the
scenario's (two processes, ``epoll``, one ``recv`` per ready socket) stamp its arrival. The
delay of each delivery is the arrival's stamp minus the stamp taken just before the first
write, so it holds the same parts as the scenario's figure: the writes before that socket's
turn, the kernel's loopback, and the wait for the readers' process to get a core. No event
loop, no HTTP, no database, and InvokeAI idle: nothing the gateway could remove is in it.

    .venv/bin/python -m benchmarks._fan_out_floor 1000
"""

from __future__ import annotations

import multiprocessing
import os
import select
import socket
import statistics
import sys
import time
from multiprocessing.connection import Connection

from benchmarks._epoll_readers import READER_PROCESSES, shares

FRAME_BYTES = 200
PAUSE_SECONDS = 0.05  # between events: each one meets idle readers


def _reader(port: int, count: int, events: int, results: Connection) -> None:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    poller = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    for sock in socks:
        sock.setblocking(False)
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = sock
    results.send("ready")
    delays: list[float] = []
    while len(delays) < count * events:
        for fd, _ in poller.poll():
            data = by_fd[fd].recv(1 << 16)
            now = time.perf_counter_ns()
            for frame in data.split(b"\n")[:-1]:
                delays.append((now - int(frame.split(b" ", 1)[0])) / 1e6)
    results.send(delays)


def floor_delays(readers: int, events: int = 20) -> list[float]:
    """Delivery delays (ms) of ``events`` frames, each written to ``readers`` sockets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(readers + 16)
    port = listener.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for count in shares(readers, READER_PROCESSES):
        ours, theirs = context.Pipe()
        child = context.Process(target=_reader, args=(port, count, events, theirs))
        child.start()
        pipes.append(ours)
        children.append(child)
    fds = []
    conns = []
    for _ in range(readers):
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        conns.append(conn)
        fds.append(conn.fileno())
    for pipe in pipes:
        assert pipe.recv() == "ready"
    for _ in range(events):
        stamp = time.perf_counter_ns()
        frame = str(stamp).encode() + b" " + b"x" * (FRAME_BYTES - 21) + b"\n"
        for fd in fds:
            os.write(fd, frame)
        time.sleep(PAUSE_SECONDS)
    delays: list[float] = []
    for pipe in pipes:
        delays += pipe.recv()
    for child in children:
        child.join(30)
    for conn in conns:
        conn.close()
    listener.close()
    return delays


def main(readers: int) -> None:
    delays = sorted(floor_delays(readers))
    p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
    print(f"{readers} sockets: p50 {statistics.median(delays):.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]))
