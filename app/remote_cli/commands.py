"""The client commands: ``workflows add|ls``, ``run``, ``runs ls|cancel``.

Each takes the parsed arguments and a ``GatewayHttp``, prints for people (tables) or for
scripts (``--json``, one JSON document on stdout), and returns an ``ExitCode``; failures are
raised as ``CommandFailed`` and printed by the caller.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.remote_cli.exit_codes import CommandFailed, ExitCode
from app.remote_cli.gateway import GatewayHttp
from app.remote_cli.inputs import run_inputs
from app.remote_cli.progress import NodeProgress
from app.remote_cli.wire import RunInfo, WorkflowInfo

__all__ = ["add_workflow", "cancel_runs", "list_runs", "list_workflows", "run_workflow"]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RUN_EXIT = {"succeeded": ExitCode.OK, "failed": ExitCode.RUN_FAILED}
# How often a dropped event stream is resumed (by event id) before giving up.
STREAM_RETRIES = 5

# Piped into a file or another program, tables keep whole ids (rich would cut at 80 columns).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, highlight=False)


def print_json(value: Any) -> None:
    """One JSON document on stdout, for scripts."""
    print(json.dumps(value, indent=2, default=str))  # noqa: T201


def _inputs_table(workflow: dict[str, Any]) -> Table:
    table = Table("index", "label", "kind", "value", "choices / bounds", title=workflow["name"])
    for item in workflow.get("inputs", []):
        bounds = item.get("choices") or [item.get("minimum"), item.get("maximum")]
        shown = "" if bounds == [None, None] else json.dumps(bounds)
        value = item.get("value", item.get("default"))
        table.add_row(str(item["index"]), item["label"], item["type"], json.dumps(value), shown)
    return table


def add_workflow(args: argparse.Namespace, gateway: GatewayHttp) -> ExitCode:
    path = Path(args.file)
    if not path.is_file():
        raise CommandFailed(ExitCode.BAD_INPUT, f"no workflow file at {path}")
    body = gateway.add_workflow(path)
    if args.json:
        print_json(body)
    else:
        out.print(f"registered {body['name']!r} as {body['id']} (version {body['version']})")
        out.print(_inputs_table(body))
    return ExitCode.OK


def list_workflows(args: argparse.Namespace, gateway: GatewayHttp) -> ExitCode:
    body = gateway.list_workflows()
    if args.json:
        print_json(body)
        return ExitCode.OK
    table = Table("id", "name", "version", "inputs", "updated")
    for w in body["data"]:
        table.add_row(w["id"], w["name"], str(w["version"]), str(len(w["inputs"])), w["updated_at"])
    out.print(table)
    return ExitCode.OK


def _follow(gateway: GatewayHttp, run_id: str, progress: NodeProgress) -> str:
    """Show the run's events until its terminal one; its final status.

    A dropped stream is resumed after the last event id seen, so nothing is shown twice.
    """
    last_id: int | None = None
    for attempt in range(STREAM_RETRIES + 1):
        try:
            for sse in gateway.run_events(run_id, last_id):
                if sse.id:
                    last_id = int(sse.id)
                event = json.loads(sse.data) if sse.data else {}
                progress.show(sse.event, event.get("data") or {})
                if sse.event in ("run.succeeded", "run.failed", "run.canceled"):
                    return sse.event.removeprefix("run.")
        except CommandFailed:
            if attempt == STREAM_RETRIES:
                raise
        status = gateway.get_run(run_id).status  # the stream ended: is the run over?
        if status in TERMINAL_STATUSES:
            return status
        time.sleep(min(2.0**attempt * 0.25, 5.0))
    raise CommandFailed(ExitCode.UNAVAILABLE, f"lost the event stream of run {run_id}")


def _download(gateway: GatewayHttp, run: RunInfo, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for output in run.outputs:
        for image in output.images:
            target = folder / image.image_name
            gateway.download_image(image.image_name, target)
            files.append(str(target))
    return files


def _report_run(args: argparse.Namespace, run: RunInfo, files: list[str]) -> None:
    if args.json:
        print_json({"run": run.model_dump(mode="json"), "files": files})
        return
    out.print(f"run {run.id}: {run.status}")
    if run.error:
        err_ = run.error
        where = f" in node {err_.get('node_id')} ({err_.get('node_type')})"
        out.print(f"  {err_.get('error_type')}: {err_.get('error_message')}{where}")
    for output in run.outputs:
        if output.values:
            out.print(f"  {output.label or output.node_id}: {json.dumps(output.values)}")
    for path in files:
        out.print(f"  saved {path}")


def run_workflow(args: argparse.Namespace, gateway: GatewayHttp) -> ExitCode:
    workflow: WorkflowInfo = gateway.find_workflow(args.workflow)
    body: dict[str, Any] = {"inputs": run_inputs(workflow, args.input or [], gateway.upload_image)}
    if args.board:
        body["board_id"] = args.board
    run = gateway.start_run(workflow.id, body)
    if args.detach:
        print_json(run.model_dump(mode="json")) if args.json else out.print(run.id)
        return ExitCode.OK
    show = not args.quiet and not (args.json and not err.is_terminal)
    with NodeProgress(err, enabled=show) as progress:
        try:
            status = _follow(gateway, run.id, progress)
        except KeyboardInterrupt:
            gateway.cancel_run(run.id)
            err.print(f"canceled run {run.id}")
            status = _follow(gateway, run.id, progress)
    final = gateway.get_run(run.id)
    if final.status not in TERMINAL_STATUSES:  # the stream's last word came first
        final = final.model_copy(update={"status": status})
    files = _download(gateway, final, Path(args.out)) if final.status == "succeeded" else []
    _report_run(args, final, files)
    return RUN_EXIT.get(final.status, ExitCode.RUN_CANCELED)


def list_runs(args: argparse.Namespace, gateway: GatewayHttp) -> ExitCode:
    params: dict[str, Any] = {"limit": args.limit}
    if args.workflow:
        params["workflow_id"] = gateway.find_workflow(args.workflow).id
    if args.status:
        params["status"] = args.status
    if args.cursor:
        params["cursor"] = args.cursor
    page = gateway.list_runs(params)
    if args.json:
        print_json(page.model_dump(mode="json"))
        return ExitCode.OK
    table = Table("id", "workflow", "status", "created", "finished")
    for run in page.data:
        table.add_row(run.id, run.workflow_id, run.status, run.created_at, run.finished_at or "")
    out.print(table)
    if page.next_cursor:
        err.print(f"more: --cursor {page.next_cursor}")
    return ExitCode.OK


def cancel_runs(args: argparse.Namespace, gateway: GatewayHttp) -> ExitCode:
    runs = [gateway.cancel_run(run_id) for run_id in args.run_ids]
    if args.json:
        print_json([r.model_dump(mode="json") for r in runs])
    else:
        for run in runs:
            out.print(f"run {run.id}: {run.status}")
    return ExitCode.OK
