"""Fast checks of the client commands' pieces (no gateway, no InvokeAI)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from app.remote_cli.exit_codes import CommandFailed, ExitCode
from app.remote_cli.gateway import problem_text
from app.remote_cli.inputs import convert_value, parse_assignment, run_inputs
from app.remote_cli.wire import WorkflowInfo
from tests.app.live_server import ROOT, free_port

# The gateway's own dependencies (the [gateway] extra): the client commands must not need them.
SERVER_ONLY = ("fastapi", "starlette", "sqlmodel", "sqlalchemy", "alembic", "uvicorn")
SERVER_ONLY += ("pydantic_settings", "sse_starlette")


def test_client_commands_run_without_the_gateway_dependencies() -> None:
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in SERVER_ONLY)
    code = (
        f"import sys; {blocked}\n"
        "from app.cli import main\n"
        f"raise SystemExit(main(['workflows', 'ls', '--gateway', 'http://127.0.0.1:{free_port()}']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == ExitCode.UNAVAILABLE, done.stderr
    assert "cannot reach the gateway" in done.stderr


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("integer", "42", 42),
        ("integer", "4.5", "4.5"),  # sent as written: the gateway's 422 names the input
        ("float", "2.5", 2.5),
        ("boolean", "yes", True),
        ("boolean", "off", False),
        ("string", "42", "42"),
        ("model", "sd-1", "sd-1"),
        ("color", '{"r": 1, "g": 2, "b": 3, "a": 255}', {"r": 1, "g": 2, "b": 3, "a": 255}),
        ("collection", "[1, 2]", [1, 2]),
        ("collection", "not json", "not json"),
    ],
)
def test_values_are_converted_by_kind(kind: str, text: str, value: object) -> None:
    assert convert_value(kind, text) == value


def test_assignments_by_index_or_label_and_image_uploads() -> None:
    workflow = WorkflowInfo.model_validate(
        {
            "id": "w",
            "name": "demo",
            "version": 1,
            "inputs": [
                {"index": 0, "label": "Picture", "type": "image"},
                {"index": 1, "label": "Steps", "type": "integer"},
            ],
        }
    )
    uploaded = []

    def upload(path: object) -> str:
        uploaded.append(path)
        return "uploaded.png"

    assert run_inputs(workflow, ["Steps=7", "0=named.png"], upload) == {"1": 7, "0": "named.png"}
    assert uploaded == []
    with pytest.raises(CommandFailed) as missing:
        run_inputs(workflow, ["0=@/nonexistent/x.png"], upload)
    assert missing.value.code == ExitCode.BAD_INPUT and "input 0 (Picture)" in missing.value.message
    with pytest.raises(CommandFailed) as unknown:
        run_inputs(workflow, ["Seed=1"], upload)
    assert "0 (Picture), 1 (Steps)" in unknown.value.message
    with pytest.raises(CommandFailed):
        parse_assignment("no-equals-sign")


def test_problem_text_names_each_input() -> None:
    response = httpx.Response(
        422,
        json={
            "title": "Invalid run inputs",
            "detail": "1 input is not valid",
            "errors": [{"index": 3, "label": "Steps", "reason": "must be an integer"}],
        },
    )
    assert problem_text(response).splitlines() == [
        "Invalid run inputs (HTTP 422): 1 input is not valid",
        "  - input 3 (Steps): must be an integer",
    ]
    assert problem_text(httpx.Response(502, text="bad gateway")) == "HTTP 502: bad gateway"
