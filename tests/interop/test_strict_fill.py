"""The strict fill the interop tests rely on: what a strict model sends for each kind of property."""

from __future__ import annotations

import pytest

from tests.interop.strict_fill import PROMPT, fill

STRICT = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "seed": {"type": ["integer", "null"], "minimum": 0},
        "usage": {"enum": ["commercial", "non-commercial", None]},
        "style": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "model": {"type": "string", "enum": ["auto", "flux-dev"]},
        "prefer": {"type": "string", "enum": ["cost", "speed"]},
        "size": {"type": "string"},
        "num_images": {"type": "integer", "description": "1-4 (minimum=1)"},
        "wait_s": {"type": "number", "exclusiveMinimum": 0},
        "style_references": {"type": "array", "items": {"type": "object"}},
        "confirm_spend": {"type": "boolean"},
        "job_id": {"type": "string"},
        "nested": {
            "type": "object",
            "properties": {"url": {"type": "string"}, "note": {"type": "string"}},
            "required": ["url"],
        },
    },
    "additionalProperties": False,
}
STRICT["required"] = list(STRICT["properties"])
# fluxroute's own schema: defaults and bounds a converter may have dropped
ORIGINAL = {
    "type": "object",
    "properties": {
        "prefer": {"enum": ["cost", "speed"], "default": "speed"},
        "size": {"type": "string", "default": "auto"},
        "num_images": {"type": "integer", "minimum": 1},
    },
}


def test_a_strict_fill_sends_null_auto_defaults_a_prompt_and_lower_bounds() -> None:
    args = fill(STRICT, ORIGINAL, job_id="job-1")

    assert args == {
        "prompt": PROMPT,
        "seed": None,
        "usage": None,
        "style": None,
        "model": "auto",
        "prefer": "speed",
        "size": "auto",
        "num_images": 1,
        "wait_s": 0.5,
        "style_references": [],
        "confirm_spend": False,
        "job_id": "job-1",
        "nested": {"url": PROMPT},
    }


def test_only_required_properties_are_sent() -> None:
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}, "seed": {"type": "integer"}}}

    assert fill({**schema, "required": ["prompt"]}) == {"prompt": PROMPT}
    assert fill(schema) == {}


def test_gemini_spelling_reads_the_same() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "prompt": {"type": "STRING"},
            "seed": {"type": "INTEGER", "nullable": True},
            "output_format": {"type": "STRING", "enum": ["png", "jpeg"], "default": "jpeg"},
            "num_images": {"type": "INTEGER", "minimum": 2},
        },
        "required": ["prompt", "seed", "output_format", "num_images"],
    }

    assert fill(schema) == {"prompt": PROMPT, "seed": None, "output_format": "jpeg", "num_images": 2}


def test_a_property_no_model_could_fill_is_an_error() -> None:
    with pytest.raises(AssertionError, match="mystery"):
        fill({"type": "object", "properties": {"mystery": {}}, "required": ["mystery"]})
