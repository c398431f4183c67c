"""Tests for the exported tool definitions: each format's shape, strict mode's rules, the size budget."""

from __future__ import annotations

import json
from typing import Any

import mcp.types
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from fluxroute.errors import InvalidRequest
from fluxroute.prompts import short_guide
from fluxroute.tools import EXPORT_FORMATS, export, to_anthropic, to_mcp, to_openai, tool_specs

NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
OBJECT_SCHEMA = {
    "type": "object",
    "required": ["type", "properties"],
    "properties": {"type": {"const": "object"}, "properties": {"type": "object"}},
}
# Chat Completions `tools[]` entry, as OpenAI documents it.
OPENAI_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "description", "parameters"],
            "additionalProperties": False,
            "properties": {
                "name": NAME,
                "description": {"type": "string", "minLength": 1},
                "parameters": OBJECT_SCHEMA,
                "strict": {"type": "boolean"},
            },
        },
    },
}
# Anthropic Messages API `tools[]` entry (client tools).
ANTHROPIC_TOOL = {
    "type": "object",
    "required": ["name", "description", "input_schema"],
    "additionalProperties": False,
    "properties": {"name": NAME, "description": {"type": "string", "minLength": 1}, "input_schema": OBJECT_SCHEMA},
}
# What OpenAI's Structured Outputs accept ("Supported schemas"); minLength, maxLength, default, title,
# allOf, oneOf, not, if/then/else and the rest are rejected.
OPENAI_STRICT_KEYWORDS = {
    "type", "description", "properties", "required", "additionalProperties", "items", "enum", "const",
    "anyOf", "$ref", "$defs", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
}  # fmt: skip


def all_schemas() -> list[tuple[str, dict[str, Any]]]:
    schemas = []
    for spec in tool_specs():
        schemas += [
            (f"{spec.name} input", spec.input_schema),
            (f"{spec.name} strict input", spec.strict_input_schema),
            (f"{spec.name} output", spec.output_schema),
        ]
    return schemas


