"""Two gateway replicas on one PostgreSQL against one gateway on SQLite: dispatch and SSE.

Cluster: replicas A and B (``python -m app serve`` with ``GATEWAY_CLUSTER=1``, one fresh
PostgreSQL database from ``tests.support.postgres_server``, the default lease of 10 s and
reconcile interval of 5 s) in front of one real InvokeAI. A is started first and waited for
until its ``GET /backends`` shows the server healthy, so A holds the server's lease (checked
in the ``lease`` table) and B does not: a run POSTed to B is stored pending and B's
``NOTIFY gateway_wake`` asks A to send it. Baseline: one gateway, not clustered, on SQLite
(its default), measured in the same invocation, before the cluster.

Every run is the tiny model-free ``noise_on_blank_canvas`` at 32x32 with a fresh seed, one at
a time (the next is POSTed once the previous one's terminal event reached both readers). In
the cluster the runs alternate between A (the holder) and B (the other), ``RUNS`` each.

1. Dispatch latency, per side: from just before ``POST /workflows/{id}/runs`` to
   - the 202 answer;
   - InvokeAI's ``batch_enqueued`` for the run's batch id, seen by an independent Socket.IO
     listener (own thread and loop, ``_listener.ThreadedListener``): the run is on the queue;
   - ``run.queued`` arriving on an SSE reader (``GET /events``) of the replica POSTed to.
2. SSE delivery across replicas: one ``/events`` reader on A and one on B (threads in this
   process, stamping ``perf_counter`` when each event is parsed); for every ``run.*`` and
   ``node.*`` event of every run, the arrival on B minus the arrival on A, matched by event id.
   Baseline: two readers on the one gateway (the floor: one process writing one event to two
   streams). And each reader's delay after InvokeAI's own event seen by the listener
   (``run.queued`` after ``batch_enqueued``, ``run.started`` and ``run.succeeded`` after
   ``queue_item_status_changed`` in_progress / completed, ``node.started`` / ``node.completed``
   after ``invocation_started`` / ``invocation_complete``).

In the cluster no replica publishes its own events to its readers: each stored event does
``NOTIFY gateway_events`` on commit, and every replica (the holder too) reads the event
table in id order and publishes what it had not. So both cluster readers include a database
round trip that the baseline's do not.

Usage: ``scripts/bench replicas`` (writes ``benchmarks/replicas_results.md`` and ``.json``),
or ``python -m benchmarks.replicas_bench``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from sqlalchemy import create_engine, text

from invokeai_py_client.webhooks import generate_secret
from tests.app.live_server import free_port, gateway_process
from tests.support.invokeai_server import running_server
from tests.support.postgres_server import running_postgres

from ._listener import ThreadedListener
from ._report import Report, Row

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "tests" / "workflows" / "noise_on_blank_canvas.json"  # 0 w, 1 h, 3 seed
RUNS = 50  # per side
TERMINAL = {"run.succeeded", "run.failed", "run.canceled"}
CLUSTER_ENV = {
    "GATEWAY_CLUSTER": "1",
    "GATEWAY_LEASE_SECONDS": "10",  # the defaults, spelled out
    "GATEWAY_RECONCILE_INTERVAL": "5",
}
# SSE event -> the InvokeAI event it relays, as keys of ``_QueueListener.seen``.
SOCKETIO_OF = {
    "run.started": "in_progress",
    "run.succeeded": "completed",
    "node.started": "invocation_started",
    "node.completed": "invocation_complete",
}


# -- InvokeAI's side: an independent Socket.IO listener ----------------------------------------


class _QueueListener(ThreadedListener):
    """When InvokeAI announced each batch's enqueue, each item's status, each node's start and
    end (first arrival of each key)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.enqueued: dict[str, float] = {}  # batch id
        self.seen: dict[tuple[int, str], float] = {}  # (item id, status or event:node)
        self._cond = threading.Condition()
        self._sio.on("batch_enqueued", self._on_enqueued)
        self._sio.on("queue_item_status_changed", self._on_status)
        self._sio.on("invocation_started", self._on_started)
        self._sio.on("invocation_complete", self._on_complete)

    async def _on_enqueued(self, data: dict[str, Any]) -> None:
        now = time.perf_counter()
        with self._cond:
            self.enqueued.setdefault(str(data["batch_id"]), now)
            self._cond.notify_all()

    def _note(self, key: tuple[int, str]) -> None:
        self.seen.setdefault(key, time.perf_counter())

    async def _on_status(self, data: dict[str, Any]) -> None:
        self._note((int(data["item_id"]), str(data["status"])))

    async def _on_started(self, data: dict[str, Any]) -> None:
        self._note((int(data["item_id"]), f"invocation_started:{data['invocation_source_id']}"))

    async def _on_complete(self, data: dict[str, Any]) -> None:
        self._note((int(data["item_id"]), f"invocation_complete:{data['invocation_source_id']}"))

    def wait_enqueued(self, batch_id: str, timeout: float = 60.0) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: batch_id in self.enqueued, timeout=timeout):
                raise TimeoutError(f"no batch_enqueued for {batch_id}")
            return self.enqueued[batch_id]


