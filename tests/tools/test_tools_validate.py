"""Tests for validate(): every problem named by field, value and what is allowed; valid arguments parsed."""

from __future__ import annotations

import json

import pytest

from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.tools import GenerateArgs, ModelsQuery, tool_specs, validate
from fluxroute.tools.image_args import StyleImage
from fluxroute.types import ImageRequest


def problems(name: str, args: object) -> list[FieldError]:
    with pytest.raises(InvalidRequest) as caught:
        validate(name, args)
    return caught.value.errors


def only_problem(name: str, args: object) -> FieldError:
    (error,) = problems(name, args)
    return error


def test_a_wrong_type_names_the_field_the_value_and_the_type_wanted() -> None:
    error = only_problem("generate_image", {"prompt": "a fox", "num_images": "two"})

    assert (error.field, error.value) == ("num_images", "two")
    assert error.allowed == "must be an integer"
    assert str(error) == "num_images: got 'two'; must be an integer"


def test_a_value_out_of_range_names_the_allowed_range() -> None:
    error = only_problem("generate_image", {"prompt": "a fox", "num_images": 9})

    assert (error.field, error.value) == ("num_images", 9)
    assert error.allowed == "allowed range 1–4"


def test_a_one_sided_bound_is_said_as_such_and_no_schema_publishes_an_exclusive_one() -> None:
    negative = only_problem("generate_image", {"prompt": "a fox", "max_cost_usd": -1})

    assert (negative.field, negative.value, negative.allowed) == ("max_cost_usd", -1, "must be ≥ 0")
    assert all("exclusiveM" not in json.dumps(spec.input_schema) for spec in tool_specs())


def test_an_unknown_field_is_named_with_the_fields_allowed_and_a_likely_fix() -> None:
    error = only_problem("generate_image", {"prompt": "a fox", "num_imgs": 2})

    assert (error.field, error.value) == ("num_imgs", 2)
    assert error.allowed.startswith("unknown field; did you mean 'num_images'? allowed fields: prompt, model,")
    assert "idempotency_key" in error.allowed


def test_a_bad_enum_value_lists_the_values_allowed() -> None:
    error = only_problem("generate_image", {"prompt": "a fox", "output_format": "gif"})

    assert (error.field, error.value) == ("output_format", "gif")
    assert error.allowed == "one of: png, jpeg"


def test_a_missing_prompt_is_reported_as_missing() -> None:
    error = only_problem("generate_image", {"num_images": 2})

    assert (error.field, error.missing, error.allowed) == ("prompt", True, "required")
    assert str(error) == "prompt: missing; required"


def test_an_empty_string_is_refused_where_text_is_needed() -> None:
    error = only_problem("generate_image", {"prompt": ""})

    assert (error.field, error.value, error.allowed) == ("prompt", "", "must not be empty")


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    found = problems(
        "generate_image",
        {"num_images": 0, "output_format": "gif", "steps": 2.5, "colour": "red"},
    )

    assert [(e.field, e.value) for e in found] == [
        ("num_images", 0),
        ("steps", 2.5),
        ("output_format", "gif"),
        ("prompt", None),
        ("colour", "red"),
    ]


def test_problems_inside_lists_of_objects_name_the_full_path() -> None:
    found = problems(
        "generate_image",
        {"prompt": "a fox", "style_references": [{"url": "https://x/a.png"}, {"strength": 3, "extra": 1}]},
    )

    assert {(e.field, e.allowed) for e in found} == {
        ("style_references.1.strength", "allowed range 0–1"),
        ("style_references.1.url", "required"),
        ("style_references.1.extra", "unknown field; allowed fields: url, strength"),
    }


def test_a_cross_field_rule_comes_back_as_a_field_error_too() -> None:
    error = only_problem("generate_image", {"prompt": "a fox", "size": "16:9", "width": 1024})

    assert (error.field, error.value) == ("size, width", {"size": "16:9", "width": 1024})
    assert error.allowed == "give size only (it replaces width)"


def test_pydantic_rules_beyond_the_schema_are_reported_after_it_passes() -> None:
    error = only_problem("generate_image", {"prompt": "   "})

    assert (error.field, error.allowed) == (
        "prompt",
        "must contain visible text (whitespace and invisible characters alone are not)",
    )


def test_valid_arguments_parse_to_an_image_request() -> None:
    request = validate(
        "generate_image",
        {
            "prompt": "a fox",
            "model": "flux-dev",
            "size": "16:9@2MP",
            "style_references": [{"url": "https://example.com/style.png"}],
        },
    ).request()

    assert isinstance(request, ImageRequest)
    assert (request.prompt, request.model, request.aspect_ratio, request.megapixels) == ("a fox", "flux-dev", "16:9", 2)
    assert request.style_references[0].strength == 0.5


