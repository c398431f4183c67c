"""The rewrite_image_prompt tool: strict input, compact output, the whole pipeline, short descriptions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fluxroute.prompts import (
    REWRITE_DESCRIPTION,
    REWRITE_FIELDS,
    RewriteOutput,
    RewriteQuery,
    rewrite_image_prompt,
    short_guide,
)
from fluxroute.prompts.families import FAMILIES


def test_descriptions_are_short_enough_for_every_export() -> None:
    assert len(REWRITE_DESCRIPTION) <= 400
    assert set(REWRITE_FIELDS) <= set(RewriteQuery.model_fields)
    assert all(len(text) <= 40 for text in REWRITE_FIELDS.values())
    assert all(len(short_guide(f)) <= 200 for f in FAMILIES)


@pytest.mark.parametrize(
    "arguments",
    [
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "a cat", "model": "sdxl"},
        {"prompt": "a cat", "aspect_ratio": "wide"},
        {"prompt": "a cat", "aspect_ratio": "20:1"},
        {"prompt": "a cat", "seed": 3},
        {"prompt": "x" * 10_001},
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RewriteQuery.model_validate(arguments)


def test_the_query_is_frozen_and_defaults_to_krea_dev() -> None:
    query = RewriteQuery(prompt="a cat")
    assert query.model == "flux-krea-dev"
    with pytest.raises(ValidationError):
        query.prompt = "a dog"  # type: ignore[misc]


def test_the_tool_reframes_enhances_fits_and_lints() -> None:
    out = rewrite_image_prompt(
        RewriteQuery(
            prompt="vertical shot of a lighthouse on a cliff, no people",
            model="flux-dev",
            negative_prompt="blurry, seagulls",
            aspect_ratio="16:9",
        )
    )
    assert out.prompt == (
        "vertical shot of a lighthouse on a cliff, deserted, empty surroundings. Sharp focus. Photograph, shot on a "
        "35mm lens, soft directional light, wide framing with depth from foreground to horizon, crisp, fine detail."
    )
    assert "reframed: 'no people' -> 'deserted, empty surroundings'" in out.changes
    assert any(c.startswith("added: lighting") for c in out.changes)
    assert out.dropped == []
    assert out.negative_prompt == "seagulls" and out.negative_prompt_ignored
    assert [w.split(":")[0] for w in out.warnings] == ["orientation_mismatch", "negative_prompt_ignored"]


def test_a_long_prompt_is_fitted_and_what_was_cut_is_listed() -> None:
    out = rewrite_image_prompt(RewriteQuery(prompt="a cat on a sofa in warm afternoon light, " * 60, model="krea-2"))
    assert len(out.prompt) <= 1800
    assert out.dropped
    assert RewriteOutput.model_validate(out.model_dump()) == out


def test_a_good_prompt_comes_back_with_nothing_to_report() -> None:
    prompt = (
        "A fisherman mending a net on a wooden pier at dawn, weathered hands, shot on a 50mm lens, "
        "cool early light from the sea, eye-level framing, natural muted color"
    )
    out = rewrite_image_prompt(RewriteQuery(prompt=prompt))
    assert out.prompt == prompt
    assert out.changes == [] and out.dropped == [] and out.warnings == []
    assert out.negative_prompt is None and not out.negative_prompt_ignored
