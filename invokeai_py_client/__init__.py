"""A typed Python client for the InvokeAI image-generation server.

Example:
    >>> from invokeai_py_client import InvokeAIClient, WorkflowDefinition
    >>> client = InvokeAIClient.from_url("http://127.0.0.1:9090")
    >>> wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_file("wf.json"))
    >>> wf.set_input_value(0, "a prompt")
    >>> run = wf.submit_sync()
    >>> item = wf.wait_for_completion_sync(timeout=120)
    >>> wf.map_outputs_to_images(item)
"""

from ._version import __version__
from .board import Board, BoardHandle, BoardRepository, ImageCategory, IvkImage
from .client import InvokeAIClient
from .dnn_model import BaseModelEnum, IvkDnnModel, ModelSyncReport, ModelType
from .exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InputValidationError,
    InvalidWebhookSignatureError,
    InvokeAIError,
    NotFoundError,
    PermissionDeniedError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
    ServerError,
    UnprocessableEntityError,
    WorkflowValidationError,
)
from .fields import (
    FieldSpec,
    InvocationSchemas,
    IvkAnyField,
    IvkBoardField,
    IvkBooleanField,
    IvkBoundingBoxField,
    IvkCLIPField,
    IvkCollectionField,
    IvkColorField,
    IvkEnumField,
    IvkField,
    IvkFloatField,
    IvkImageField,
    IvkIntegerField,
    IvkLatentsField,
    IvkLoRAField,
    IvkModelIdentifierField,
    IvkSchedulerField,
    IvkStringField,
    IvkTensorField,
    IvkTransformerField,
    IvkUNetField,
    SchedulerName,
)
from .queue import IvkJob, JobStatus
from .queue.run import WorkflowRun
from .workflow import (
    IndexMapReport,
    IvkWorkflowInput,
    OutputImages,
    OutputValue,
    WorkflowDefinition,
    WorkflowHandle,
    WorkflowRepository,
)

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BaseModelEnum",
    "Board",
    "BoardHandle",
    "BoardRepository",
    "ConflictError",
    "FieldSpec",
    "ImageCategory",
    "IndexMapReport",
    "InputValidationError",
    "InvalidWebhookSignatureError",
    "InvocationSchemas",
    "InvokeAIClient",
    "InvokeAIError",
    "IvkAnyField",
    "IvkBoardField",
    "IvkBooleanField",
    "IvkBoundingBoxField",
    "IvkCLIPField",
    "IvkCollectionField",
    "IvkColorField",
    "IvkDnnModel",
    "IvkEnumField",
    "IvkField",
    "IvkFloatField",
    "IvkImage",
    "IvkImageField",
    "IvkIntegerField",
    "IvkJob",
    "IvkLatentsField",
    "IvkLoRAField",
    "IvkModelIdentifierField",
    "IvkSchedulerField",
    "IvkStringField",
    "IvkTensorField",
    "IvkTransformerField",
    "IvkUNetField",
    "IvkWorkflowInput",
    "JobStatus",
    "ModelSyncReport",
    "ModelType",
    "NotFoundError",
    "OutputImages",
    "OutputValue",
    "PermissionDeniedError",
    "RunCanceledError",
    "RunFailedError",
    "RunTimeoutError",
    "SchedulerName",
    "ServerError",
    "UnprocessableEntityError",
    "WorkflowDefinition",
    "WorkflowHandle",
    "WorkflowRepository",
    "WorkflowRun",
    "WorkflowValidationError",
    "__version__",
]
