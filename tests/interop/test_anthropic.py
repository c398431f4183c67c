"""Anthropic: the SDK's `transform_schema` (what it applies to strict tools and structured outputs) on every
`fluxroute tools --format anthropic` input schema; the filled calls validate, plan and run."""

from __future__ import annotations

import contextlib

import pytest

from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.interop.calls import exercise, mcp_input_schemas

with contextlib.suppress(ImportError):
    from anthropic.lib._parse._transform import transform_schema

pytestmark = pytest.mark.needs("anthropic", "anthropic")


def test_every_anthropic_tool_survives_transform_schema() -> None:
    tools = export("anthropic")

    transformed = {tool["name"]: transform_schema(tool["input_schema"]) for tool in tools}

    assert [tool["name"] for tool in tools] == list(mcp_input_schemas())
    for name, schema in transformed.items():
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        # every tool that takes a prompt needs one, but vary_image and upscale_image (their prompt is optional)
        assert (
            "prompt" not in schema["properties"]
            or "prompt" in schema["required"]
            or name in ("vary_image", "upscale_image")
        ), name


async def test_transformed_anthropic_tools_fill_validate_plan_and_run(hosted_settings: Settings) -> None:
    converted = {tool["name"]: transform_schema(tool["input_schema"]) for tool in export("anthropic")}

    outputs = await exercise(hosted_settings, converted)

    assert outputs["generate_image"]["provider"] in ("krea", "fal")
