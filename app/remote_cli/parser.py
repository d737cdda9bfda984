"""The client subcommands of ``invokeai-gateway``, added beside ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.remote_cli.exit_codes import CommandFailed, ExitCode

if TYPE_CHECKING:  # imported when a command runs: `serve` starts without them
    from app.remote_cli.gateway import GatewayHttp

__all__ = ["EXIT_CODES_HELP", "add_client_commands", "run_client_command"]

Handler = Callable[[argparse.Namespace, "GatewayHttp"], ExitCode]

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
EXIT_CODES_HELP = """\
exit codes:
  0  done (for run: the run succeeded and its images are saved)
  1  the run failed (the failing node is printed)
  2  usage error, unknown workflow or run, or input the gateway refused (its 422 is printed)
  3  the run was canceled
  4  the gateway is unreachable, refused the API key (401/403), is busy (429) or failing (5xx)

environment: GATEWAY_URL (default for --gateway), GATEWAY_API_KEY (sent as a bearer token)
"""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--gateway",
        default=os.environ.get("GATEWAY_URL", DEFAULT_GATEWAY),
        help=f"gateway base URL [GATEWAY_URL, default {DEFAULT_GATEWAY}]",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    return common


def _command(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = group.add_parser(
        name,
        help=help_text,
        description=help_text,
        parents=[_common()],
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(client_handler=handler)  # a function of app.remote_cli.commands
    return parser


def _add_workflows(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workflows = commands_.add_parser("workflows", help="register and list workflows")
    group = workflows.add_subparsers(dest="workflows_command", required=True)
    add = _command(group, "add", "add_workflow", "register an editor-exported workflow")
    add.add_argument("file", help="the workflow JSON file")
    _command(group, "ls", "list_workflows", "list the registered workflows")


def _add_run(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(
        commands_, "run", "run_workflow", "run a workflow, show its progress, save images"
    )
    run.add_argument("workflow", help="the workflow's id or name")
    run.add_argument(
        "-i",
        "--input",
        action="append",
        metavar="KEY=VALUE",
        help="an input by index or label; @path uploads a local image for an image input",
    )
    run.add_argument("--out", default=".", help="folder for the output images (default: .)")
    run.add_argument("--board", help="board id for the output images")
    run.add_argument("--detach", action="store_true", help="print the run id and return at once")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_runs(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = commands_.add_parser("runs", help="list and cancel runs")
    group = runs.add_subparsers(dest="runs_command", required=True)
    ls = _command(group, "ls", "list_runs", "list runs, newest first")
    ls.add_argument("--workflow", help="only runs of this workflow (id or name)")
    ls.add_argument("--status", action="append", help="only this status (repeatable)")
    ls.add_argument("--limit", type=int, default=20, help="runs per page (default 20)")
    ls.add_argument("--cursor", help="the next page, as printed after the last one")
    cancel = _command(group, "cancel", "cancel_runs", "cancel runs")
    cancel.add_argument("run_ids", nargs="+", metavar="RUN_ID")


def add_client_commands(commands_: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``workflows``, ``run`` and ``runs`` to the parser's subcommands."""
    _add_workflows(commands_)
    _add_run(commands_)
    _add_runs(commands_)


def run_client_command(args: argparse.Namespace) -> int:
    """Run the chosen client command against ``--gateway``; its exit code."""
    from app.remote_cli import commands
    from app.remote_cli.gateway import GatewayHttp

    handler: Handler = getattr(commands, args.client_handler)
    api_key = os.environ.get("GATEWAY_API_KEY") or None
    try:
        with GatewayHttp(args.gateway, api_key, timeout=args.timeout) as gateway:
            return int(handler(args, gateway))
    except CommandFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)  # noqa: T201
        return int(exc.code)
    except KeyboardInterrupt:
        return 130
