"""The API reference page's code blocks, run as written against the real InvokeAI.

Each block below is copied from the client's API reference page (Quick Reference and Async
Support), character for character; only the server's address and the names of the workflow
file are put in (``as_run``). Each runs as a script of its own in a fresh interpreter, the way
a user pastes it into a file: a ``client`` (and, for the async blocks, a ``wf``) made by the
page's own lines first, never closed, as on the page. The run must succeed, print what the
block prints, leave nothing on stderr (no "Unclosed client session", no traceback) and exit
promptly: no thread of the client may hold the interpreter open.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import invokeai_py_client
from invokeai_py_client import workflow as workflow_package

pytestmark = pytest.mark.invokeai

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "caption_and_blurred_canvas.json"
ROOT = Path(__file__).resolve().parents[2]
EXIT_BUDGET = 3.0
"""Seconds a script may take after its last line: the interpreter's own shutdown (about 0.1 s
here) plus slack; a non-daemon thread or a hung close would take far longer."""

CLIENT_INITIALIZATION = """\
from invokeai_py_client import InvokeAIClient

# Recommended: URL-based initialization with automatic parsing
client = InvokeAIClient.from_url("http://localhost:9090")

# Alternative: explicit parameters
client = InvokeAIClient(
    host="192.168.1.100", 
    port=9090,
    use_https=True,
    timeout=60.0
)

# Verify connection
if client.health_check():
    print("‚úÖ InvokeAI server is reachable")
else:
    print("‚ùå Cannot connect to InvokeAI server")
"""

ESSENTIAL_WORKFLOW_PATTERN = """\
from invokeai_py_client.workflow import WorkflowDefinition

# 1. Load workflow definition
definition = WorkflowDefinition.from_file("workflow.json")
wf = client.workflow_repo.create_workflow(definition)

# 2. Configure inputs by index (stable API)
wf.get_input_value(0).value = "A beautiful landscape"  # Prompt
wf.get_input_value(1).value = 20                       # Steps  

# 3. Execute workflow
submission = wf.submit_sync()
result = wf.wait_for_completion_sync(timeout=180)

# 4. Extract generated images
for mapping in wf.map_outputs_to_images(result):
    print(f"Generated: {mapping.get('image_names', [])}")
"""

BOARD_AND_IMAGE_MANAGEMENT = """\
# List and create boards
boards = client.board_repo.list_boards(include_uncategorized=True)
new_board = client.board_repo.create_board("My Project")

# Upload and download images
image = new_board.upload_image("reference.jpg")
image_data = new_board.download_image(image.image_name, full_resolution=True)

# Organize images
uncategorized = client.board_repo.get_uncategorized_handle()  
uncategorized.move_image_to(image.image_name, new_board.board_id)
"""

WORKFLOW_OPERATIONS = """\
from invokeai_py_client.workflow import WorkflowDefinition

# Load workflow definition from file and create a handle
wf = client.workflow_repo.create_workflow(
    WorkflowDefinition.from_file("workflow.json")
)

# Discover inputs (indices are the stable public handle)
for inp in wf.list_inputs():
    print(f"[{inp.input_index:02d}] {inp.label or inp.field_name}")

# Set values on typed fields (example)
fld = wf.get_input_value(0)
if hasattr(fld, "value"):
    fld.value = "A cinematic sunset over snowy mountains"

# Submit and wait (blocking convenience)
submission = wf.submit_sync()
queue_item = wf.wait_for_completion_sync(timeout=180)

# Map outputs to images (per node)
for m in wf.map_outputs_to_images(queue_item):
    print(m["node_id"], m.get("image_names"))
"""

BOARD_MANAGEMENT = """\
# Resolve a board and upload/download images
boards = client.board_repo.list_boards(include_uncategorized=True)

handle = client.board_repo.get_board_handle("none")  # uncategorized

# Upload from file
img = handle.upload_image("image.png")

# Or upload from bytes
img2 = handle.upload_image_data(open("image.png", "rb").read(), filename="image.png")

# Download full-resolution image
data = handle.download_image(img.image_name, full_resolution=True)
open(img.image_name, "wb").write(data)
"""

ASYNC_SUBMIT_AND_WAIT = """\
import asyncio

async def run():
    # Async submit with optional event subscription
    result = await wf.submit(subscribe_events=True)

    # Wait for completion via events (no polling)
    done = await wf.wait_for_completion(timeout=300)
    print("Final status:", done.get("status"))

