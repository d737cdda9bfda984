"""The web console at /ui in a real headless Chromium (Debian's), driven by Playwright.

The gateway requires an API key, so this also proves the page keeps the key for the tab,
sends it on every call (the event stream included) and never puts it in a URL. A failing test
leaves a screenshot of the page in ``$TEST_ARTIFACTS_DIR`` (default ``test-artifacts/``).
With ``CONSOLE_SCREENSHOT=path`` set, a passing run saves the README's picture there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from invokeai_py_client import InvokeAIClient
from tests.app.conftest import wait_until
from tests.app.live_server import ROOT, serve_gateway
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

KEY = "console-test-key"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test installs it with apt-get)")
        pytest.skip("chromium is not installed")
    return found


@contextlib.asynccontextmanager
async def browser_page(name: str) -> AsyncIterator[Page]:
    """A fresh page in Debian's Chromium; a screenshot is kept if the block raises."""
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            raise
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


async def test_console_registers_runs_follows_and_cancels(
    invokeai_url: str, aclient: InvokeAIClient, tmp_path: Path
) -> None:
    workflow_file = tmp_path / "tiny-blur.json"
    workflow_file.write_text(json.dumps(tiny_blur_workflow()))
    requests: list[Request] = []
    async with (
        serve_gateway(
            tmp_path / "gw", invokeai_url, api_keys=KEY, webhook_allow_private=True
        ) as gw,
        browser_page("console") as page,
        _receiver() as receiver,
        httpx.AsyncClient(
            base_url=gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        ) as http,
    ):
        page.on("request", lambda request: requests.append(request))
        await page.goto(f"{gw.url}/ui/")
        await expect(page.locator("#history-view")).to_be_hidden()
        # Without a key the API refuses the page's first call, and the page says so.
        await expect(page.locator("#key-state")).to_contain_text("needs an API key")
        await page.fill("#api-key", KEY)
        await page.click("#key-form button")
        await expect(page.locator("#key-state")).to_have_text("key kept for this tab")
        assert await page.evaluate("Object.values(sessionStorage)") == [KEY]

        # Register by file: the workflow is listed and its form has one field per input.
        await page.set_input_files("#workflow-file", str(workflow_file))
        await expect(page.locator("#workflow-name")).to_have_text("tiny blur")
        await expect(page.locator("#inputs .field label")).to_have_text(["0 · Width", "1 · Radius"])
        await expect(page.locator("#input-0")).to_have_value("64")

        # A refused value is named on its field with the gateway's reason.
        await page.fill("#input-1", "-1")
        await page.click("#run-button")
        await expect(page.locator('.field[data-index="1"].invalid .problem')).not_to_be_empty()
        await expect(page.locator("#notice")).to_contain_text("input 1 (Radius)")

        # Run: a bar per node that reaches 100%, then the image in the gallery.
        await page.fill("#input-1", "2.5")
        await page.fill("#webhook-url", receiver.url)
        await page.click("#run-button")
        await expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
        await expect(page.locator("#node-bars .node")).to_have_count(2)
        await expect(page.locator("#node-bars .pct")).to_have_text(["100%", "100%"])
        image = page.locator("#gallery img")
        await expect(image).to_have_count(1)
        await page.wait_for_function(
            "document.querySelector('#gallery img').naturalWidth === 64", timeout=30_000
        )
        run_id = await page.locator("#run-id").inner_text()
        run = (await http.get(f"/runs/{run_id}")).json()
        assert run["status"] == "succeeded" and run["inputs"] == {"1": 2.5}  # untouched: kept
        # The run's webhook delivery, as the gateway logged it.
        await page.click("#deliveries-box summary")
        delivered = page.locator('#deliveries tbody tr[data-status="delivered"]')
        await expect(delivered).to_have_count(1, timeout=30_000)
        await expect(delivered).to_contain_text(receiver.url)
        await expect(delivered).to_contain_text("200")
        if os.environ.get("CONSOLE_SCREENSHOT"):
            await page.screenshot(path=os.environ["CONSOLE_SCREENSHOT"])
        await page.fill("#webhook-url", "")

        # Cancel a run that waits in InvokeAI's queue.
        await aclient.queue_repo.apause_processor()
        try:
            await page.click("#run-button")
            await expect(page.locator("#run-id")).not_to_have_text(run_id)
            await expect(page.locator("#run-status")).to_have_text("queued")
            await page.click("#cancel-button")
            await expect(page.locator("#run-status")).to_have_text("canceled", timeout=30_000)
        finally:
            await aclient.queue_repo.aresume_processor()
        canceled_id = await page.locator("#run-id").inner_text()
        assert (await http.get(f"/runs/{canceled_id}")).json()["status"] == "canceled"

        # History: filtered by status, and paged one run at a time.
        await page.click('.tab[data-view="history-view"]')
        await expect(page.locator("#history tbody tr")).to_have_count(2)
        await page.select_option("#filter-status", "canceled")
        await page.click("#history-filters button")
        await expect(page.locator("#history tbody tr")).to_have_count(1)
        await expect(page.locator("#history tbody tr")).to_have_attribute(
            "data-run-id", canceled_id
        )
        await page.select_option("#filter-status", "")
        await page.fill("#filter-limit", "1")
        await page.click("#history-filters button")
        await expect(page.locator("#history tbody tr")).to_have_attribute(
            "data-run-id", canceled_id
        )
        await page.click("#older")
        await expect(page.locator("#history tbody tr")).to_have_attribute("data-run-id", run_id)
        await expect(page.locator("#older")).to_be_disabled()
        await page.click("#newer")
        await expect(page.locator("#history tbody tr")).to_have_attribute(
            "data-run-id", canceled_id
        )
        # A row opens the run again, replayed from the stored events.
        await page.click(f'#history tbody tr[data-run-id="{canceled_id}"]')
        await expect(page.locator("#run-status")).to_have_text("canceled")

    assert not [r.url for r in requests if KEY in r.url]  # the key is never in a URL
    streams = [r for r in requests if r.url.endswith("/events?previews=true")]
    assert streams and all(r.headers.get("authorization") == f"Bearer {KEY}" for r in streams)


