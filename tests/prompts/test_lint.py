"""lint_prompt finds what works against a request, each warning with a suggestion, and stays quiet on a
good prompt."""

from __future__ import annotations

import pytest

from fluxroute.prompts import lint_prompt
from fluxroute.types import ImageRequest

GOOD = (
    "A fisherman mending a net on a wooden pier at dawn, weathered hands, shot on a 50mm lens, "
    "cool early light from the sea, natural muted color"
)


def codes(prompt: str, **request: object) -> list[str]:
    return [w.code for w in lint_prompt(prompt, ImageRequest(prompt=prompt, **request))]  # type: ignore[arg-type]


def test_a_good_prompt_gets_no_warnings() -> None:
    assert lint_prompt(GOOD) == ()
    assert codes(GOOD, model="flux-krea-dev", aspect_ratio="3:2") == []


def test_every_warning_says_what_to_do() -> None:
    for warning in lint_prompt('masterpiece, a cat, no dogs, vertical, (cat:1.2), "a long text to render here now"'):
        assert warning.message and warning.suggestion
        assert str(warning).startswith(f"{warning.code}: ")


@pytest.mark.parametrize(
    ("prompt", "request_fields", "code"),
    [
        ("a cat", {}, "too_short"),
        ("a photo of an anime girl", {}, "conflicting_styles"),
        ("black and white photo of a vibrant market", {}, "conflicting_styles"),
        ("vertical wallpaper of a forest at dawn with fog", {"aspect_ratio": "16:9"}, "orientation_mismatch"),
        ("panoramic view of the alps at sunrise", {}, "orientation_mismatch"),
        ("horizontal view of the alps at sunrise", {"image_size": "portrait_4_3"}, "orientation_mismatch"),
        ("square image of pancakes with syrup", {"width": 768, "height": 1024}, "orientation_mismatch"),
        ("a street at dawn with wet cobblestones, no cars", {}, "negation"),
        ("a cat on a sofa in the afternoon sun", {"negative_prompt": "dogs"}, "negative_prompt_ignored"),
        ("a cat on a sofa in the afternoon sun " * 60, {"model": "flux-dev"}, "over_budget"),
        ("un gato durmiendo en una ventana al atardecer", {}, "non_english"),
        ("一只橘猫在窗台上晒太阳", {"model": "flux-dev"}, "non_english"),
        ("masterpiece, best quality, a cat on a sofa", {}, "quality_tags"),
        ("a cat on a sofa, (fluffy:1.4), --ar 16:9", {"aspect_ratio": "16:9"}, "foreign_syntax"),
        ("a wooden sign that says welcome home, pine forest", {}, "text_rendering"),
        ('a poster reading "we demand clean air and water for every child"', {}, "text_rendering"),
    ],
)
def test_each_problem_is_found(prompt: str, request_fields: dict[str, object], code: str) -> None:
    assert code in codes(prompt, **request_fields)


@pytest.mark.parametrize(
    ("prompt", "request_fields", "code"),
    [
        ("a portrait of a violinist on stage under a spotlight", {"aspect_ratio": "16:9"}, "orientation_mismatch"),
        ("a landscape of rolling hills under a summer sky", {"aspect_ratio": "2:3"}, "orientation_mismatch"),
        ("vertical banner of a tall tree at dawn with fog", {"aspect_ratio": "9:16"}, "orientation_mismatch"),
        ("a photorealistic painting of a harbour at dusk", {}, "conflicting_styles"),
        ('a chalkboard that reads "SOUP OF THE DAY" in a cafe', {}, "text_rendering"),
        ("a desk with no text on the papers, lamp light", {}, "text_rendering"),
        ("una piazza di Roma sotto la pioggia con le luci", {"model": "krea-2"}, "non_english"),
        ("a cat on a sofa in the afternoon sun", {"model": "krea-2"}, "over_budget"),
    ],
)
def test_what_is_not_a_problem_is_not_reported(prompt: str, request_fields: dict[str, object], code: str) -> None:
    assert code not in codes(prompt, **request_fields)


def test_krea_2_is_held_to_characters_not_tokens() -> None:
    long = "a cat on a sofa in the afternoon sun, " * 50
    assert "over_budget" in codes(long, model="krea-2")
    assert "over_budget" not in codes(long[:1700], model="krea-2")


def test_a_medium_after_the_clip_window_is_reported() -> None:
    details = ", ".join(f"detail number {i} of the scene" for i in range(20))
    assert "late_medium" in codes(f"a harbour at dusk, {details}, watercolor painting", model="flux-dev")
    assert "late_medium" not in codes(f"a watercolor painting of a harbour at dusk, {details}", model="flux-dev")


def test_the_negative_prompt_note_names_the_routes_that_use_it() -> None:
    request = ImageRequest(prompt="a cat", model="krea-2", negative_prompt="dogs")
    warning = next(w for w in lint_prompt("a cat", request) if w.code == "negative_prompt_ignored")
    assert "Krea 2 has no route" in warning.message


def test_model_argument_overrides_the_request() -> None:
    request = ImageRequest(prompt="x", model="flux-dev")
    long = "a cat on a sofa in the afternoon sun, " * 40
    assert "over_budget" in [w.code for w in lint_prompt(long, request)]
    assert "over_budget" not in [w.code for w in lint_prompt(long, request, model="krea-2")]
