"""Editor workflow files: the pure core (definition, inputs, graph, outputs) and its I/O shells.

``from invokeai_py_client.workflow import WorkflowDefinition, WorkflowHandle`` is the public
path; the submodules stay importable on their own.
"""

from .definition import WorkflowDefinition
from .handle import WorkflowHandle
from .index_map import IndexMapReport
from .outputs import OutputImages, OutputValue
from .repo import WorkflowRepository
from .typed_inputs import IvkWorkflowInput

__all__ = [
    "IndexMapReport",
    "IvkWorkflowInput",
    "OutputImages",
    "OutputValue",
    "WorkflowDefinition",
    "WorkflowHandle",
    "WorkflowRepository",
]
