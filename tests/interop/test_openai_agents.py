"""OpenAI Agents SDK: its strict converter on every exported tool, and `MCPServerStdio` against `fluxroute serve`
with `convert_schemas_to_strict=True`: every tool must convert (the SDK silently falls back to a non-strict
tool otherwise), and the strict fills of plan_image_route and generate_image run through the SDK's own tools."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.interop.calls import exercise, mcp_input_schemas, plan_filled
from tests.interop.strict_fill import fill

with contextlib.suppress(ImportError):
    from agents.mcp import MCPServerStdio, MCPUtil
    from agents.strict_schema import ensure_strict_json_schema
    from agents.tool_context import ToolContext

pytestmark = pytest.mark.needs("openai-agents", "agents")


def test_every_tool_converts_with_ensure_strict_json_schema() -> None:
    for name, schema in mcp_input_schemas().items():
        strict = ensure_strict_json_schema(schema)
        assert strict["additionalProperties"] is False, name
        assert sorted(strict["required"]) == sorted(strict["properties"]), name


async def test_strict_fills_validate_plan_and_run(hosted_settings: Settings) -> None:
    converted = {name: ensure_strict_json_schema(schema) for name, schema in mcp_input_schemas().items()}

    outputs = await exercise(hosted_settings, converted)

    assert outputs["cancel_image_job"]["job_id"] == outputs["generate_image"]["job_id"]


async def test_mcp_server_stdio_tools_are_strict_and_run(
    serve_command: tuple[str, list[str], dict[str, str]], hosted_settings: Settings
) -> None:
    command, args, env = serve_command
    server = MCPServerStdio(
        params={"command": command, "args": args, "env": env},
        name="fluxroute",
        client_session_timeout_seconds=60,
        use_structured_content=True,
    )
    async with server:
        listed = await server.list_tools()
        tools = {tool.name: MCPUtil.to_function_tool(tool, server, convert_schemas_to_strict=True) for tool in listed}
        assert list(tools) == [tool["name"] for tool in export("mcp")]
        not_strict = [name for name, tool in tools.items() if not tool.strict_json_schema]
        assert not not_strict, f"openai-agents fell back to non-strict schemas for {not_strict}"

        results: dict[str, Any] = {}
        for name in ("plan_image_route", "generate_image"):
            arguments = fill(tools[name].params_json_schema, mcp_input_schemas()[name])
            plan_filled(Router(hosted_settings), name, arguments)
            payload = json.dumps(arguments)
            context = ToolContext(context=None, tool_name=name, tool_call_id=f"call-{name}", tool_arguments=payload)
            output = await tools[name].on_invoke_tool(context, payload)
            assert isinstance(output, str) and output.startswith("{"), output  # an error comes back as prose
            results[name] = json.loads(output)

    assert results["plan_image_route"]["chosen"]["provider"] == "krea", results["plan_image_route"]
    assert results["generate_image"]["status"] == "succeeded", results["generate_image"]
    assert results["generate_image"]["images"] and results["generate_image"]["provider"] == "krea"
