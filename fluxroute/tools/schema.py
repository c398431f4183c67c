"""JSON Schema for tools: pydantic schemas compacted for an LLM's context, and OpenAI's strict form."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

JsonSchema = dict[str, Any]
Mode = Literal["input", "output"]

# Keywords OpenAI's strict mode accepts (Structured Outputs, "Supported schemas"): it rejects minLength,
# maxLength, default, title and the rest, so the strict variant keeps only these.
STRICT_KEYWORDS = frozenset(
    {
        *("type", "description", "enum", "const", "anyOf", "$ref", "$defs"),
        *("properties", "required", "additionalProperties"),
        *("items", "minItems", "maxItems"),
        *("pattern", "format"),
        *("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    }
)

_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}

# Output schemas describe fields this many objects deep (the result, and the objects in it).
OUTPUT_DEPTH = 2

# A readable order for people reading `fluxroute tools`; pydantic emits keys alphabetically.
_KEY_ORDER = ("type", "description", "properties", "items", "required", "additionalProperties", "enum")


def input_schema(
    model: type[BaseModel],
    field_descriptions: Mapping[str, str] | None = None,
    enums: Mapping[str, list[str]] | None = None,
) -> JsonSchema:
    """The compact schema a tool's arguments are checked against.

    No titles, no `$defs` (references inlined). Optional fields without a meaningful default are nullable
    (`["integer", "null"]`: null means the default) and left out of `required`, so a converter that makes
    every field required still leaves a model a way to say "no preference". Only keywords that every
    target reads alike: exclusive bounds become inclusive ones, and no `additionalProperties` (unknown fields
    are refused all the same: the checks read closed_schema). `field_descriptions` are set on the
    properties they name (`style_references.url`: a property of an array's items), and `enums` give
    top-level strings their allowed values (data, such as the catalog's model ids).
    """
    schema = _compact(model.model_json_schema(mode="validation"), "input")
    for name, values in (enums or {}).items():
        prop = schema["properties"][name]
        prop.pop("type", None)
        for key in ("minLength", "maxLength", "pattern"):
            prop.pop(key, None)
        prop["enum"] = list(values)
    for name, text in (field_descriptions or {}).items():
        # "outer.inner" names a property of the objects an array or object property holds
        *outer, leaf = name.split(".")
        node = schema
        for part in outer:
            node = node["properties"][part]
            node = node.get("items", node)
        node["properties"][leaf] = _ordered({**node["properties"][leaf], "description": text})
    return schema


def output_schema(model: type[BaseModel]) -> JsonSchema:
    """The compact schema of a tool's structured result (`model.model_dump(mode="json")`).

    Types, nullability and enums only: every dump carries every field and nothing else, so `required`
    and `additionalProperties` would only spend the size budget. Objects nested deeper than OUTPUT_DEPTH
    are said to be objects, without their fields (the tool description says what matters in them).
    """
    return _compact(model.model_json_schema(mode="serialization"), "output")


def strict_schema(schema: JsonSchema) -> JsonSchema:
    """OpenAI strict-mode form of an input schema: every property required, optional ones nullable
    (null means "use the default", which moves into the description), `additionalProperties: false`
    on every object, unsupported keywords removed."""
    return _strict(copy.deepcopy(schema))


def closed_schema(schema: JsonSchema) -> JsonSchema:
    """`schema` with `additionalProperties: false` on every object that lists its properties: what fluxroute
    checks arguments against (every input model forbids unknown fields), while the published schemas leave it
    out."""
    node = copy.deepcopy(schema)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: closed_schema(sub) for name, sub in node["properties"].items()}
        node["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        node["items"] = closed_schema(node["items"])
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [closed_schema(option) for option in node["anyOf"]]
    return _ordered(node)


def _compact(schema: JsonSchema, mode: Mode) -> JsonSchema:
    defs: dict[str, JsonSchema] = schema.pop("$defs", {})
    root = _shrink(_inline(schema, defs, ()), mode)
    root.pop("description", None)  # the model's docstring; the tool description says it better
    return root


def _inline(node: Any, defs: Mapping[str, JsonSchema], seen: tuple[str, ...]) -> Any:
    """Replace every `$ref` into `$defs` by a copy of its target; models must not be recursive."""
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"recursive schema through {name!r} cannot be inlined")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(defs[name], defs, (*seen, name)), **siblings}
    return {key: _inline(value, defs, seen) for key, value in node.items()}


def _shrink(node: JsonSchema, mode: Mode, depth: int = 0) -> JsonSchema:
    node = {k: v for k, v in node.items() if k != "title"}
    if "properties" in node and mode == "output" and depth >= OUTPUT_DEPTH:
        node = {"type": node.get("type", "object")}
    if "properties" in node:
        node.pop("description", None)  # a nested model's docstring; its fields carry the meaning
        node["properties"] = {name: _shrink(sub, mode, depth + 1) for name, sub in node["properties"].items()}
        if mode == "output":
            node.pop("required", None)
            node.pop("additionalProperties", None)
    if isinstance(node.get("items"), dict):
        node["items"] = _shrink(node["items"], mode, depth)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _shrink(node["additionalProperties"], mode, depth)
    if node.get("additionalProperties") in (True, False):
        # True is the JSON Schema default; False is left to the checks (closed_schema) and to strict mode:
        # converters such as google-genai's MCP one cannot read a boolean there
        del node["additionalProperties"]
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (inner,) = (option for option in options if option != {"type": "null"})
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        node = _nullable({**_shrink(inner, mode, depth), **rest})
    elif isinstance(options, list):
        node["anyOf"] = [_shrink(option, mode, depth) for option in options]
    if mode == "output" or node.get("default") in (None, []):
        node.pop("default", None)
    if "exclusiveMinimum" in node:  # not read alike everywhere (Gemini's Schema refuses it)
        node["minimum"] = node.pop("exclusiveMinimum")
    if "enum" in node and node.get("type") in ("string", ["string", "null"]):
        del node["type"]  # implied by the values
    return _ordered(node)


def _nullable(node: JsonSchema) -> JsonSchema:
    """`node` that also accepts null (an untyped schema already does)."""
    node = dict(node)
    kind = node.get("type")
    if isinstance(kind, str):
        node["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        node["type"] = [*kind, "null"]
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


def _strict(node: JsonSchema) -> JsonSchema:
    if isinstance(node.get("properties"), dict):
        required = set(node.get("required", ()))
        properties: dict[str, JsonSchema] = {}
        for name, sub in node["properties"].items():
            sub = _strict(sub)
            properties[name] = sub if name in required else _nullable(sub)
        node["properties"] = properties
        node["required"] = list(properties)
        node["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"])
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(option) for option in node["anyOf"]]
    if "enum" in node and "type" not in node:
        node["type"] = _json_type(node["enum"])  # compaction dropped it; strict mode wants it spelled out
    if "default" in node and "default" not in node.get("description", "").lower():
        default = node["default"]
        shown = default if isinstance(default, str) else repr(default)
        node["description"] = f"{node.get('description', '')} Default {shown}.".lstrip()
    return _ordered({k: v for k, v in node.items() if k in STRICT_KEYWORDS})


def _json_type(values: list[Any]) -> str | list[str]:
    kinds = list(dict.fromkeys(_JSON_TYPES[type(value)] for value in values))
    return kinds[0] if len(kinds) == 1 else kinds


def _ordered(node: JsonSchema) -> JsonSchema:
    def rank(key: str) -> tuple[int, str]:
        return (_KEY_ORDER.index(key) if key in _KEY_ORDER else len(_KEY_ORDER), key)

    return {key: node[key] for key in sorted(node, key=rank)}


# What Gemini's function-declaration Schema (an OpenAPI 3.0 subset; google-genai's typed `types.Schema`)
# takes; anything else is refused by the typed client.
GEMINI_KEYWORDS = frozenset(
    {
        *("type", "description", "enum", "nullable", "format", "default", "example"),
        *("properties", "required", "propertyOrdering", "items", "minItems", "maxItems", "anyOf"),
        *("minimum", "maximum", "minLength", "maxLength", "pattern"),
    }
)


def gemini_schema(schema: JsonSchema) -> JsonSchema:
    """An input schema in Gemini's Schema dialect: one type per node (upper case), `nullable` instead of a
    null type or value, `additionalProperties` left out (Gemini sends only declared properties)."""
    node = copy.deepcopy(schema)
    kind = node.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        kinds = [k for k in kind if k != "null"]
        node["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "enum" in node:
        nullable = nullable or None in node["enum"]
        node["enum"] = [value for value in node["enum"] if value is not None]
        node.setdefault("type", _json_type(node["enum"]))
        if node["type"] != "string":  # Gemini enums are strings
            node["enum"] = [str(value) for value in node["enum"]]
    if isinstance(node.get("type"), str):
        node["type"] = node["type"].upper()
    if nullable:
        node["nullable"] = True
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: gemini_schema(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = gemini_schema(node["items"])
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [gemini_schema(option) for option in node["anyOf"]]
    return _ordered({k: v for k, v in node.items() if k in GEMINI_KEYWORDS})


def single_typed(schema: JsonSchema) -> JsonSchema:
    """`schema` with each nullable written as `anyOf: [<the type>, {"type": "null"}]` instead of a type list
    or a null in an enum: the form Anthropic's SDK (`transform_schema`, strict tool use) reads."""
    node = copy.deepcopy(schema)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: single_typed(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = single_typed(node["items"])
    kind = node.get("type")
    nullable = (isinstance(kind, list) and "null" in kind) or None in node.get("enum", [])
    if not nullable:
        return node
    outer: JsonSchema = {key: node.pop(key) for key in ("description", "default") if key in node}
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        node["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "enum" in node:
        node["enum"] = [value for value in node["enum"] if value is not None]
    return _ordered({**outer, "anyOf": [node, {"type": "null"}]})
