"""``WorkflowHandle``: a workflow's typed inputs, and its runs on the server.

The handle is a thin shell: input discovery, graph building and output mapping are the pure
functions of ``inputs``, ``graph`` and ``outputs``; following a run is ``queue.run``. Each
submission gets its own ``WorkflowRun``; the methods that take no run act on the latest one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._portal import sync_twin
from ..events.models import EventsResyncEvent
from ..exceptions import InvokeAIError
from ..fields.base import IvkField
from ..queue.from_events import CompletedNodes
from ..queue.models import IvkJob
from ..queue.run import (
    RECHECK_INTERVAL,
    EventCallback,
    RunWatcher,
    WorkflowRun,
    start_pump,
    status_event_from_job,
    wait_run,
)
from .definition import WorkflowDefinition
from .graph import build_batch, build_graph
from .index_map import (
    IndexMapReport,
    compare_index_maps,
    read_index_map,
    write_index_map,
)
from .inputs import discover_inputs
from .outputs import OutputImages, OutputValue, map_output_values, map_outputs_to_images
from .typed_inputs import IvkWorkflowInput, build_inputs, input_problem

if TYPE_CHECKING:
    from ..client import InvokeAIClient
    from ..dnn_model.sync import ModelSyncReport
    from ..events.session import Subscription
    from ..fields.schema import InvocationSchemas

__all__ = ["DEFAULT_ORIGIN", "IvkWorkflowInput", "WorkflowHandle", "build_inputs"]

DEFAULT_ORIGIN = "invokeai_py_client"


class WorkflowHandle:
    """A workflow bound to a client: set its inputs, submit it, follow its runs.

    Example:
        >>> wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_file(path))
        >>> wf.get_input_value(0).value = 128
        >>> wf.submit_sync()
        >>> job = wf.wait_for_completion_sync(timeout=60)
        >>> wf.map_outputs_to_images(job)[0].image_names
        ['3f2a...png']
    """

    def __init__(
        self,
        client: InvokeAIClient,
        definition: WorkflowDefinition,
        schemas: InvocationSchemas | None,
    ) -> None:
        self._client = client
        self._portal = client._portal
        self._definition = definition
        self._schemas = schemas
        self._inputs = build_inputs(discover_inputs(definition), schemas)
        self._runs: list[WorkflowRun] = []
        self.origin = DEFAULT_ORIGIN
        self.destination: str | None = None

    @property
    def client(self) -> InvokeAIClient:
        """The client this handle sends its runs through (e.g. to enqueue a built body)."""
        return self._client

    @property
    def definition(self) -> WorkflowDefinition:
        """The workflow this handle runs (replaced, never mutated, by ``sync_dnn_model``)."""
        return self._definition

    @property
    def runs(self) -> list[WorkflowRun]:
        """Every submission of this handle, oldest first."""
        return list(self._runs)

    @property
    def latest_run(self) -> WorkflowRun | None:
        return self._runs[-1] if self._runs else None

    # -- inputs ---------------------------------------------------------------------------

    def list_inputs(self) -> list[IvkWorkflowInput]:
        """The inputs in form order (index 0 first)."""
        return list(self._inputs)

    def get_input(self, index: int) -> IvkWorkflowInput:
        """The input at ``index``.

        Raises:
            IndexError: no input has that index.
        """
        if not 0 <= index < len(self._inputs):
            raise IndexError(
                f"no input {index}: this workflow has {len(self._inputs)} inputs "
                f"(0..{len(self._inputs) - 1})"
            )
        return self._inputs[index]

    def get_input_value(self, index: int) -> IvkField[Any]:
        """The live typed field of input ``index``; set it with ``field.value = ...``."""
        return self.get_input(index).field

    def set_input_value(self, index: int, value: Any) -> None:
        """Set input ``index``.

        Raises:
            InputValidationError: the value does not fit (names the index and label).
        """
        self.get_input(index).field.value = value

    def validate_inputs(self) -> list[str]:
        """Problems with the current values (required inputs without one, bad values)."""
        return [
            f"input {inp.input_index} '{inp.label}': {problem}"
            for inp in self._inputs
            if (problem := input_problem(inp)) is not None
        ]

    def _check_inputs(self) -> None:
        for inp in self._inputs:
            problem = input_problem(inp)
            if problem is not None:
                raise inp.field.error(problem)

    def _values(self) -> dict[tuple[str, str], Any]:
        values = {}
        for inp, slot_value in zip(self._inputs, self._file_values(), strict=True):
            if inp.fed_by_edge:
                continue
            if inp.field.is_set() or slot_value is not None:
                values[(inp.node_id, inp.field_name)] = inp.field.to_api()
        return values

    def _file_values(self) -> list[Any]:
        nodes = self._definition.nodes_by_id()
        out = []
        for inp in self._inputs:
            data = (nodes.get(inp.node_id) or {}).get("data") or {}
            out.append(((data.get("inputs") or {}).get(inp.field_name) or {}).get("value"))
        return out

    def preview(self, *, batch_id: str | None = None) -> dict[str, Any]:
        """The ``enqueue_batch`` body a submit would send now (nothing is sent).

        Raises:
            InputValidationError: an input lacks a required value.
            WorkflowValidationError: the workflow cannot be sent (names node and reason).
        """
        self._check_inputs()
        values = self._values()
        known = self._schemas.node_types if self._schemas else None
        graph = build_graph(self._definition, values, known_node_types=known)
        return build_batch(
            self._definition,
            graph,
            batch_id=batch_id or str(uuid.uuid4()),
            origin=self.origin,
            destination=self.destination,
            values=values,
        )

    def export_input_index_map(self, path: str | Path) -> Path:
        """Write which input sits at which index (keyed by node id and field name)."""
        entries = [inp.index_entry() for inp in self._inputs]
        return write_index_map(path, entries, workflow_name=self._definition.name or "")

    def verify_input_index_map(self, path: str | Path) -> IndexMapReport:
        """Compare the current inputs with a map written by ``export_input_index_map``."""
        current = [inp.index_entry() for inp in self._inputs]
        return compare_index_maps(read_index_map(path), current)

    # -- runs -----------------------------------------------------------------------------

    async def _enqueue(self, *, subscribe: bool) -> tuple[WorkflowRun, Subscription | None]:
        batch_id = str(uuid.uuid4())
        body = self.preview(batch_id=batch_id)
        run = WorkflowRun(batch_id)
        if not body["batch"].get("data"):  # one queue item: its events can tell its results
            run.completed_nodes = CompletedNodes.of_graph(body["batch"]["graph"])
        sub = None
        if subscribe:
            # Subscribed before the POST, by the batch id we minted: nothing can be missed.
            sub = (await self._client.event_hub()).subscribe(batch_id=batch_id)
        try:
            run.enqueue = await self._client.queue_repo.aenqueue_batch(body)
            if not run.enqueue.item_ids:
                raise InvokeAIError(f"the queue accepted no item of batch {batch_id} (full?)")
        except BaseException:
            if sub is not None:
                sub.close()
            raise
        run.item_id = run.enqueue.item_ids[0]
        if sub is not None:
            sub.add_item_ids(run.item_ids)
        self._runs.append(run)
        return run, sub

    async def submit(
        self,
        subscribe_events: bool = True,
        on_invocation_started: EventCallback | None = None,
        on_invocation_progress: EventCallback | None = None,
        on_invocation_complete: EventCallback | None = None,
        on_invocation_error: EventCallback | None = None,
        on_status_changed: EventCallback | None = None,
    ) -> WorkflowRun:
        """Enqueue the workflow with the current input values.

        With ``subscribe_events`` the run is followed in the background from the moment it is
        enqueued, and each callback gets the events of its kind as dicts (sync or async
        callables). Every call makes a new run; waiting acts on the latest. With
        ``submit_sync`` the callbacks run on the client's background thread.

        Returns:
            The run: ``batch_id``, ``item_id``, ``item_ids``, ``status``.

        Raises:
            InputValidationError: an input lacks a required value.
            WorkflowValidationError: the workflow cannot be sent.
            UnprocessableEntityError: the server refused the graph.
        """
        run, sub = await self._enqueue(subscribe=subscribe_events)
        if sub is not None:
            callbacks: Mapping[str, EventCallback | None] = {
                "invocation_started": on_invocation_started,
                "invocation_progress": on_invocation_progress,
                "invocation_complete": on_invocation_complete,
                "invocation_error": on_invocation_error,
                "queue_item_status_changed": on_status_changed,
            }
            start_pump(run, self._client, sub, callbacks)
        return run

    submit_sync = sync_twin(submit)

    def _run_or_latest(self, run: WorkflowRun | None) -> WorkflowRun:
        chosen = run or self.latest_run
        if chosen is None:
            raise InvokeAIError("nothing was submitted from this workflow handle yet")
        return chosen

    async def wait_for_completion(
        self, timeout: float | None = None, *, run: WorkflowRun | None = None
    ) -> IvkJob:
        """Wait until the (latest) run ends and return its queue item.

        Raises:
            RunTimeoutError: it did not end within ``timeout`` seconds.
            RunFailedError: it failed (the server's error type and message, failing node).
            RunCanceledError: it was canceled.
        """
        return await wait_run(self._run_or_latest(run), self._client, timeout)

    wait_for_completion_sync = sync_twin(wait_for_completion)

    async def submit_sync_monitor_async(self) -> AsyncIterator[dict[str, Any]]:
        """Submit, then yield the run's events as dicts (with ``event_type``) until it ends.

        The last event is the terminal ``queue_item_status_changed``.
        """
        run, sub = await self._enqueue(subscribe=True)
        assert sub is not None
        watcher = RunWatcher(run, self._client)
        try:
            while not run.finished:
                event = await sub.get(timeout=RECHECK_INTERVAL)
                ended = await watcher.recheck() if event is None else await watcher.observe(event)
                if event is not None and not isinstance(event, EventsResyncEvent):
                    yield event.to_dict()
                elif ended and run.job is not None:
                    yield status_event_from_job(run.job)
        finally:
            sub.close()

    async def acancel(self, run: WorkflowRun | None = None) -> IvkJob:
        """Cancel the (latest) run."""
        chosen = self._run_or_latest(run)
        assert chosen.item_id is not None
        return await self._client.queue_repo.acancel_item(chosen.item_id)

    cancel = sync_twin(acancel)

    # -- outputs and models ---------------------------------------------------------------

    def _job_or_latest(self, queue_item: IvkJob | Mapping[str, Any] | None) -> IvkJob:
        if queue_item is None:
            job = self._run_or_latest(None).job
            if job is None:
                raise InvokeAIError("the latest run has not finished yet")
            return job
        return queue_item if isinstance(queue_item, IvkJob) else IvkJob.model_validate(queue_item)

    def map_outputs_to_images(
        self, queue_item: IvkJob | Mapping[str, Any] | None = None
    ) -> list[OutputImages]:
        """The images of each output node of a finished item (the latest run's by default)."""
        return map_outputs_to_images(self._definition, self._job_or_latest(queue_item))

    def map_output_values(
        self, queue_item: IvkJob | Mapping[str, Any] | None = None
    ) -> list[OutputValue]:
        """The non-image results (strings, numbers, ...) of each node of a finished item."""
        return map_output_values(self._definition, self._job_or_latest(queue_item))

    async def async_dnn_model(self) -> ModelSyncReport:
        """Point the workflow's model references at installed models (key, hash, name, base).

        The handle switches to a rewritten copy of its definition; the original object is not
        changed. Model inputs take the resolved identifiers.
        """
        from ..dnn_model.sync import resolve_model_references

        installed = await self._client.dnn_model_repo.alist_models()
        new_dict, report = resolve_model_references(self._definition.to_dict(), installed)
        self._definition = WorkflowDefinition.from_dict(new_dict)
        by_key = {(inp.node_id, inp.field_name): inp for inp in self._inputs}
        file_values = dict(zip(by_key, self._file_values(), strict=True))
        for changed in report.changed:
            inp = by_key.get((changed.node_id, changed.field))
            if inp is not None:
                inp.field.value = file_values[(changed.node_id, changed.field)]
        return report

    sync_dnn_model = sync_twin(async_dnn_model)
