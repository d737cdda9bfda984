"""The client alone imports none of the gateway's dependencies (they are installed with it)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVICE_PACKAGES = {"fastapi", "starlette", "sqlmodel", "sqlalchemy", "alembic", "uvicorn"}
SERVICE_PACKAGES |= {"sse_starlette", "pydantic_settings", "multipart", "app"}

PROBE = """
import json, sys
import invokeai_py_client
from invokeai_py_client.workflow import WorkflowDefinition
from invokeai_py_client import InvokeAIClient
InvokeAIClient.from_url("http://127.0.0.1:9").board_repo
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_the_client_imports_no_service_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    imported = set(json.loads(done.stdout))
    assert "invokeai_py_client" in imported and "pydantic" in imported  # the probe ran
    assert imported & SERVICE_PACKAGES == set()
