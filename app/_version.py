"""The gateway's version: the project's single version source."""

from __future__ import annotations

from invokeai_py_client import __version__

__all__ = ["gateway_version"]


def gateway_version() -> str:
    """The version string shown in the OpenAPI document."""
    return __version__
