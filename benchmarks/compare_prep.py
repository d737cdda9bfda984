"""Issue 5, scenarios 7 and 8: workflow preparation, and the gateway's cold start.

7. For each of the 26 editor workflows InvokeAI 6.14.2 ships, and a synthetic 1,000-node one:
   create the handle, list its inputs and build the graph. Ours in this process (schemas
   already cached, as after a client's first workflow); the older client through its driver
   (create_workflow, list_inputs, and its private _convert_to_api_format, its only way to
   build a graph without sending it). The older client "works" on a file when it builds a
   graph without an error and finds the same inputs as ours; otherwise the row says why.
8. ``python -m app serve`` from process start to ``/readyz`` answering 200, polled every
   10 ms, with a fresh data folder (database created and migrated) and with the folder of the
   previous start; then its resident memory after 3 s idle.
"""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from invokeai_py_client import InvokeAIClient, WorkflowDefinition
from invokeai_py_client.workflow.graph import build_graph
from tests.support.invokeai_server import free_port, shipped_workflows_dir
from tests.support.workflow_factory import chain_workflow

from ._legacy import WORK, run_driver
from .gateway_bench import ROOT, rss_mb, wait_ready


@dataclass
class Prep:
    """One workflow file prepared by one contender."""

    name: str
    nodes: int
    times: list[float] = field(default_factory=list)
    inputs: int | None = None
    error: str = ""
    refused: str = ""


def workflow_files() -> list[tuple[str, Path]]:
    """The shipped workflows, then the synthetic 1,000-node chain (written under .work/)."""
    files = [(p.stem, p) for p in sorted(shipped_workflows_dir().glob("*.json"))]
    WORK.mkdir(exist_ok=True)
    synthetic = WORK / "synthetic-1000-nodes.json"
    synthetic.write_text(json.dumps(chain_workflow(1000)))
    return [*files, ("synthetic 1,000 nodes", synthetic)]


def ours(url: str, files: list[tuple[str, Path]], repeat: int) -> list[Prep]:
    results = []
    with InvokeAIClient.from_url(url) as client:
        for name, path in files:
            data = json.loads(path.read_text())
            prep = Prep(name, len(data["nodes"]))
            try:
                definition = WorkflowDefinition.from_dict(data)
                handle = client.workflow_repo.create_workflow(definition)  # warms the cache
                prep.inputs = len(handle.list_inputs())
                build_graph(definition)
            except Exception as exc:  # the table reports what our client said
                prep.error = f"{type(exc).__name__}: {exc}"[:200]
                results.append(prep)
                continue
            for _ in range(repeat):
                start = time.perf_counter()
                handle = client.workflow_repo.create_workflow(definition)
                handle.list_inputs()
                build_graph(definition)
                prep.times.append((time.perf_counter() - start) * 1000)
            results.append(prep)
    return results


def older(url: str, files: list[tuple[str, Path]], repeat: int) -> list[Prep]:
    answer = run_driver(["prep", url, str(repeat), *(str(p) for _, p in files)])
    if "error" in answer:
        return [Prep(name, 0, error=answer["error"]) for name, _ in files]
    results = []
    for (name, path), got in zip(files, answer["workflows"], strict=True):
        nodes = len(json.loads(path.read_text())["nodes"])
        results.append(
            Prep(
                name,
                nodes,
                times=got["times"],
                inputs=got.get("inputs"),
                error=got.get("error", ""),
                refused=got.get("refused", ""),
            )
        )
    return results


def older_works(mine: Prep, theirs: Prep) -> str:
    """Empty when the older client handled the file as ours did; else what went wrong."""
    if theirs.error:
        return theirs.error
    if mine.inputs is not None and theirs.inputs != mine.inputs:
        return f"found {theirs.inputs} of {mine.inputs} inputs"
    return ""


# -- 8. cold start ---------------------------------------------------------------------------------


def cold_start(invokeai: str, data_dir: str) -> tuple[float, float]:
    """(seconds from process start to /readyz 200, resident MB after 3 s idle)."""
    port = free_port()
    command = [sys.executable, "-m", "app", "serve", "--invokeai-url", invokeai]
    command += ["--port", str(port), "--data-dir", data_dir, "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}/readyz"
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT)
    try:
        with httpx.Client(timeout=2) as http:
            ready = wait_ready(http, url, proc, every=0.01)
        took = ready - start
        time.sleep(3)
        return took, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def compile_sources() -> None:
    """Write the bytecode of the project's packages, as installing them does (pip compiles an
    installed package). A checkout under ``PYTHONDONTWRITEBYTECODE`` keeps whatever bytecode
    it has, stale for every module edited since: each start would compile those again, and
    the figure would measure the checkout's history (0.9-1.3 s against 0.83 s here)."""
    for package in ("app", "invokeai_py_client"):
        compileall.compile_dir(ROOT / package, quiet=1)


def cold_starts(invokeai: str, times: int) -> dict[str, Any]:
    """Alternates a fresh data folder with the folder of the previous start (the project's
    bytecode written first: ``compile_sources``)."""
    compile_sources()
    fresh: list[tuple[float, float]] = []
    reused: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as kept:
        cold_start(invokeai, kept)  # creates the database the "reused" starts find
        for _ in range(times):
            with tempfile.TemporaryDirectory() as new:
                fresh.append(cold_start(invokeai, new))
            reused.append(cold_start(invokeai, kept))
    return {"fresh": fresh, "reused": reused}
