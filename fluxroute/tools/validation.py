"""Tool arguments checked against the exported schema, every problem named: field, value, what is allowed."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import fastjsonschema  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.tools.image_args import DEPRECATED, ImageArgs
from fluxroute.tools.schema import JsonSchema
from fluxroute.tools.specs import get_tool
from fluxroute.types import ASPECT_RATIO_PATTERN, field_errors

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped, unused-ignore]

TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}

# Patterns said as an example the caller can copy.
PATTERN_EXAMPLES = {ASPECT_RATIO_PATTERN: "16:9 or 2.35:1"}

_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def validate(name: str, args: object) -> BaseModel:
    """Check `args` for tool `name` and parse them into its input model (an ImageRequest for
    generate_image and plan_image_route).

    A null for an optional field counts as not given (OpenAI strict mode sends every field), and so do
    null arguments as a whole.

    Raises:
        InvalidRequest: unknown tool, or one FieldError per problem: schema errors first (all of them),
            then the model's own rules (such as width without height).
    """
    spec = get_tool(name)
    args = _drop_nulls({} if args is None else args, spec.input_schema)
    old: dict[str, object] = {}
    if isinstance(args, dict) and issubclass(spec.input_model, ImageArgs):
        # names replaced by `size` (and `provider`), taken unpublished for one release
        old = {key: args[key] for key in DEPRECATED if key in args}
        args = {key: value for key, value in args.items() if key not in old}
    try:
        _fast_check(name)(args)
    except fastjsonschema.JsonSchemaException:
        # the compiled check stops at the first problem; jsonschema finds and explains all of them
        problems = _dedupe(error for found in _validator(name).iter_errors(args) for error in _field_errors(found))
        raise InvalidRequest(problems or [FieldError("arguments", args, "does not match the input schema")]) from None
    try:
        return spec.input_model.model_validate({**args, **old} if isinstance(args, dict) and old else args)
    except PydanticValidationError as exc:
        raise InvalidRequest(field_errors(exc)) from None


def _drop_nulls(value: object, schema: JsonSchema) -> object:
    """`value` without the nulls given for optional properties, at every level the schema describes."""
    if isinstance(value, dict) and "properties" in schema:
        required = set(schema.get("required", ()))
        properties: dict[str, JsonSchema] = schema["properties"]
        return {
            key: _drop_nulls(item, properties.get(key, {}))
            for key, item in value.items()
            if item is not None or key in required or key not in properties
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_nulls(item, schema["items"]) for item in value]
    return value


@functools.cache
def _fast_check(name: str) -> Callable[[object], object]:
    """The same schema compiled to Python: the common case (valid arguments) costs microseconds."""
    check: Callable[[object], object] = fastjsonschema.compile(get_tool(name).check_schema, use_default=False)
    return check


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    # imported on the first invalid call: valid arguments never need it (the compiled check passes them)
    from jsonschema import Draft202012Validator

    schema = get_tool(name).check_schema
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _field_errors(error: ValidationError) -> Iterator[FieldError]:
    """One jsonschema error in our words; `required` and `additionalProperties` name each field."""
    path = [str(part) for part in error.absolute_path]
    field = ".".join(path) or "arguments"
    keyword, expected, schema = error.validator, error.validator_value, error.schema
    if keyword == "required":
        for name in expected:
            if name not in error.instance:
                yield FieldError(".".join([*path, name]), None, "required", missing=True)
    elif keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for name in error.instance:
            if name not in allowed:
                yield FieldError(".".join([*path, name]), error.instance[name], _unknown_field(name, allowed))
    elif keyword == "type":
        kinds = [expected] if isinstance(expected, str) else expected
        yield FieldError(field, error.instance, "must be " + " or ".join(TYPE_WORDS[k] for k in kinds))
    elif keyword in _BOUNDS:
        yield FieldError(field, error.instance, _range(schema))
    elif keyword == "enum":
        yield FieldError(field, error.instance, "one of: " + ", ".join(str(v) for v in expected))
    elif keyword == "pattern":
        example = PATTERN_EXAMPLES.get(expected)
        yield FieldError(field, error.instance, f"must look like {example}" if example else f"must match {expected}")
    elif keyword == "minLength":
        yield FieldError(
            field, error.instance, "must not be empty" if expected == 1 else f"at least {expected} characters"
        )
    elif keyword == "maxLength":
        yield FieldError(field, error.instance, f"at most {expected} characters")
    elif keyword == "minItems":
        yield FieldError(field, error.instance, f"at least {expected} items")
    elif keyword == "maxItems":
        yield FieldError(field, error.instance, f"at most {expected} items")
    else:
        yield FieldError(field, error.instance, error.message)


def _unknown_field(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}allowed fields: {', '.join(allowed)}"


def _range(schema: JsonSchema) -> str:
    """'allowed range 1–4', or the one-sided form: 'must be ≥ 0', 'must be > 0 and ≤ 16'."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"allowed range {_number(low)}–{_number(high)}"
    parts = []
    if low is not None:
        parts.append(f"≥ {_number(low)}")
    if "exclusiveMinimum" in schema:
        parts.append(f"> {_number(schema['exclusiveMinimum'])}")
    if high is not None:
        parts.append(f"≤ {_number(high)}")
    if "exclusiveMaximum" in schema:
        parts.append(f"< {_number(schema['exclusiveMaximum'])}")
    return "must be " + " and ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _dedupe(errors: Iterable[FieldError]) -> list[FieldError]:
    """Each problem once (jsonschema reports `required` once per missing name)."""
    return list({(e.field, e.allowed): e for e in errors}.values())