@pytest.mark.parametrize(
    ("size", "fields"),
    [
        ("auto", {}),
        ("1024x768", {"width": 1024, "height": 768}),
        ("16:9", {"aspect_ratio": "16:9"}),
        ("2.35:1@1.5MP", {"aspect_ratio": "2.35:1", "megapixels": 1.5}),
        ("landscape_16_9", {"image_size": "landscape_16_9"}),
    ],
)
def test_every_form_of_size_becomes_the_request_fields_it_stands_for(size: str, fields: dict[str, object]) -> None:
    request = validate("generate_image", {"prompt": "a fox", "size": size}).request()
    assert {name: getattr(request, name) for name in fields} == fields
    assert all(
        getattr(request, name) == ImageRequest.model_fields[name].default
        for name in ("width", "aspect_ratio", "image_size")
        if name not in fields
    )


@pytest.mark.parametrize("size", ["big", "1024", "16:9@", "0:1", "16x", "1:20"])
def test_a_size_in_no_known_form_is_refused_by_name(size: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate("plan_image_route", {"prompt": "a fox", "size": size}).request()
    [error] = refused.value.errors
    assert error.field == "size" and error.value == size


def test_old_sizing_names_still_work_for_one_release_and_say_so() -> None:
    args = validate("plan_image_route", {"prompt": "a fox", "aspect_ratio": "16:9", "megapixels": 2})
    assert (args.request().aspect_ratio, args.request().megapixels) == ("16:9", 2)
    assert "deprecated" in args.deprecations()[0] and "size" in args.deprecations()[0]


def test_nulls_from_openai_strict_mode_count_as_not_given() -> None:
    spec = next(s for s in tool_specs() if s.name == "generate_image")
    every_field_null: dict[str, object] = dict.fromkeys(spec.strict_input_schema["properties"])
    every_field_null |= {
        "prompt": "a fox",
        "style_references": [{"url": "https://example.com/style.png", "strength": None}],
    }

    args = validate("generate_image", every_field_null)

    assert args == GenerateArgs(prompt="a fox", style_references=[StyleImage(url="https://example.com/style.png")])


def test_a_null_for_a_required_field_is_still_a_wrong_type() -> None:
    error = only_problem("generate_image", {"prompt": None})

    assert (error.field, error.value, error.allowed) == ("prompt", None, "must be a string")


def test_list_image_models_takes_no_arguments_or_null_arguments() -> None:
    assert validate("list_image_models", {}) == ModelsQuery()
    assert validate("list_image_models", None) == ModelsQuery()
    assert validate("list_image_models", {"model": "krea-2", "include_unavailable": False}) == ModelsQuery(
        model="krea-2", include_unavailable=False
    )


def test_arguments_that_are_not_an_object_are_refused() -> None:
    error = only_problem("plan_image_route", ["a fox"])

    assert (error.field, error.value, error.allowed) == ("arguments", ["a fox"], "must be an object")


def test_an_unknown_tool_is_refused_with_the_names_there_are() -> None:
    error = only_problem("make_picture", {"prompt": "a fox"})

    assert (error.field, error.value) == ("name", "make_picture")
    assert error.allowed == "one of: " + ", ".join(spec.name for spec in tool_specs())
    assert "generate_image" in error.allowed and "rewrite_image_prompt" in error.allowed


def edge_arguments() -> list[dict[str, object]]:
    """For each top-level field: its bounds and every enum value, with whatever other field its rules need."""
    spec = next(s for s in tool_specs() if s.name == "generate_image")
    companions: dict[str, dict[str, object]] = {"strength": {"init_image": "https://example.com/start.png"}}
    cases = []
    for name, prop in spec.input_schema["properties"].items():
        values = [prop[key] for key in ("minimum", "maximum") if key in prop]
        values += [prop["exclusiveMinimum"] + 0.001] if "exclusiveMinimum" in prop else []
        values += prop.get("enum", [])
        values += [prop["items"]["enum"]] if "enum" in prop.get("items", {}) else []
        cases += [{"prompt": "a fox", **companions.get(name, {}), name: value} for value in values]
    return cases


@pytest.mark.parametrize("args", edge_arguments(), ids=str)
def test_values_at_the_edges_of_the_schema_parse_as_requests(args: dict[str, object]) -> None:
    assert isinstance(validate("generate_image", args).request(), ImageRequest)
