"""``client.workflow_repo``: turn a workflow definition into a runnable handle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._portal import sync_twin
from ..exceptions import APIConnectionError, APIStatusError, WorkflowValidationError
from .definition import WorkflowDefinition
from .handle import WorkflowHandle

if TYPE_CHECKING:
    from ..client import InvokeAIClient
    from ..fields.schema import InvocationSchemas

__all__ = ["WorkflowRepository"]


def _as_definition(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
) -> WorkflowDefinition:
    if isinstance(definition, WorkflowDefinition):
        return definition
    if isinstance(definition, str | Path):
        return WorkflowDefinition.from_file(definition)
    return WorkflowDefinition.from_dict(definition)


def _node_types(definition: WorkflowDefinition) -> frozenset[str]:
    types = set()
    for node in definition.nodes:
        data = node.get("data") if node.get("type") == "invocation" else None
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            types.add(data["type"])
    return frozenset(types)


def _checked(
    definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
) -> tuple[WorkflowDefinition, frozenset[str]]:
    """The definition, refused when broken, and the node types it needs schemas for."""
    defn = _as_definition(definition)
    problems = defn.validate_workflow()
    if problems:
        raise WorkflowValidationError(problems)
    return defn, _node_types(defn)


class WorkflowRepository:
    """Creates ``WorkflowHandle`` objects, typed from the server's invocation schemas."""

    def __init__(self, client: InvokeAIClient) -> None:
        self._client = client
        self._portal = client._portal
        self._schemas: InvocationSchemas | None = None
        # Types the server was found not to have (see load_invocation_schemas): a workflow
        # naming one is typed from its file without asking the server again.
        self._absent: frozenset[str] = frozenset()

    async def aget_schemas(self, require: Iterable[str] = ()) -> InvocationSchemas | None:
        """The server's invocation schemas (cached), or None when the server cannot say.

        Args:
            require: node types the caller needs; a cached copy lacking one is refreshed,
                unless a fresh download already showed the server does not have it.
        """
        needed = frozenset(require)
        cached = self._cached(needed)
        if cached is not None:
            return cached
        from ..fields.schema import load_invocation_schemas

        try:
            schemas = await load_invocation_schemas(self._client._http, require=needed)
        except (APIConnectionError, APIStatusError):
            # No server (or no schema route): inputs fall back to the file's own values.
            return self._schemas
        if schemas is not self._schemas:
            self._schemas, self._absent = schemas, frozenset()
        # The loader returns a copy lacking a required type only when a fresh download
        # of this server version lacked it too.
        self._absent |= needed - schemas.node_types
        return schemas

    get_schemas = sync_twin(aget_schemas)

    def _cached(self, needed: frozenset[str]) -> InvocationSchemas | None:
        """The schemas in memory if they have every needed type not known to be absent."""
        schemas = self._schemas
        if schemas is not None and needed - self._absent <= schemas.node_types:
            return schemas
        return None

    async def acreate_workflow(
        self, definition: WorkflowDefinition | Mapping[str, Any] | str | Path
    ) -> WorkflowHandle:
        """A handle to set the inputs of a workflow and run it.

        Inputs are typed from the server's schema when the server is reachable, else from
        the values in the file.

        Args:
            definition: a ``WorkflowDefinition`` (or a workflow dict, or a file path).

        Raises:
            WorkflowValidationError: the workflow is broken (its ``problems`` say how).

        Example:
            >>> wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_file(p))
            >>> wf.list_inputs()[0].label
            'Width'
        """
        defn, needed = _checked(definition)
        return await self._ahandle(defn, needed)

    def create_workflow(
        self, definition: WorkflowDefinition | Mapping[str, Any] | str | Path
    ) -> WorkflowHandle:
        """Blocking form of ``acreate_workflow``: the same arguments, result and errors.

        Example:
            >>> wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_file(p))
        """
        defn, needed = _checked(definition)
        cached = self._cached(needed)
        if cached is not None:
            # The schemas are in memory, so there is nothing to wait for: build the handle on
            # the caller's thread (handing it to the portal's loop cost more than the work).
            return WorkflowHandle(self._client, defn, cached)
        return self._portal.call(self._ahandle(defn, needed))

    async def _ahandle(self, defn: WorkflowDefinition, needed: frozenset[str]) -> WorkflowHandle:
        return WorkflowHandle(self._client, defn, await self.aget_schemas(needed))
