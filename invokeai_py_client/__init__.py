"""A typed Python client for the InvokeAI image-generation server."""

from ._version import __version__
from .client import InvokeAIClient
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InputValidationError,
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

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InputValidationError",
    "InvokeAIClient",
    "InvokeAIError",
    "NotFoundError",
    "PermissionDeniedError",
    "RunCanceledError",
    "RunFailedError",
    "RunTimeoutError",
    "ServerError",
    "UnprocessableEntityError",
    "WorkflowValidationError",
    "__version__",
]