asyncio.run(run())
"""

ASYNC_EVENT_STREAM = """\
async for evt in wf.submit_sync_monitor_async():
    print(evt.get("event_type"), evt.get("status") or "")
"""

TYPE_SYSTEM = """\
- IvkField[T]: generic base for all fields
- Primitive: IvkStringField, IvkIntegerField, IvkFloatField, IvkBooleanField
- Resource: IvkImageField, IvkBoardField, IvkLatentsField, IvkTensorField
- Models/Configs: IvkModelIdentifierField, IvkUNetField, IvkCLIPField, IvkTransformerField, \
IvkLoRAField
- Complex: IvkColorField, IvkBoundingBoxField, IvkCollectionField
- Enums: IvkEnumField, IvkSchedulerField, SchedulerName
"""

# The classes the page's Core Components section names.
CORE_COMPONENT_NAMES = [
    *("InvokeAIClient", "WorkflowDefinition", "WorkflowHandle", "BoardRepository", "BoardHandle"),
    *("IvkField", "IvkStringField", "IvkImageField", "IvkModelIdentifierField", "JobStatus"),
    *("ImageCategory", "BaseModelEnum", "IvkImage", "IvkJob", "IvkDnnModel"),
]
CLIENT_MEMBERS = ("from_url", "board_repo", "workflow_repo", "dnn_model_repo", "health_check")
CLIENT_MEMBERS += ("socketio_session",)
# Methods the Core Components section names that no block above calls.
NAMED_METHODS = {
    "WorkflowHandle": ("preview", "export_input_index_map", "verify_input_index_map"),
    "BoardRepository": ("create_board", "delete_board", "list_boards"),
    "BoardHandle": ("upload_image", "download_image", "move_image_to", "delete_image"),
}


def as_run(snippet: str, url: str) -> str:
    """The snippet with this test's server and workflow file put in; nothing else changes."""
    host, port = url.removeprefix("http://").split(":")
    return (
        snippet.replace("http://localhost:9090", url)
        .replace('host="192.168.1.100"', f'host="{host}"')
        .replace("port=9090", f"port={port}")
        .replace('"workflow.json"', repr(str(WORKFLOW)))
    )


def page_client(url: str) -> str:
    """The page's own first lines, which every other block assumes ran before it."""
    return as_run(CLIENT_INITIALIZATION.split("\n\n# Alternative")[0], url) + "\n"


def page_workflow(url: str) -> str:
    """``client`` and ``wf`` as the Workflow Operations block makes them."""
    return page_client(url) + as_run(WORKFLOW_OPERATIONS.split("\n\n# Discover")[0], url) + "\n"


# Every warning shown, but the page's own unclosed files (``open(...).read()``).
SHOW_WARNINGS = ("-W", "default", "-W", "ignore:unclosed file:ResourceWarning")
CLEAN_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def run_script(source: str, cwd: Path) -> tuple[str, str, float]:
    """Run ``source`` in a fresh interpreter; stdout, stderr and the seconds after its end."""
    script = cwd / "snippet.py"
    script.write_text(source + '\nimport time as _t\nprint("END", _t.monotonic(), flush=True)\n')
    done = subprocess.run(
        [sys.executable, *SHOW_WARNINGS, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**CLEAN_ENV, "PYTHONPATH": str(ROOT)},
    )
    ended = time.monotonic()
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    assert last.startswith("END "), done.stdout
    return "\n".join(printed), done.stderr, ended - float(last.split()[1])


def assert_quiet_and_prompt(stderr: str, exit_seconds: float) -> None:
    assert stderr == "", stderr  # no "Unclosed client session/connector", no warning at all
    assert exit_seconds < EXIT_BUDGET, exit_seconds


def test_client_initialization_and_health_check(invokeai_url: str, tmp_path: Path) -> None:
    out, err, exit_seconds = run_script(as_run(CLIENT_INITIALIZATION, invokeai_url), tmp_path)
    # The explicit-parameters client speaks TLS to a plain-HTTP server: health_check says
    # False (it never raises), and the page's else branch prints.
    assert out == "‚ùå Cannot connect to InvokeAI server"
    assert_quiet_and_prompt(err, exit_seconds)
    plain = CLIENT_INITIALIZATION.replace("use_https=True", "use_https=False")
    out, err, exit_seconds = run_script(as_run(plain, invokeai_url), tmp_path)
    assert out == "‚úÖ InvokeAI server is reachable"
    assert_quiet_and_prompt(err, exit_seconds)


