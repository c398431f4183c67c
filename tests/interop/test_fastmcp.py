"""FastMCP's `Client` against `fluxroute serve` over stdio: it lists every tool with fluxroute's schemas, and
calls filled from those schemas run every tool, with structured content FastMCP parses by the output schema."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.interop.calls import IMAGE_TOOLS, plan_filled
from tests.interop.strict_fill import fill

with contextlib.suppress(ImportError):
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

pytestmark = pytest.mark.needs("fastmcp", "fastmcp")


# "legacy": the initialize handshake; "auto": the stateless protocol era where both sides speak it
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_fastmcp_client_lists_and_runs_every_tool(
    mode: str, serve_command: tuple[str, list[str], dict[str, str]], hosted_settings: Settings
) -> None:
    command, args, env = serve_command
    exported = {tool["name"]: tool for tool in export("mcp")}
    results: dict[str, Any] = {}
    async with Client(StdioTransport(command=command, args=args, env=env), timeout=60, mode=mode) as client:
        listed = {tool.name: tool for tool in await client.list_tools()}
        assert list(listed) == list(exported)
        for name, tool in listed.items():
            assert tool.input_schema == exported[name]["inputSchema"], name
            assert tool.output_schema == exported[name]["outputSchema"], name

        for name in IMAGE_TOOLS:
            plan_filled(Router(hosted_settings), name, fill(listed[name].input_schema))
        generated = await client.call_tool("generate_image", fill(listed["generate_image"].input_schema))
        results["generate_image"] = generated
        job_id = generated.structured_content["job_id"] if generated.structured_content else ""
        for name, tool in listed.items():
            if name not in ("generate_image", "finalize_image"):
                results[name] = await client.call_tool(name, fill(tool.input_schema, job_id=job_id))
        drafts = results["draft_images"].structured_content or {}
        finalize = {**fill(listed["finalize_image"].input_schema), "draft_set_id": drafts.get("draft_set_id", "")}
        results["finalize_image"] = await client.call_tool("finalize_image", finalize)

    for name, result in results.items():
        assert not result.is_error, (name, result.content)
        assert isinstance(result.structured_content, dict), name
        assert result.data is not None, f"{name}: FastMCP could not read the result by its output schema"
    assert results["generate_image"].structured_content["status"] == "succeeded"
    assert results["generate_image"].structured_content["provider"] == "krea"
    assert results["plan_image_route"].structured_content["chosen"]["provider"] == "krea"
    assert results["get_image_job"].structured_content["job_id"] == job_id