# -- the gateways' side: SSE readers -----------------------------------------------------------


@dataclass
class _Arrival:
    at: float
    event: str
    run_id: str
    data: dict[str, Any]


@dataclass
class _SseReader:
    """``GET /events`` on one gateway, on a thread of its own; every event's arrival by id."""

    url: str
    by_id: dict[int, _Arrival] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)  # runs whose terminal event arrived
    cond: threading.Condition = field(default_factory=threading.Condition)
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        if not self.connected.wait(30):
            raise RuntimeError(f"no SSE stream from {self.url}")

    def _read(self) -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(timeout=None) as http,
            connect_sse(http, "GET", f"{self.url}/events") as source,
        ):
            self.connected.set()
            for sse in source.iter_sse():
                now = time.perf_counter()
                if self.stop.is_set():
                    return
                if not sse.id or not sse.event.startswith(("run.", "node.")):
                    continue
                body = json.loads(sse.data)
                with self.cond:
                    arrival = _Arrival(now, sse.event, body["run_id"], body.get("data") or {})
                    self.by_id[int(sse.id)] = arrival
                    if sse.event in TERMINAL:
                        self.ended.add(body["run_id"])
                    self.cond.notify_all()

    def wait_end(self, run_id: str, timeout: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: run_id in self.ended, timeout=timeout):
                raise TimeoutError(f"run {run_id} did not end on {self.url}")

    def events_of(self, run_id: str) -> dict[int, _Arrival]:
        with self.cond:
            return {i: a for i, a in self.by_id.items() if a.run_id == run_id}


# -- one run, measured -------------------------------------------------------------------------


@dataclass
class _Sample:
    side: str
    run_id: str
    batch_id: str
    posted: float
    answered: float
    enqueued: float
    item_id: int | None = None


def _one_run(
    http: httpx.Client,
    url: str,
    side: str,
    workflow_id: str,
    seed: int,
    listener: _QueueListener,
    readers: list[_SseReader],
) -> _Sample:
    body = {"inputs": {"0": 32, "1": 32, "3": seed}}
    posted = time.perf_counter()
    response = http.post(f"{url}/workflows/{workflow_id}/runs", json=body)
    answered = time.perf_counter()
    if response.status_code != 202:
        raise RuntimeError(f"POST run on {side}: {response.status_code} {response.text}")
    run = response.json()
    enqueued = listener.wait_enqueued(run["batch_id"])
    for reader in readers:
        reader.wait_end(run["id"])
    item_id = http.get(f"{url}/runs/{run['id']}").json()["item_id"]
    return _Sample(side, run["id"], run["batch_id"], posted, answered, enqueued, item_id)


def _ms(a: float, b: float) -> float:
    return (b - a) * 1000


def _socketio_at(listener: _QueueListener, sample: _Sample, arrival: _Arrival) -> float | None:
    """When InvokeAI announced what ``arrival`` relays, or None."""
    if arrival.event == "run.queued":
        return sample.enqueued
    kind = SOCKETIO_OF.get(arrival.event)
    if kind is None or sample.item_id is None:
        return None
    if arrival.event.startswith("node."):
        kind = f"{kind}:{arrival.data.get('node_id')}"
    return listener.seen.get((sample.item_id, kind))


