"""The arguments a strict model must send for a converted tool schema, and nothing it may leave out.

A strict-mode converter (OpenAI strict, openai-agents, langchain, pydantic-ai) makes every property required;
the model then has to put a value in each. `fill` picks the value a careful model would pick when the user
asked for nothing but the prompt: null where null is allowed, "auto" where an enum offers it, the field's
default (read from fluxroute's own schema, since converters drop `default`), a prompt for strings, the
lowest value for numbers, nothing in arrays. Keywords are read in both JSON Schema and Gemini's dialect
(upper-case type names, `nullable`).
"""

from __future__ import annotations

import copy
from typing import Any

JsonSchema = dict[str, Any]

PROMPT = "a lighthouse at dusk"
NO_JOB = "job-that-does-not-exist"


def kinds(schema: JsonSchema) -> set[str]:
    """The JSON types `schema` names, lower case."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind.lower()}
    if isinstance(kind, list):
        return {str(k).lower() for k in kind}
    return set()


def allows_null(schema: JsonSchema) -> bool:
    options = schema.get("anyOf") or schema.get("oneOf") or []
    return (
        "null" in kinds(schema)
        or schema.get("nullable") is True
        or None in (schema.get("enum") or [])
        or any(isinstance(option, dict) and allows_null(option) for option in options)
    )


# a 64x64 gray PNG as a data: URI
SMALL_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAAAAACPAi4CAAAALElEQVR4nO3MoQEAAAjDMOByTueIGU"
    "Tqm97KmvAHAAAAAAAAAAAAAAAA8B44QHQBALYvz+QAAAAASUVORK5CYII="
)


def fill(schema: JsonSchema, original: JsonSchema | None = None, *, job_id: str = NO_JOB) -> dict[str, Any]:
    """Every required property of the object `schema`, filled; `original` is fluxroute's own schema of it."""
    value = fill_value(schema, original, "arguments", job_id)
    assert isinstance(value, dict), f"a tool's arguments must be an object, got {value!r} for {schema}"
    return value


def fill_value(schema: JsonSchema, original: JsonSchema | None, field: str, job_id: str = NO_JOB) -> Any:
    original = original if isinstance(original, dict) else {}
    if allows_null(schema):
        return None
    enum = schema.get("enum")
    if enum and "auto" in enum:
        return "auto"
    for source in (original, schema):
        if "default" in source:
            return copy.deepcopy(source["default"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return fill_value(options[0], None, field, job_id)
    if enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    found = kinds(schema) or kinds(original)
    if "object" in found or "properties" in schema:
        properties: dict[str, JsonSchema] = schema.get("properties") or {}
        originals: dict[str, JsonSchema] = original.get("properties") or {}
        return {
            name: fill_value(properties[name], originals.get(name), name, job_id)
            for name in schema.get("required") or []
            if name in properties
        }
    if "array" in found:
        return []
    if "string" in found:
        if field == "image":  # edit_image and vary_image: an image a strict model would pass (a small PNG)
            return SMALL_PNG
        return job_id if field == "job_id" else PROMPT
    if found & {"integer", "number"}:
        return _lowest(schema, original, integer="integer" in found)
    if "boolean" in found:
        return False
    raise AssertionError(f"no value a model could send for {field}: {schema}")


def _lowest(schema: JsonSchema, original: JsonSchema, *, integer: bool) -> int | float:
    """The minimum, from the converted schema or (where a converter moved it into prose) fluxroute's own."""
    for source in (schema, original):
        if "minimum" in source:
            return int(source["minimum"]) if integer else source["minimum"]
        if "exclusiveMinimum" in source:
            return int(source["exclusiveMinimum"]) + 1 if integer else source["exclusiveMinimum"] + 0.5
    return 0
