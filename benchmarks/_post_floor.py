"""The floor under scenario 3: a POST accepted durably by the least a FastAPI service can do.

Issue 16 asks for a run in InvokeAI's queue within 1.2x of a direct ``enqueue_batch``, which
leaves the gateway a fifth of InvokeAI's own enqueue time for everything before it sends the
batch. This measures what that part costs with nothing of the gateway in it: a FastAPI app
served by uvicorn as ``serve`` runs it (uvloop, httptools, no WebSocket), in its own process,
whose one route reads the body, parses it, stamps the time (``entered``), inserts one row in a
SQLite file with the gateway's pragmas (WAL, ``synchronous=NORMAL``) on the event loop itself,
no thread hop, commits, and stamps again (``committed``). The caller is an ``httpx.Client``
as in the scenario; each sample is a stamp minus the caller's stamp before its ``post``
(``perf_counter`` is CLOCK_MONOTONIC, one clock for every process of the machine). No
routing of the gateway's, no middleware, no inputs or graph, no claim rules: what is left of
the gateway's path is above it.

    .venv/bin/python -m benchmarks._post_floor 200
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response

from benchmarks.gateway_bench import free_port, wait_ready

WARM_UP = 20


def _app(database: Path) -> FastAPI:
    connection = sqlite3.connect(database)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
        connection.execute(f"PRAGMA {pragma}")
    connection.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, workflow TEXT, inputs TEXT)")
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/workflows/{workflow_id}/runs", status_code=202)
    async def accept(workflow_id: str, request: Request) -> Response:
        inputs = json.loads(await request.body())["inputs"]
        entered = time.perf_counter()
        connection.execute(
            "INSERT INTO run (workflow, inputs) VALUES (?, ?)", (workflow_id, json.dumps(inputs))
        )
        connection.commit()
        stamps = {"entered": entered, "committed": time.perf_counter()}
        return Response(json.dumps(stamps), status_code=202, media_type="application/json")

    return app


def serve(port: int, database: Path) -> None:
    """The bare service (run in its own process by ``post_floor``)."""
    import uvicorn

    uvicorn.run(_app(database), host="127.0.0.1", port=port, log_level="warning", ws="none")


@dataclass
class PostFloor:
    """Milliseconds from the caller's ``post`` to the handler's two stamps, per call."""

    entered: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)


def post_floor(calls: int) -> PostFloor:
    """``calls`` POSTs (after a warm-up) to the bare service, one at a time."""
    port = free_port()
    got = PostFloor()
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "floor.sqlite"
        command = [
            sys.executable,
            "-m",
            "benchmarks._post_floor",
            "serve",
            str(port),
            str(database),
        ]
        server = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                wait_ready(http, "/readyz", server, every=0.02)
                for i in range(WARM_UP + calls):
                    start = time.perf_counter()
                    answer = http.post("/workflows/w/runs", json={"inputs": {"1": 2.0 + i % 7}})
                    stamps = answer.raise_for_status().json()
                    if i >= WARM_UP:
                        got.entered.append((stamps["entered"] - start) * 1000)
                        got.committed.append((stamps["committed"] - start) * 1000)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return got


def main(calls: int) -> None:
    got = post_floor(calls)
    print(
        f"bare FastAPI POST: body read after {statistics.median(got.entered):.2f} ms, "
        f"a SQLite row committed after {statistics.median(got.committed):.2f} ms ({calls} calls)"
    )


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(int(sys.argv[1]))
