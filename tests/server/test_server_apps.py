"""The MCP Apps draft view over the SDK client: only a client that declares io.modelcontextprotocol/ui sees the view
(tool _meta, the ui:// resource, thumbnails in the result); every other client keeps the contact sheet."""

from __future__ import annotations

import base64
import io

import pytest
from mcp import types
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.shared.exceptions import MCPError
from PIL import Image

from fluxroute.server.apps import THUMBNAIL_LONG_EDGE, THUMBNAILS
from tests.fakes.fal import FalFake
from tests.server.conftest import Connect

VIEW = "ui://fluxroute/draft-set.html"
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})


async def test_a_host_with_apps_gets_the_view_and_thumbnails(connect: Connect, fal_fake: FalFake) -> None:
    async with connect(extensions=[APPS]) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        listed = [str(resource.uri) for resource in (await client.list_resources()).resources]
        view = await client.read_resource(VIEW)
        drafts = await client.call_tool("draft_images", {"prompt": "a fox in the snow", "n": 3, "provider": "fal"})

    assert (tools["draft_images"].meta or {})["ui"] == {"resourceUri": VIEW}
    assert not any((tool.meta or {}).get("ui") for name, tool in tools.items() if name != "draft_images")
    assert VIEW in listed
    (page,) = view.contents
    assert isinstance(page, types.TextResourceContents) and page.mime_type == APP_MIME_TYPE
    assert page.text.startswith("<!DOCTYPE html>") and '"ui/initialize"' in page.text and "finalize_image" in page.text

    assert not drafts.is_error
    thumbnails = (drafts.meta or {})[THUMBNAILS]
    assert [thumb["number"] for thumb in thumbnails] == [1, 2, 3]
    for thumb in thumbnails:
        with Image.open(io.BytesIO(base64.b64decode(thumb["data"]))) as image:
            assert image.format == "JPEG" and max(image.size) <= THUMBNAIL_LONG_EDGE
    # the contact sheet stays: a host may show the view, the model still reads the sheet
    assert [block.type for block in drafts.content].count("image") == 1
    assert fal_fake.billed > 0


async def test_a_client_without_apps_sees_no_view_and_cannot_read_it(connect: Connect, fal_fake: FalFake) -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
        listed = [str(resource.uri) for resource in (await client.list_resources()).resources]
        with pytest.raises(MCPError, match=r"io\.modelcontextprotocol/ui"):
            await client.read_resource(VIEW)
        drafts = await client.call_tool("draft_images", {"prompt": "a fox in the snow", "n": 2, "provider": "fal"})

    assert not any((tool.meta or {}).get("ui") for tool in tools)
    assert not any(uri.startswith("ui://") for uri in listed) and listed
    assert not drafts.is_error and THUMBNAILS not in (drafts.meta or {})
    assert [block.type for block in drafts.content].count("image") == 1


async def test_a_client_that_declares_apps_without_the_html_type_is_treated_as_without(
    connect: Connect,
) -> None:
    other = advertise(EXTENSION_ID, {"mimeTypes": ["text/uri-list"]})
    async with connect(extensions=[other]) as client:
        tools = (await client.list_tools()).tools
        with pytest.raises(MCPError):
            await client.read_resource(VIEW)
    assert not any((tool.meta or {}).get("ui") for tool in tools)
