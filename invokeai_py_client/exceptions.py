"""The one exception tree of the client.

::

    InvokeAIError
    ├── APIConnectionError            the server could not be reached
    │   └── APITimeoutError           a request or connection timed out
    ├── APIResponseValidationError    a 2xx answer whose body is not what the API promises
    ├── APIStatusError                the server answered with a 4xx/5xx status
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── UnprocessableEntityError  422 (``detail`` carries pydantic's error list)
    │   └── ServerError               5xx
    ├── WorkflowValidationError       a workflow file is broken (``problems`` lists why)
    ├── InputValidationError          a value does not fit an input (names index and label)
    ├── RunTimeoutError               waiting for a run took longer than asked
    ├── RunFailedError                the server ran the item and it failed
    ├── RunCanceledError              the item was canceled before it finished
    └── InvalidWebhookSignatureError  a webhook's Standard Webhooks signature does not verify

Foreign exceptions (httpx, socketio) are translated in one place, ``_http.map_transport_errors``,
and kept as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InputValidationError",
    "InvalidWebhookSignatureError",
    "InvokeAIError",
    "NotFoundError",
    "PermissionDeniedError",
    "RunCanceledError",
    "RunFailedError",
    "RunTimeoutError",
    "ServerError",
    "UnprocessableEntityError",
    "WorkflowValidationError",
]


class InvokeAIError(Exception):
    """Root of every error this package raises on purpose."""


class APIConnectionError(InvokeAIError):
    """The server could not be reached (refused, reset, DNS, TLS)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError):
    """A request did not get an answer in time."""


class APIResponseValidationError(InvokeAIError):
    """A success status with a body that is not the JSON the API describes.

    Seen when a path falls through to InvokeAI's web UI, which answers unknown paths with
    its HTML page and a 200.
    """

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(InvokeAIError):
    """The server answered with an error status; keeps the response and its body."""

    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.body = body

    @property
    def detail(self) -> Any:
        """The ``detail`` member of a FastAPI error body, or the whole body."""
        if isinstance(self.body, dict) and "detail" in self.body:
            return self.body["detail"]
        return self.body


class BadRequestError(APIStatusError):
    """400."""


class AuthenticationError(APIStatusError):
    """401: missing, wrong or expired credentials."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404."""


class ConflictError(APIStatusError):
    """409."""


class UnprocessableEntityError(APIStatusError):
    """422: the server's validation refused the body; ``detail`` lists where."""


class ServerError(APIStatusError):
    """5xx."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific ``APIStatusError`` subclass for a status code."""
    if status_code >= 500:
        return ServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)


class WorkflowValidationError(InvokeAIError, ValueError):
    """A workflow file cannot be used; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid workflow: " + "; ".join(problems))
        self.problems = problems


class InputValidationError(InvokeAIError, ValueError):
    """A value does not fit a workflow input.

    The message always names the input's index and label, and the node and field it feeds,
    so a caller can point at the exact form entry.
    """

    def __init__(
        self,
        reason: str,
        *,
        index: int | None = None,
        label: str | None = None,
        node_id: str | None = None,
        field_name: str | None = None,
    ) -> None:
        where = []
        if index is not None:
            where.append(f"input {index}")
        if label:
            where.append(f"'{label}'")
        if node_id is not None and field_name is not None:
            where.append(f"(node {node_id}, field {field_name})")
        prefix = " ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)
        self.reason = reason
        self.index = index
        self.label = label
        self.node_id = node_id
        self.field_name = field_name


class RunTimeoutError(InvokeAIError, TimeoutError):
    """Waiting for a queue item took longer than the caller allowed."""

    def __init__(self, message: str, *, item_id: int | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id


class RunFailedError(InvokeAIError):
    """The queue item failed on the server; carries the server's own account of why."""

    def __init__(
        self,
        *,
        item_id: int | None,
        error_type: str | None,
        error_message: str | None,
        error_traceback: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> None:
        where = f" at node {node_id}" if node_id else ""
        if node_type:
            where += f" ({node_type})"
        super().__init__(
            f"queue item {item_id} failed{where}: "
            f"{error_type or 'error'}: {error_message or '(no message from the server)'}"
        )
        self.item_id = item_id
        self.error_type = error_type
        self.error_message = error_message
        self.error_traceback = error_traceback
        self.node_id = node_id
        self.node_type = node_type


class RunCanceledError(InvokeAIError):
    """The queue item was canceled before it finished."""

    def __init__(self, message: str, *, item_id: int | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id


class InvalidWebhookSignatureError(InvokeAIError, ValueError):
    """A received webhook is not signed by any accepted secret, or its timestamp is off."""
