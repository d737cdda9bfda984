"""Exit codes of the client commands that scripts can rely on, and the error carrying one."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CommandFailed", "ExitCode"]


class ExitCode(IntEnum):
    """What a client command's exit status means (documented in ``invokeai-gateway run -h``)."""

    OK = 0  # the command did what it was asked; for ``run``: the run succeeded
    RUN_FAILED = 1  # the run ended failed (the failing node is printed)
    BAD_INPUT = 2  # usage error, unknown workflow or run, or the gateway refused the input (4xx)
    RUN_CANCELED = 3  # the run ended canceled (by someone else, or by Ctrl-C here)
    UNAVAILABLE = 4  # the gateway is unreachable, refused the API key, or is unavailable (5xx, 429)


class CommandFailed(Exception):
    """Ends a command with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
