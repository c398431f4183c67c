"""LangChain: `convert_to_openai_tool(tool, strict=True)` (what `bind_tools(..., strict=True)` sends) on every
fluxroute tool, from the OpenAI function and the Anthropic tool formats; the strict fills validate, plan and run."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.interop.calls import exercise, mcp_input_schemas

with contextlib.suppress(ImportError):
    from langchain_core.utils.function_calling import convert_to_openai_tool

pytestmark = pytest.mark.needs("langchain-core", "langchain_core")

SOURCES = {
    "openai": lambda: [tool["function"] for tool in export("openai")],
    "anthropic": lambda: export("anthropic"),
}


def strict_tools(source: str) -> dict[str, dict[str, Any]]:
    converted = [convert_to_openai_tool(tool, strict=True) for tool in SOURCES[source]()]
    return {tool["function"]["name"]: tool["function"] for tool in converted}


@pytest.mark.parametrize("source", SOURCES)
def test_langchain_makes_every_tool_strict(source: str) -> None:
    functions = strict_tools(source)

    assert list(functions) == list(mcp_input_schemas())
    for name, function in functions.items():
        parameters = function["parameters"]
        assert function["strict"] is True, name
        assert parameters["additionalProperties"] is False, name
        assert sorted(parameters["required"]) == sorted(parameters["properties"]), name


@pytest.mark.parametrize("source", SOURCES)
async def test_langchain_strict_fills_validate_plan_and_run(source: str, hosted_settings: Settings) -> None:
    converted = {name: function["parameters"] for name, function in strict_tools(source).items()}

    outputs = await exercise(hosted_settings, converted)

    assert outputs["get_image_job"]["job_id"] == outputs["generate_image"]["job_id"]
