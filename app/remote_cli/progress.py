"""A live progress bar per node, fed by a run's SSE events, drawn with rich on stderr.

A node appears when it starts, with a pulsing bar until InvokeAI reports a percentage, and is
full when it completes (red when it fails). stdout is left alone, so ``--json`` stays clean.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["NodeProgress"]

FULL = 100.0


class NodeProgress:
    """Feed it every event of one run with ``show``; use as a context manager."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self._run = self._progress.add_task("run: submitted", total=None)
        self._nodes: dict[str, TaskID] = {}

    def __enter__(self) -> NodeProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _node(self, data: dict[str, Any]) -> TaskID:
        node_id = str(data.get("node_id") or "?")
        task = self._nodes.get(node_id)
        if task is None:
            label = f"{data.get('node_type') or 'node'} [dim]{node_id[:12]}[/dim]"
            task = self._nodes[node_id] = self._progress.add_task(label, total=None)
        return task

    def show(self, event_type: str, data: dict[str, Any]) -> None:
        """Move the bars for one event (unknown event types are ignored)."""
        if event_type.startswith("run."):
            status = event_type.removeprefix("run.")
            done = status in ("succeeded", "failed", "canceled")
            total = FULL if done else None
            self._progress.update(
                self._run, description=f"run: {status}", total=total, completed=FULL if done else 0
            )
        elif event_type == "node.started":
            self._node(data)
        elif event_type == "node.progress":
            percentage = data.get("percentage")
            if isinstance(percentage, int | float):
                self._progress.update(self._node(data), total=FULL, completed=percentage * FULL)
        elif event_type == "node.completed":
            self._progress.update(self._node(data), total=FULL, completed=FULL)
        elif event_type == "node.failed":
            task = self._node(data)
            label = f"[red]{data.get('node_type') or 'node'} failed[/red]"
            self._progress.update(task, description=label, total=FULL)