async def test_console_shows_node_previews(
    invokeai_url: str, aclient: InvokeAIClient, tmp_path: Path
) -> None:
    """A ``node.preview`` event on the stream shows its image (fetched with the key).

    The event is published on the gateway's broker, as the gateway publishes every event
    after storing it; its image is a real one, uploaded through the gateway.
    """
    png = io.BytesIO()
    Image.new("RGB", (48, 40), "teal").save(png, format="PNG")
    async with (
        serve_gateway(tmp_path / "gw", invokeai_url, api_keys=KEY) as gw,
        browser_page("console-previews") as page,
        httpx.AsyncClient(
            base_url=gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        ) as http,
    ):
        uploaded = (await http.post("/images", files={"file": ("p.png", png.getvalue())})).json()
        workflow = (await http.post("/workflows", json=tiny_blur_workflow())).json()
        await aclient.queue_repo.apause_processor()
        try:
            run = (await http.post(f"/workflows/{workflow['id']}/runs", json={})).json()
            await page.goto(f"{gw.url}/ui")  # no trailing slash: redirected, still no key
            await page.fill("#api-key", KEY)
            await page.click("#key-form button")
            await page.click('.tab[data-view="history-view"]')
            await page.click(f'#history tbody tr[data-run-id="{run["id"]}"]')
            await expect(page.locator("#run-status")).to_have_text("queued")
            broker = gw.app.state.broker
            await wait_until(lambda: broker.subscriber_count >= 1, timeout=10)
            preview = {
                "node_id": "blur-node",
                "node_type": "img_blur",
                "step": 3,
                "width": 48,
                "height": 40,
                "url": uploaded["url"],
            }
            await broker.publish(
                {
                    "id": 10**9,
                    "run_id": run["id"],
                    "workflow_id": workflow["id"],
                    "event": "node.preview",
                    "data": preview,
                    "created_at": datetime.now(UTC),
                }
            )
            await page.wait_for_function(
                "document.querySelector('#previews img')?.naturalWidth === 48", timeout=15_000
            )
        finally:
            await http.post(f"/runs/{run['id']}/cancel")
            await aclient.queue_repo.aresume_processor()
