"""The MCP Apps draft view in headless Chromium: a test host page (tests/server/apps_host.py) loads the view that
the server serves, hands it a real draft_images result, and a real click on a draft's button must produce exactly
one finalize_image call for that draft, which the host runs on the server (through the provider fakes), and the
view then shows the final.

Needs Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it) and Playwright (the dev extra); without
them the test is skipped, except under CI=true, where it fails."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mcp import Client, types
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from tests.fakes.fal import FalFake
from tests.needs import missing
from tests.server.apps_host import chromium_path, host_page

VIEW = "ui://fluxroute/draft-set.html"
DRAFTS = 4
CHOSEN = 3


def wire(result: types.CallToolResult) -> dict[str, Any]:
    """A tool result as it travels in JSON-RPC (camelCase, `_meta`)."""
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def run_view(settings: Settings, *, screenshot: Path | None = None) -> dict[str, Any]:
    """Draft DRAFTS images through an Apps-declaring client, show the result in the view, click draft CHOSEN, and
    return what the page and the server saw."""
    from playwright.async_api import async_playwright

    server = build_server(settings, Router(settings))
    apps = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    arguments = {"prompt": "a red fox in fresh snow, morning light", "n": DRAFTS, "provider": "fal", "seed": 11}
    calls: list[tuple[str, dict[str, Any]]] = []
    async with Client(server, extensions=[apps]) as client:
        (page_html,) = (await client.read_resource(VIEW)).contents
        assert isinstance(page_html, types.TextResourceContents)
        drafted = await client.call_tool("draft_images", arguments)
        assert not drafted.is_error, drafted.content

        async def call_server(name: str, tool_arguments: dict[str, Any]) -> dict[str, Any]:
            calls.append((name, tool_arguments))
            return wire(await client.call_tool(name, tool_arguments))

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 760, "height": 900})
                await page.expose_function("callServer", call_server)
                await page.set_content(host_page(page_html.text, arguments, wire(drafted)))
                view = page.frame_locator("#view")
                cards = view.locator("figure.draft")
                await cards.nth(DRAFTS - 1).wait_for(timeout=15_000)
                thumbnails_drawn = await view.locator("figure.draft img").evaluate_all(
                    "images => images.map(image => image.complete && image.naturalWidth > 0)"
                )
                captions = await view.locator("figure.draft figcaption").all_inner_texts()
                await view.get_by_role("button", name=f"Finalize #{CHOSEN}").click()
                status = view.locator("#status")
                await status.filter(has_text="Final from draft").wait_for(timeout=30_000)
                final_status = await status.inner_text()
                messages = await page.evaluate("window.viewMessages")
                if screenshot is not None:
                    await page.locator("#view").screenshot(path=str(screenshot))
            finally:
                await browser.close()
    return {
        "draft_set": drafted.structured_content or {},
        "thumbnails_drawn": thumbnails_drawn,
        "captions": captions,
        "final_status": final_status,
        "messages": messages,
        "calls": calls,
    }


def require_browser() -> None:
    if importlib.util.find_spec("playwright") is None:
        missing("playwright is not installed (pip install -e '.[dev]')")
    if chromium_path() is None:
        missing("Chromium is not installed (apt-get install chromium)")


async def test_the_view_shows_every_draft_and_a_click_finalizes_that_draft_once(
    hosted_settings: Settings, fal_fake: FalFake, tmp_path: Path
) -> None:
    require_browser()
    seen = await run_view(hosted_settings, screenshot=tmp_path / "view.png")

    draft_set = seen["draft_set"]
    assert seen["thumbnails_drawn"] == [True] * DRAFTS
    seeds = [draft["seed"] for draft in draft_set["drafts"]]
    assert [caption.split("\n")[0] for caption in seeds and seen["captions"]] == [f"#{n}" for n in range(1, 5)]
    assert all(f"seed {seed}" in caption for seed, caption in zip(seeds, seen["captions"], strict=True))

    methods = [message.get("method") for message in seen["messages"]]
    assert methods[0] == "ui/initialize" and "ui/notifications/initialized" in methods
    assert "ui/notifications/size-changed" in methods
    (call,) = [message for message in seen["messages"] if message.get("method") == "tools/call"]
    expected = {
        "draft_set_id": draft_set["draft_set_id"],
        "index": CHOSEN,
        "idempotency_key": f"view-{draft_set['draft_set_id']}-{CHOSEN}",
    }
    assert call["params"] == {"name": "finalize_image", "arguments": expected}
    assert seen["calls"] == [("finalize_image", expected)]

    assert f"Final from draft #{CHOSEN}" in seen["final_status"]
    assert JobStore.open_existing(hosted_settings.home).spend_summary().spent_total == fal_fake.billed > 0
    assert (tmp_path / "view.png").stat().st_size > 10_000
