"""Driver for the older client (``invokeai-py-client`` 1.1.1), run by ITS OWN virtualenv's Python.

Not imported by the project: ``benchmarks/_legacy.py`` runs this file as a script with the
interpreter of ``benchmarks/.work/legacy-venv``, so ``import invokeai_py_client`` below is the
older client from PyPI, never ours. It uses the older client's public API as its README shows
it (``create_workflow``, ``list_inputs``, ``submit_sync``/``wait_for_completion_sync``,
``await submit``/``await wait_for_completion``), with its defaults. The one private call is
``_convert_to_api_format`` in ``prep``: the older client has no public way to build the graph
without sending it.

Times are ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux, shared by every process on the
machine), so the parent can set them against its own Socket.IO listener's clock.
Prints one JSON document on stdout.

Usage (by the parent):
    python _legacy_driver.py runs URL WORKFLOW.json sync|async N TIMEOUT
    python _legacy_driver.py prep URL REPEAT WORKFLOW.json [WORKFLOW.json ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from typing import Any

from invokeai_py_client import InvokeAIClient, WorkflowDefinition


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _handle(client: Any, data: dict[str, Any]) -> tuple[Any, str]:
    """create_workflow as a user would call it; with validate=False if the default refuses."""
    definition = WorkflowDefinition.from_dict(data)
    try:
        return client.workflow_repo.create_workflow(definition), ""
    except Exception as exc:  # the table reports what the older client said
        refused = _error(exc)
    return client.workflow_repo.create_workflow(definition, validate=False), refused


def runs_sync(client: Any, handle: Any, n: int, timeout: float) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            handle.submit_sync()
            item = handle.wait_for_completion_sync(timeout=timeout)
            out.append(
                {"item_id": handle.item_id, "start": start, "known": time.perf_counter()}
                | ({} if item.get("status") == "completed" else {"error": str(item["status"])})
            )
        except Exception as exc:
            out.append({"item_id": handle.item_id, "start": start, "error": _error(exc)})
    return out


async def runs_async(client: Any, handle: Any, n: int, timeout: float) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            await handle.submit(subscribe_events=True)
            await handle.wait_for_completion(timeout=timeout)
            out.append({"item_id": handle.item_id, "start": start, "known": time.perf_counter()})
        except BaseException as exc:  # asyncio.TimeoutError included: a run it never saw end
            out.append({"item_id": handle.item_id, "start": start, "error": _error(exc)})
    with contextlib.suppress(Exception):
        await client.disconnect_socketio()
    return out


def cmd_runs(url: str, path: str, mode: str, n: int, timeout: float) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    client = InvokeAIClient.from_url(url)
    handle, refused = _handle(client, data)
    inputs = len(handle.list_inputs())
    if mode == "sync":
        results = runs_sync(client, handle, n, timeout)
    else:
        results = asyncio.run(runs_async(client, handle, n, timeout))
    client.session.close()
    return {"refused": refused, "inputs": inputs, "runs": results}


def prep_one(client: Any, path: str, repeat: int) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    result: dict[str, Any] = {"file": path, "times": []}
    try:
        handle, result["refused"] = _handle(client, data)
        result["inputs"] = len(handle.list_inputs())
        handle._convert_to_api_format()
    except Exception as exc:
        result["error"] = _error(exc)
        return result
    definition = WorkflowDefinition.from_dict(data)
    for _ in range(repeat):
        start = time.perf_counter()
        handle = client.workflow_repo.create_workflow(definition, validate=False)
        handle.list_inputs()
        handle._convert_to_api_format()
        result["times"].append((time.perf_counter() - start) * 1000)
    return result


def cmd_prep(url: str, repeat: int, paths: list[str]) -> dict[str, Any]:
    client = InvokeAIClient.from_url(url)
    return {"workflows": [prep_one(client, path, repeat) for path in paths]}


def main(argv: list[str]) -> int:
    # The older client prints and logs as it goes; keep stdout for our one JSON document.
    real_stdout = sys.stdout
    sys.stdout = io.StringIO()
    try:
        if argv[0] == "runs":
            doc = cmd_runs(argv[1], argv[2], argv[3], int(argv[4]), float(argv[5]))
        else:
            doc = cmd_prep(argv[1], int(argv[2]), argv[3:])
    finally:
        sys.stdout = real_stdout
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
