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
from fluxroute.tools.validation import validate

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


# characters of compact JSON: what every tool costs a model's context, all together. 12,000 held until the image
# tools landed: edit_image, vary_image and the loras option add about 4,600, upscale_image about 2,000 (the edit
# and vary model lists shrank to the models that serve them), the fourth provider ("ray", a GPU fleet) in the
# provider enums about 40.
BUDGET = 19_050


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


# characters of compact JSON: the whole tools/list answer, output schemas and hints included
LISTING_CAP = 29_500


def test_the_whole_mcp_tool_listing_with_output_schemas_stays_under_the_listing_cap() -> None:
    # not the budget above (what a model reads): a cap on what a client receives, measured the same way
    size = len(json.dumps(export("mcp"), separators=(",", ":")))
    print(f"MCP tool listing: {size} of {LISTING_CAP} characters (compact JSON, output schemas included)")
    assert size <= LISTING_CAP


def undescribed(schema: dict[str, Any], where: str = "") -> list[str]:
    """Every property, at any depth (array items included), that has no description."""
    found: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{where}.{name}" if where else name
        if not sub.get("description"):
            found.append(path)
        found += undescribed(sub, path)
        if isinstance(sub.get("items"), dict):
            found += undescribed(sub["items"], f"{path}[]")
    return found


def test_every_property_of_every_input_schema_has_a_description() -> None:
    generate = next(s for s in tool_specs() if s.name == "generate_image").input_schema
    for spec in tool_specs():
        missing = undescribed(spec.input_schema)
        if spec.name == "plan_image_route":
            # its description says it takes generate_image's arguments; its own must still be described
            assert "generate_image, same arguments" in spec.description
            missing = [path for path in missing if path.split(".")[0].removesuffix("[]") not in generate["properties"]]
        assert missing == [], spec.name


def test_arguments_shared_with_generate_image_are_described_in_the_same_words() -> None:
    specs = {spec.name: spec.input_schema["properties"] for spec in tool_specs()}
    shared = ("prompt", "model", "size", "seed", "usage", "max_cost_usd", "provider", "idempotency_key")

    for name in shared:
        assert specs["draft_images"][name]["description"] == specs["generate_image"][name]["description"], name
    key = specs["generate_image"]["idempotency_key"]["description"]
    assert specs["finalize_image"]["idempotency_key"]["description"] == key
    assert specs["get_image_job"]["job_id"]["description"] == specs["cancel_image_job"]["job_id"]["description"]


def test_input_schemas_leave_additional_properties_to_the_checks_and_strict_mode() -> None:
    """google-genai's MCP converter (and others) cannot read `additionalProperties: false`; unknown fields are
    refused by the checks all the same, and OpenAI's strict form, which needs it, has it on every object."""
    for spec in tool_specs():
        assert "additionalProperties" not in keywords(spec.input_schema), spec.name
        assert spec.check_schema["additionalProperties"] is False, spec.name
    for tool in to_mcp():
        assert "additionalProperties" not in keywords(tool["inputSchema"]), tool["name"]
    for tool in to_openai(strict=True):
        assert tool["function"]["parameters"]["additionalProperties"] is False
    with pytest.raises(InvalidRequest) as caught:
        validate("generate_image", {"prompt": "a fox", "style_references": [{"url": "https://e.com/a.png", "x": 1}]})
    assert [error.field for error in caught.value.errors] == ["style_references.0.x"]


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