@dataclass
class _Measures:
    """Samples (ms) by measure name, then by contender."""

    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, measure: str, contender: str, value: float) -> None:
        self.rows.setdefault(measure, {}).setdefault(contender, []).append(value)


POST_202 = "1a. dispatch: POST -> 202"
POST_ENQUEUED = "1b. dispatch: POST -> InvokeAI batch_enqueued (Socket.IO)"
POST_QUEUED_SSE = "1c. dispatch: POST -> run.queued on SSE of the replica posted to"
ACROSS = "2a. SSE: same event, 2nd reader - 1st reader"
AFTER_SIO = "2b. SSE: arrival after InvokeAI's Socket.IO event"
BY_EVENT = "2c. SSE after Socket.IO, by event (1st reader)"
STORED = "2d. InvokeAI's Socket.IO event -> event stored (created_at)"
TAIL = "2e. SSE: event stored (created_at) -> arrival on reader"


def _measure(
    measures: _Measures,
    listener: _QueueListener,
    sample: _Sample,
    contender: str,
    posted_reader: _SseReader,
    first: tuple[str, _SseReader],
    second: tuple[str, _SseReader],
    across: str,
    stored: dict[int, float],
) -> None:
    measures.add(POST_202, contender, _ms(sample.posted, sample.answered))
    measures.add(POST_ENQUEUED, contender, _ms(sample.posted, sample.enqueued))
    for arrival in posted_reader.events_of(sample.run_id).values():
        if arrival.event == "run.queued":
            measures.add(POST_QUEUED_SSE, contender, _ms(sample.posted, arrival.at))
    later = second[1].events_of(sample.run_id)
    for event_id, arrival in first[1].events_of(sample.run_id).items():
        if event_id in later:
            measures.add(ACROSS, across, _ms(arrival.at, later[event_id].at))
        at = _socketio_at(listener, sample, arrival)
        if at is not None:
            measures.add(BY_EVENT, f"{first[0]}: {arrival.event}", _ms(at, arrival.at))
            if event_id in stored:
                measures.add(STORED, f"{first[0].split(',')[0]}", _ms(at, stored[event_id]))
    for name, reader in (first, second):
        for event_id, arrival in reader.events_of(sample.run_id).items():
            at = _socketio_at(listener, sample, arrival)
            if at is not None:
                measures.add(AFTER_SIO, name, _ms(at, arrival.at))
            if event_id in stored:
                measures.add(TAIL, name, _ms(stored[event_id], arrival.at))


def _stored_at(database: str) -> dict[int, float]:
    """Each stored event's ``created_at`` (the gateway's clock just before its commit), on
    this process's ``perf_counter`` scale (same machine, same clock)."""
    offset = time.time() - time.perf_counter()
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, created_at FROM runevent"))
            return {int(i): _epoch(at) - offset for i, at in rows}
    finally:
        engine.dispose()


def _epoch(at: datetime | str) -> float:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


# -- the processes -----------------------------------------------------------------------------


@contextlib.contextmanager
def _gateway(data: Path, invokeai_url: str, **env: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    with gateway_process(data, invokeai_url, port, **env) as process:
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, process.poll)
            yield url, process.pid
        finally:
            process.terminate()
            with contextlib.suppress(Exception):
                process.wait(30)


