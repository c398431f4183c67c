"""A small MCP Apps host for tests: a page that plays the host's side of the view protocol (ext-apps 2026-01-26)
around fluxroute's draft view in a sandboxed iframe, run in headless Chromium through Playwright.

The page answers `ui/initialize` with a host context, sends `ui/notifications/tool-input` and `-tool-result` after
`ui/notifications/initialized`, follows `size-changed`, records every message the view sends (`window.viewMessages`)
and hands each `tools/call` to Python (`window.callServer`), which calls the real server through an MCP client.

`python -m tests.server.apps_host docs/draft-view.png` drafts four images through the provider fakes and saves a
screenshot of the view as it is after a click on draft 3.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

HOST_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>test host</title>
<style>body { margin: 0; padding: 16px; background: #e4e4e7; font-family: sans-serif; }
iframe { width: 720px; height: 200px; border: 1px solid #a1a1aa; border-radius: 8px; background: #fff; }</style>
</head><body>
<iframe id="view" sandbox="allow-scripts" title="fluxroute drafts"></iframe>
<script>
"use strict";
const TOOL_INPUT = __TOOL_INPUT__;
const TOOL_RESULT = __TOOL_RESULT__;
window.viewMessages = [];
const frame = document.getElementById("view");
function toView(message) { frame.contentWindow.postMessage({ jsonrpc: "2.0", ...message }, "*"); }
window.addEventListener("message", async (event) => {
  if (event.source !== frame.contentWindow) return;
  const message = event.data;
  window.viewMessages.push(message);
  if (message.method === "ui/initialize") {
    toView({ id: message.id, result: {
      protocolVersion: "2026-01-26",
      hostInfo: { name: "fluxroute-test-host", version: "1.0.0" },
      hostCapabilities: { serverTools: {}, serverResources: {} },
      hostContext: { theme: "light", displayMode: "inline", containerDimensions: { width: 720, maxHeight: 900 } },
    } });
  } else if (message.method === "ui/notifications/initialized") {
    toView({ method: "ui/notifications/tool-input", params: { arguments: TOOL_INPUT } });
    toView({ method: "ui/notifications/tool-result", params: TOOL_RESULT });
  } else if (message.method === "ui/notifications/size-changed") {
    frame.style.height = `${message.params.height}px`;
  } else if (message.method === "tools/call") {
    try {
      toView({ id: message.id, result: await window.callServer(message.params.name, message.params.arguments) });
    } catch (error) {
      toView({ id: message.id, error: { code: -32000, message: String(error) } });
    }
  }
});
frame.srcdoc = __VIEW_HTML__;
</script></body></html>
"""

CallServer = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def host_page(view_html: str, tool_input: dict[str, Any], tool_result: dict[str, Any]) -> str:
    """The host page around `view_html`, ready to hand it `tool_input` and `tool_result` (JSON-ready)."""
    return (
        HOST_PAGE.replace("__TOOL_INPUT__", json.dumps(tool_input))
        .replace("__TOOL_RESULT__", json.dumps(tool_result))
        .replace("__VIEW_HTML__", json.dumps(view_html).replace("</", "<\\/"))
    )


def chromium_path() -> str | None:
    """Debian's Chromium (`apt-get install chromium`), where installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


if __name__ == "__main__":  # pragma: no cover - writes the README's screenshot
    import asyncio
    import sys
    import tempfile
    from pathlib import Path

    from fluxroute.settings import Settings
    from tests.fakes.fal import FalFake
    from tests.server.test_draft_view_browser import run_view

    async def main(out: Path) -> None:
        with tempfile.TemporaryDirectory() as home, FalFake(key="screenshot-key") as fal:
            fal.image_scale = 1 / 4
            settings = Settings(home=Path(home), fal_key=fal.key, fal_base_url=fal.base_url)
            seen = await run_view(settings, screenshot=out)
        print(f"{out}: {seen['final_status']}")

    asyncio.run(main(Path(sys.argv[1])))
