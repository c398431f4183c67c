"""MCP Apps (`io.modelcontextprotocol/ui`, 2026-01-26): interactive views of tool results, for hosts that
declare the extension.

A tool names its view in the MCP export (`_meta.ui.resourceUri`, from its spec); the view is an HTML file in
views/ served as a `ui://` resource. Only a client that declares the extension with the
`text/html;profile=mcp-app` type sees any of it: for every other client the gate below takes `_meta.ui` out of
tools/list, leaves the `ui://` resources out of resources/list and refuses to read them, and results carry no
view data. Those clients keep the inline previews and the contact sheet.

The draft-set view shows each draft's thumbnail, seed and cost, with a button that asks the host to call
finalize_image for that draft; its thumbnails travel in the draft_images result's `_meta` (THUMBNAILS), which
hosts hand to the view and keep out of the model's context.
"""

from __future__ import annotations

import base64
from importlib import resources
from pathlib import Path
from typing import Any

from mcp.server.apps import Apps, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult
from pydantic import BaseModel

from fluxroute.server.delivery import preview_bytes

UI_SCHEME = "ui://"
# the view for each ui:// resource a tool may name, in fluxroute/server/views/
VIEWS = {"ui://fluxroute/draft-set.html": ("draft_set.html", "Draft set", "The drafts of a set, to pick one")}
# key of a result's _meta carrying the drafts' thumbnails to the view
THUMBNAILS = "fluxroute/thumbnails"
THUMBNAIL_LONG_EDGE = 256


def views_extension() -> Apps:
    """The MCP Apps extension with every view as a `ui://` HTML resource. The views show images only as data: URIs
    from the result, so they declare no outside domain (the hosts' restrictive default policy holds)."""
    apps = Apps()
    for uri, (filename, title, description) in VIEWS.items():
        html = resources.files("fluxroute.server").joinpath("views", filename).read_text(encoding="utf-8")
        apps.add_html_resource(uri, html, name=filename, title=title, description=description, prefers_border=True)
    return apps


async def apps_gate(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: views reach only clients that declare MCP Apps (see the module's doc)."""
    if client_supports_apps(ctx):
        return await call_next(ctx)
    if ctx.method == "resources/read" and str((ctx.params or {}).get("uri", "")).startswith(UI_SCHEME):
        raise MCPError(
            code=INVALID_PARAMS,
            message="This is an MCP Apps view: it is served to clients that declare the io.modelcontextprotocol/ui "
            "extension with text/html;profile=mcp-app.",
        )
    result = await call_next(ctx)
    if ctx.method not in ("tools/list", "resources/list") or result is None:
        return result
    answer = result if isinstance(result, dict) else result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if ctx.method == "tools/list":
        return {**answer, "tools": [_without_ui(tool) for tool in answer.get("tools", [])]}
    listed = [item for item in answer.get("resources", []) if not str(item.get("uri", "")).startswith(UI_SCHEME)]
    return {**answer, "resources": listed}


def _without_ui(tool: dict[str, Any]) -> dict[str, Any]:
    meta = tool.get("_meta")
    if not meta or "ui" not in meta:
        return tool
    rest = {key: value for key, value in meta.items() if key != "ui"}
    return {key: value for key, value in tool.items() if key != "_meta"} | ({"_meta": rest} if rest else {})


def with_view_data(result: CallToolResult, output: BaseModel) -> CallToolResult:
    """`result` with what its tool's view needs beyond the result itself, for a host that shows views: for a draft
    set, each saved draft's JPEG thumbnail (long edge THUMBNAIL_LONG_EDGE) in `_meta`; a draft whose file cannot be
    read has none (the view shows its number instead). Other results are returned as they are."""
    from PIL import Image, UnidentifiedImageError

    from fluxroute.tools.outputs import DraftSetOutput  # loaded by the tool library that made `output`

    if not isinstance(output, DraftSetOutput):
        return result

    thumbnails: list[dict[str, Any]] = []
    for draft in output.drafts:
        if draft.path is None:
            continue
        try:
            data = preview_bytes(Path(draft.path), THUMBNAIL_LONG_EDGE)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
            continue
        thumbnails.append({"number": draft.number, "mimeType": "image/jpeg", "data": base64.b64encode(data).decode()})
    return result.model_copy(update={"meta": {**(result.meta or {}), THUMBNAILS: thumbnails}})