def _wait_up(url: str, poll: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if poll() is not None:
            raise RuntimeError(f"the gateway at {url} exited during startup")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {url} did not start")


def _wait_healthy(url: str, timeout: float = 60) -> None:
    """Until ``GET /backends`` shows every server healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            listed = httpx.get(f"{url}/backends", timeout=5).json()["data"]
            if listed and all(b["healthy"] for b in listed):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url}: the server is not healthy")


def _lease_holders(database: str) -> list[str]:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, holder FROM lease WHERE name != '~rescue'")
            )
            return [str(holder) for _, holder in rows]
    finally:
        engine.dispose()


def _register(http: httpx.Client, url: str) -> str:
    response = http.post(f"{url}/workflows", json=json.loads(WORKFLOW.read_text()))
    response.raise_for_status()
    return str(response.json()["id"])


# -- the two set-ups ---------------------------------------------------------------------------


def _baseline(invokeai_url: str, listener: _QueueListener, measures: _Measures) -> None:
    with (
        tempfile.TemporaryDirectory() as data,
        _gateway(Path(data), invokeai_url) as (url, _),
        httpx.Client(timeout=60) as http,
    ):
        _wait_healthy(url)
        one, two = _SseReader(url), _SseReader(url)
        one.start()
        two.start()
        time.sleep(0.5)  # the streams subscribe at connect
        workflow_id = _register(http, url)
        _one_run(http, url, "single", workflow_id, 10**6, listener, [one, two])  # warm-up
        samples = [
            _one_run(http, url, "single", workflow_id, i, listener, [one, two]) for i in range(RUNS)
        ]
        one.stop.set()
        two.stop.set()
        stored = _stored_at(f"sqlite:///{Path(data) / 'gateway.db'}")
    for sample in samples:
        _measure(
            measures,
            listener,
            sample,
            "single (SQLite)",
            one,
            ("single (SQLite)", one),
            ("single (SQLite), 2nd reader", two),
            "single: 2 readers, one process",
            stored,
        )


def _cluster(invokeai_url: str, listener: _QueueListener, measures: _Measures) -> str:
    secret = generate_secret()
    with (
        running_postgres() as postgres,
        tempfile.TemporaryDirectory() as data,
        httpx.Client(timeout=60) as http,
    ):
        database = postgres.fresh_database()
        env = CLUSTER_ENV | {"GATEWAY_DATABASE_URL": database, "GATEWAY_WEBHOOK_SECRET": secret}
        with _gateway(Path(data) / "a", invokeai_url, **env) as (url_a, pid_a):
            _wait_healthy(url_a)  # A follows the server: it holds the lease
            with _gateway(Path(data) / "b", invokeai_url, **env) as (url_b, pid_b):
                _wait_healthy(url_b)  # B sees A's report in the lease
                holders = _lease_holders(database)
                if not all(f"-{pid_a}-" in h for h in holders):
                    raise RuntimeError(f"A (pid {pid_a}) does not hold the lease: {holders}")
                holder, other = _SseReader(url_a), _SseReader(url_b)
                holder.start()
                other.start()
                time.sleep(0.5)
                workflow_id = _register(http, url_a)
                sides = {"holder": (url_a, holder), "other": (url_b, other)}
                for side, (url, _) in sides.items():  # warm-up, each side
                    _one_run(http, url, side, workflow_id, 10**6, listener, [holder, other])
                samples = []
                for i in range(2 * RUNS):  # alternating
                    side = "holder" if i % 2 == 0 else "other"
                    url, _ = sides[side]
                    samples.append(
                        _one_run(http, url, side, workflow_id, i, listener, [holder, other])
                    )
                holder.stop.set()
                other.stop.set()
        stored = _stored_at(database)
    for sample in samples:
        _measure(
            measures,
            listener,
            sample,
            f"cluster, POST to {sample.side}",
            sides[sample.side][1],
            ("cluster, reader on holder", holder),
            ("cluster, reader on other", other),
            "cluster: other replica - holder",
            stored,
        )
    return f"holder A pid {pid_a}, other B pid {pid_b}; lease held by {holders[0]}"


# -- the suite ---------------------------------------------------------------------------------

NOTES = {
    ACROSS: "every run.*/node.* event of every run, matched by event id",
    AFTER_SIO: "run.queued/started/succeeded, node.started/completed",
    STORED: "the gateway's clock at insert, just before its commit",
    TAIL: "the cluster's includes NOTIFY, the tail's SELECT, publish",
}


def run(invokeai_url: str, report: Report) -> None:
    measures = _Measures()
    with _QueueListener(invokeai_url) as listener:
        _baseline(invokeai_url, listener, measures)
        who = _cluster(invokeai_url, listener, measures)
    notes = dict(NOTES)
    for measure, by_contender in sorted(measures.rows.items()):
        for contender, samples in by_contender.items():
            note = notes.pop(measure, "")
            if contender == "cluster, POST to holder" and measure == POST_202:
                note = who
            report.add(Row(f"replicas {measure}", contender, "ms", samples, note=note))


def main() -> int:
    report = Report("Replica benchmarks")
    with running_server() as invokeai_url:
        run(invokeai_url, report)
    path = report.write("replicas_results")
    print(report.markdown())
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
