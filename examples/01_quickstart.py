# /// script
# requires-python = ">=3.11"
# dependencies = ["invokeai-gateway"]
# ///
"""Run a model-free workflow with the client, synchronously.

.venv/bin/python examples/01_quickstart.py [http://127.0.0.1:9090]
"""

from __future__ import annotations

import sys
from pathlib import Path

from invokeai_py_client import InvokeAIClient, WorkflowDefinition

WORKFLOW = Path(__file__).parent / "workflows" / "tiny_blur.json"
url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9090"

with InvokeAIClient.from_url(url) as client:
    if not client.health_check():
        sys.exit(f"no InvokeAI answers at {url}")
    wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_file(WORKFLOW))
    for inp in wf.list_inputs():
        print(inp.input_index, inp.label, inp.field_name, type(inp.field).__name__, inp.value)
    wf.set_input_value(1, 4.5)  # the blur radius
    run = wf.submit_sync()
    item = wf.wait_for_completion_sync(timeout=120)
    for out in wf.map_outputs_to_images(item):
        print(f"{out.label or out.node_type}: {out.image_names}")