def test_essential_workflow_pattern(invokeai_url: str, tmp_path: Path) -> None:
    source = page_client(invokeai_url) + as_run(ESSENTIAL_WORKFLOW_PATTERN, invokeai_url)
    out, err, exit_seconds = run_script(source, tmp_path)
    assert out.startswith("Generated: ['") and out.endswith(".png']"), out
    assert len(out.splitlines()) == 1  # one output node makes images
    assert_quiet_and_prompt(err, exit_seconds)


def test_board_and_image_management(invokeai_url: str, tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), "teal").save(tmp_path / "reference.jpg", format="JPEG")
    check = """
assert image.board_id == new_board.board_id == new_board.board.board_id
assert new_board.board.board_name == "My Project"
assert image_data[:3] == b"\\xff\\xd8\\xff" or image_data[:4] == b"\\x89PNG"
assert image.image_name in new_board.list_image_names()
client.board_repo.delete_board(new_board.board_id, delete_images=True)
"""
    source = page_client(invokeai_url) + BOARD_AND_IMAGE_MANAGEMENT + check
    out, err, exit_seconds = run_script(source, tmp_path)
    assert out == ""
    assert_quiet_and_prompt(err, exit_seconds)


def test_workflow_operations(invokeai_url: str, tmp_path: Path) -> None:
    source = page_client(invokeai_url) + as_run(WORKFLOW_OPERATIONS, invokeai_url)
    out, err, exit_seconds = run_script(source, tmp_path)
    lines = out.splitlines()
    assert lines[:2] == ["[00] Caption", "[01] Width"]
    assert len(lines) == 3 and lines[2].startswith("caption-blur ['"), out
    assert_quiet_and_prompt(err, exit_seconds)


def test_board_management(invokeai_url: str, tmp_path: Path) -> None:
    Image.new("RGB", (36, 24), "purple").save(tmp_path / "image.png", format="PNG")
    check = """
assert img.board_id is None and img2.board_id is None
assert open(img.image_name, "rb").read() == data and data.startswith(b"\\x89PNG")
assert any(b.board_id == "none" for b in boards)
for name in (img.image_name, img2.image_name):
    handle.delete_image(name)
"""
    out, err, exit_seconds = run_script(
        page_client(invokeai_url) + BOARD_MANAGEMENT + check, tmp_path
    )
    assert out == ""
    assert_quiet_and_prompt(err, exit_seconds)


def test_async_submit_and_wait(invokeai_url: str, tmp_path: Path) -> None:
    out, err, exit_seconds = run_script(
        page_workflow(invokeai_url) + ASYNC_SUBMIT_AND_WAIT, tmp_path
    )
    assert out == "Final status: completed"
    assert_quiet_and_prompt(err, exit_seconds)


def test_async_event_stream(invokeai_url: str, tmp_path: Path) -> None:
    # A top-level ``async for``, as on the page: compiled the way ``python -m asyncio`` and
    # notebooks run top-level await, then run by asyncio.
    source = (
        page_workflow(invokeai_url)
        + "import ast, asyncio\n"
        + f"block = compile({ASYNC_EVENT_STREAM!r}, 'page', 'exec', "
        + "flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
        + "asyncio.run(eval(block))\n"
    )
    out, err, exit_seconds = run_script(source, tmp_path)
    lines = out.splitlines()
    assert "invocation_complete " in lines
    assert lines[-1] == "queue_item_status_changed completed"
    assert_quiet_and_prompt(err, exit_seconds)


def test_every_listed_name_is_importable_from_the_package() -> None:
    listed = []
    for line in TYPE_SYSTEM.splitlines():
        head, tail = line.removeprefix("- ").split(": ", 1)
        listed += [head.removesuffix("[T]")] if head.startswith("Ivk") else tail.split(", ")
    assert len(listed) == 20
    for name in [*listed, *CORE_COMPONENT_NAMES]:
        assert name in invokeai_py_client.__all__, name
        assert getattr(invokeai_py_client, name) is not None
    assert workflow_package.WorkflowDefinition is invokeai_py_client.WorkflowDefinition
    for member in CLIENT_MEMBERS:
        assert hasattr(invokeai_py_client.InvokeAIClient, member), member
    for class_name, methods in NAMED_METHODS.items():
        for method in methods:
            assert callable(getattr(getattr(invokeai_py_client, class_name), method)), method
