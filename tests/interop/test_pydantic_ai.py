"""Pydantic AI: its OpenAI strict-mode transformer on every exported tool, and an agent whose toolset is
`MCPToolset` over `fluxroute serve` (stdio): the tool definitions the model gets in strict mode are filled the
way a strict model must, and plan_image_route and generate_image run through the agent loop."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest

from fluxroute.router import Router
from fluxroute.settings import Settings
from tests.interop.calls import IMAGE_TOOLS, exercise, mcp_input_schemas, plan_filled
from tests.interop.strict_fill import fill

with contextlib.suppress(ImportError):
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai import Agent, RunContext
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.messages import (
        BinaryContent,
        ModelMessage,
        ModelResponse,
        RetryPromptPart,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.profiles.openai import OpenAIJsonSchemaTransformer, openai_model_profile
    from pydantic_ai.tools import ToolDefinition

pytestmark = pytest.mark.needs("pydantic-ai-slim[mcp]", "pydantic_ai")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    transformer = OpenAIJsonSchemaTransformer(schema, strict=True)
    return transformer.walk()


def test_every_tool_converts_with_the_openai_strict_transformer() -> None:
    for name, schema in mcp_input_schemas().items():
        converted = strict(schema)
        assert converted["additionalProperties"] is False, name
        assert sorted(converted["required"]) == sorted(converted["properties"]), name


async def test_strict_fills_validate_plan_and_run(hosted_settings: Settings) -> None:
    converted = {name: strict(schema) for name, schema in mcp_input_schemas().items()}

    outputs = await exercise(hosted_settings, converted)

    assert outputs["rewrite_image_prompt"]["prompt"], outputs["rewrite_image_prompt"]


async def all_strict(ctx: RunContext[None], tool_defs: list[ToolDefinition]) -> list[ToolDefinition]:
    return [dataclasses.replace(tool_def, strict=True) for tool_def in tool_defs]


async def test_an_agent_with_the_mcp_toolset_calls_the_image_tools_in_strict_mode(
    serve_command: tuple[str, list[str], dict[str, str]], hosted_settings: Settings
) -> None:
    command, args, env = serve_command
    seen: list[ToolDefinition] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:  # the tools have answered
            return ModelResponse(parts=[TextPart("done")])
        seen.extend(info.function_tools)
        tools = {tool.name: tool for tool in info.function_tools}
        calls = []
        for name in IMAGE_TOOLS:
            arguments = fill(tools[name].parameters_json_schema, mcp_input_schemas()[name])
            plan_filled(Router(hosted_settings), name, arguments)
            calls.append(ToolCallPart(name, arguments, tool_call_id=f"call-{name}"))
        return ModelResponse(parts=calls)

    toolset = MCPToolset(StdioTransport(command=command, args=args, env=env), init_timeout=60, read_timeout=120)
    agent = Agent(
        FunctionModel(model, profile=openai_model_profile("gpt-5")),
        toolsets=[toolset.prepared(all_strict)],
    )
    async with agent:
        result = await agent.run("Draw a lighthouse at dusk.")

    assert sorted(tool.name for tool in seen) == sorted(mcp_input_schemas())
    assert all(tool.strict for tool in seen)
    parts = [part for message in result.all_messages() for part in getattr(message, "parts", [])]
    retries = [part for part in parts if isinstance(part, RetryPromptPart)]
    assert not retries, [retry.model_response() for retry in retries]
    returns = {part.tool_name: part.content for part in parts if isinstance(part, ToolReturnPart)}
    assert sorted(returns) == sorted(IMAGE_TOOLS)
    assert returns["plan_image_route"]["chosen"]["provider"] == "krea", returns["plan_image_route"]
    # an image result reaches the model as its content blocks: the text summary and the inline preview
    generated = returns["generate_image"]
    assert isinstance(generated, list), generated
    texts = [block for block in generated if isinstance(block, str)]
    assert texts and "krea" in texts[0], generated
    assert any(isinstance(block, BinaryContent) and block.is_image for block in generated), generated
    assert result.output == "done"