@pytest.mark.parametrize(("label", "schema"), all_schemas(), ids=[label for label, _ in all_schemas()])
def test_every_exported_schema_is_valid_draft_2020_12(label: str, schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object", label


def test_mcp_definitions_validate_as_mcp_tools_and_keep_every_field() -> None:
    for exported in to_mcp():
        tool = mcp.types.Tool.model_validate(exported)

        assert tool.model_dump(by_alias=True, exclude_none=True, mode="json") == exported
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.annotations is not None


def test_mcp_annotations_say_only_generate_image_changes_anything_or_reaches_outside() -> None:
    hints = {exported["name"]: exported["annotations"] for exported in to_mcp()}

    assert hints["generate_image"] == {
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": False,
        "openWorldHint": True,
    }
    for name in ("plan_image_route", "list_image_models"):
        assert hints[name] == {
            "readOnlyHint": True,
            "destructiveHint": False,
            "idempotentHint": True,
            "openWorldHint": False,
        }


@pytest.mark.parametrize("strict", [False, True])
def test_openai_definitions_have_the_function_tool_shape(strict: bool) -> None:
    tools = to_openai(strict=strict)

    for tool in tools:
        Draft202012Validator(OPENAI_TOOL).validate(tool)
        assert tool["function"].get("strict", False) is strict
    assert [t["function"]["name"] for t in tools] == [s.name for s in tool_specs()]


def test_anthropic_definitions_have_the_client_tool_shape() -> None:
    tools = to_anthropic()

    for tool in tools:
        Draft202012Validator(ANTHROPIC_TOOL).validate(tool)
    assert [t["name"] for t in tools] == [s.name for s in tool_specs()]


def strict_mode_violations(schema: Any, where: str = "parameters") -> list[str]:
    """Every place `schema` breaks OpenAI's strict-mode rules."""
    found: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found += strict_mode_violations(item, f"{where}[{i}]")
        return found
    if not isinstance(schema, dict):
        return found
    found += [f"{where}: {key} is not supported" for key in schema if key not in OPENAI_STRICT_KEYWORDS]
    kinds = schema.get("type")
    if kinds == "object" or (isinstance(kinds, list) and "object" in kinds):
        if schema.get("additionalProperties") is not False:
            found.append(f"{where}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(schema.get("properties", {})):
            found.append(f"{where}: every property must be required")
    for name, sub in schema.get("properties", {}).items():
        found += strict_mode_violations(sub, f"{where}.{name}")
    for key in ("items", "anyOf"):
        if key in schema:
            found += strict_mode_violations(schema[key], f"{where}.{key}")
    return found


def test_the_strict_variant_obeys_openai_strict_mode_rules() -> None:
    for tool in to_openai(strict=True):
        parameters = tool["function"]["parameters"]

        assert strict_mode_violations(parameters) == []
        assert parameters["type"] == "object" and "anyOf" not in parameters


def test_the_strict_variant_lets_every_optional_field_be_null() -> None:
    for spec in tool_specs():
        plain, strict = spec.input_schema, spec.strict_input_schema
        optional = set(plain["properties"]) - set(plain.get("required", ()))
        for name in optional:
            Draft202012Validator(strict["properties"][name]).validate(None)
        for name in plain.get("required", ()):
            assert not Draft202012Validator(strict["properties"][name]).is_valid(None), name


def test_the_strict_variant_states_the_defaults_it_had_to_drop() -> None:
    strict = next(s for s in tool_specs() if s.name == "generate_image").strict_input_schema

    assert "Default 1." in strict["properties"]["num_images"]["description"]
    assert "Default png." in strict["properties"]["output_format"]["description"]


def _what_the_model_reads(tool: dict[str, object]) -> dict[str, object]:
    """An MCP client hands its model the name, description and input schema; the output schema and the
    annotations stay with the client (Anthropic and OpenAI tool definitions have no place for them)."""
    return {key: tool[key] for key in ("name", "description", "inputSchema")}


BUDGET = 12_000  # characters of compact JSON: what every tool costs a model's context, all together


def budget_shares() -> dict[str, int]:
    """The one measure of the size budget: compact JSON of each tool's name, description and input schema."""
    return {
        spec.name: len(
            json.dumps(
                {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema},
                separators=(",", ":"),
            )
        )
        for spec in tool_specs()
    }


def test_all_tool_definitions_a_model_reads_stay_within_the_budget() -> None:
    shares = budget_shares()
    total = sum(shares.values())
    print(
        f"tool definitions: {total} of {BUDGET} characters (compact JSON); "
        + ", ".join(f"{name} {size} ({size / total:.0%})" for name, size in shares.items())
    )
    assert total <= BUDGET


def test_the_whole_mcp_tool_listing_with_output_schemas_stays_within_18000_characters() -> None:
    # 16,000 for six tools; draft_images and finalize_image (input and output schemas) add about 3,400
    assert len(json.dumps(export("mcp"))) <= 18_000


@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_every_export_survives_a_json_round_trip(format: str) -> None:
    exported = export(format)

    assert json.loads(json.dumps(exported)) == exported
    assert len(exported) == len(tool_specs())


def test_export_names_the_formats_it_knows_when_given_another() -> None:
    with pytest.raises(InvalidRequest) as caught:
        export("vertex")

    (error,) = caught.value.errors
    assert (error.field, error.value) == ("format", "vertex")
    assert "mcp, openai, openai-strict, anthropic, gemini" in error.allowed


def test_the_gemini_export_speaks_gemini_schema() -> None:
    """One upper-case type per node, `nullable` instead of null types or values, nothing Gemini's Schema lacks."""

    def walk(node: dict[str, object]) -> None:
        assert isinstance(node.get("type"), str) and str(node["type"]).isupper(), node
        assert "additionalProperties" not in node and "exclusiveMinimum" not in node
        assert None not in node.get("enum", [])  # type: ignore[operator]
        for sub in dict(node.get("properties", {})).values():  # type: ignore[call-overload]
            walk(sub)
        if isinstance(node.get("items"), dict):
            walk(node["items"])  # type: ignore[arg-type]

    for declaration in export("gemini"):
        assert set(declaration) == {"name", "description", "parameters"}
        walk(declaration["parameters"])
    seed = export("gemini")[0]["parameters"]["properties"]["seed"]
    assert (seed["type"], seed["nullable"]) == ("INTEGER", True)


def test_exports_are_copies_that_callers_may_change() -> None:
    to_mcp()[0]["inputSchema"]["properties"].clear()
    to_openai()[0]["function"]["parameters"]["required"].clear()

    assert to_mcp()[0]["inputSchema"]["properties"]
    assert to_openai()[0]["function"]["parameters"]["required"] == ["prompt"]


def keywords(schema: Any) -> set[str]:
    """Every keyword used anywhere in `schema` (property names are not keywords)."""
    if isinstance(schema, list):
        return set().union(*(keywords(item) for item in schema))
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        children = value.values() if key == "properties" else [value]
        found |= set().union(*(keywords(child) for child in children))
    return found


@pytest.mark.parametrize(("label", "schema"), all_schemas(), ids=[label for label, _ in all_schemas()])
def test_schemas_are_compact_no_titles_definitions_or_unions(label: str, schema: dict[str, Any]) -> None:
    assert keywords(schema).isdisjoint({"title", "$defs", "$ref", "anyOf"}), label


IMAGE_TOOLS = [s for s in tool_specs() if s.name in ("generate_image", "plan_image_route", "list_image_models")]


@pytest.mark.parametrize("spec", IMAGE_TOOLS, ids=lambda spec: spec.name)
def test_each_image_tool_description_names_the_three_model_families_and_stays_short(spec: Any) -> None:
    for family in ("FLUX.1 Krea [dev]", "FLUX.1 [dev]", "Krea 2"):
        assert family in spec.description
    assert len(spec.description) <= 1_300


def test_the_plan_description_says_when_to_call_it_first() -> None:
    text = next(s for s in tool_specs() if s.name == "plan_image_route").description

    assert "Spends nothing; use it first if the user mentions budget, license or provider" in text


def test_the_generate_description_says_how_to_prompt_and_what_it_costs() -> None:
    text = next(s for s in tool_specs() if s.name == "generate_image").description

    for family in ("flux-krea-dev", "flux-dev", "krea-2"):
        assert short_guide(family) in text  # each family's guide in short, from the prompt library
    assert "Guidance 4.5" in text and "negative prompt" in text and "2.35:1" in text
    assert "get_image_job" in text and "confirm_spend=true" in text
    assert "non-commercial" in text
    assert "$0.007/image" in text and "$0.025/MP" in text and "$0.03/image" in text and "$0.06/image" in text
