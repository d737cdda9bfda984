"""The client side of ``invokeai-gateway``: commands that drive any gateway over HTTP.

``workflows add|ls``, ``run`` (live progress per node from SSE, images saved to a folder) and
``runs ls|cancel``; exit codes that scripts can rely on (``ExitCode``), ``--json`` output.
They use only the gateway's public HTTP API, never its database or its InvokeAI client.
"""

from app.remote_cli.exit_codes import ExitCode
from app.remote_cli.parser import add_client_commands, run_client_command

__all__ = ["ExitCode", "add_client_commands", "run_client_command"]
