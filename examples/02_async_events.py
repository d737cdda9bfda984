# /// script
# requires-python = ">=3.11"
# dependencies = ["invokeai-gateway"]
# ///
"""Submit asynchronously and print every event of the run as it happens.

.venv/bin/python examples/02_async_events.py [http://127.0.0.1:9090]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from invokeai_py_client import InvokeAIClient, WorkflowDefinition

WORKFLOW = Path(__file__).parent / "workflows" / "tiny_blur.json"


async def main(url: str) -> None:
    async with InvokeAIClient.from_url(url) as client:
        definition = WorkflowDefinition.from_file(WORKFLOW)
        wf = await client.workflow_repo.acreate_workflow(definition)
        wf.set_input_value(0, 96)  # width of the blank image
        async for event in wf.submit_sync_monitor_async():
            print(event["event_type"], event.get("invocation_source_id") or event.get("status"))
        print(wf.map_outputs_to_images())


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9090"))
