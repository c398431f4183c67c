"""Gemini: every `fluxroute tools --format gemini` declaration is a google-genai `types.FunctionDeclaration`
with a typed `types.Schema` (a keyword Gemini does not know is refused), wraps into a `types.Tool`, and the
calls a model fills from it validate, plan and run."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from fluxroute.settings import Settings
from fluxroute.tools import export
from tests.interop.calls import exercise, mcp_input_schemas

with contextlib.suppress(ImportError):
    from google.genai import types

pytestmark = pytest.mark.needs("google-genai", "google.genai")


def declarations() -> list[dict[str, Any]]:
    return export("gemini")


def test_every_gemini_declaration_validates_as_a_function_declaration() -> None:
    exported = declarations()

    parsed = [types.FunctionDeclaration.model_validate(declaration) for declaration in exported]

    assert [declaration.name for declaration in parsed] == list(mcp_input_schemas())
    for declaration in parsed:
        assert declaration.description, declaration.name
        assert declaration.parameters is not None, f"{declaration.name}: parameters must be a typed Schema"
        assert declaration.parameters.type == types.Type.OBJECT, declaration.name
        assert declaration.parameters_json_schema is None, declaration.name


def test_gemini_declarations_wrap_into_a_tool_and_a_request_config() -> None:
    tool = types.Tool(function_declarations=declarations())

    config = types.GenerateContentConfig(tools=[tool])

    assert config.tools is not None
    assert {d.name for d in tool.function_declarations or []} == set(mcp_input_schemas())


def test_gemini_schemas_keep_fluxroute_required_fields_and_nullability() -> None:
    for declaration in declarations():
        name, parameters = declaration["name"], declaration["parameters"]
        original = mcp_input_schemas()[name]
        schema = types.Schema.model_validate(parameters)
        assert sorted(schema.required or []) == sorted(original.get("required", [])), name
        assert sorted(schema.properties or {}) == sorted(original["properties"]), name


async def test_filled_gemini_calls_validate_plan_and_run(hosted_settings: Settings) -> None:
    converted = {declaration["name"]: declaration["parameters"] for declaration in declarations()}

    outputs = await exercise(hosted_settings, converted)

    assert outputs["list_image_models"]["models"], outputs["list_image_models"]


# the converter reads `tool.inputSchema` first, which the installed fastmcp marks deprecated on mcp's Tool
@pytest.mark.filterwarnings("ignore:Accessing `Tool.inputSchema` is deprecated")
def test_google_genais_own_mcp_converter_takes_every_tool_of_the_mcp_export() -> None:
    """A google-genai app holding an MCP session converts the listed tools with `mcp_to_gemini_tool`; it reads
    `additionalProperties` as a dict of sub-schemas, so a boolean there broke every tool."""
    import mcp.types
    from google.genai._mcp_utils import mcp_to_gemini_tool

    for name, exported in ((tool["name"], tool) for tool in export("mcp")):
        converted = mcp_to_gemini_tool(mcp.types.Tool.model_validate(exported))

        (declaration,) = converted.function_declarations or []
        assert declaration.name == name
        assert declaration.parameters is not None and declaration.parameters.type == types.Type.OBJECT, name
        assert sorted(declaration.parameters.properties or {}) == sorted(mcp_input_schemas()[name]["properties"])
        assert sorted(declaration.parameters.required or []) == sorted(mcp_input_schemas()[name].get("required", []))


def test_the_typed_schema_refuses_a_keyword_gemini_does_not_know() -> None:
    # the premise of the tests above: a JSON Schema keyword outside Gemini's subset fails validation
    with pytest.raises(ValueError, match="additionalItems"):
        types.Schema.model_validate({"type": "ARRAY", "items": {"type": "STRING"}, "additionalItems": False})
