"""enhance_prompt fills what is missing for the family and never duplicates or contradicts the user."""

from __future__ import annotations

import pytest

from fluxroute.prompts import enhance_prompt, find_negations
from fluxroute.prompts.enhance import FRAMINGS, LENSES, VOICES
from fluxroute.prompts.lexicon import QUALITY_TAGS, SUBJECT_NOUNS, cue_pattern
from fluxroute.prompts.slots import survey

FAMILIES = ("flux-krea-dev", "flux-dev", "krea-2")


def added(prompt: str, model: str = "flux-krea-dev", style: str | None = None) -> dict[str, str]:
    changes = enhance_prompt(prompt, model, style).changes
    return dict(c.text.split(": ", 1) for c in changes if c.kind == "added")  # type: ignore[misc]


def test_a_fragment_gets_every_part_for_krea_dev_as_one_appended_sentence() -> None:
    rewrite = enhance_prompt("a cat", "flux-krea-dev")
    assert rewrite.prompt == (
        "a cat. Natural photograph, shot on a 50mm lens, soft natural light, balanced, uncluttered composition, "
        "real textures and fine detail, natural, true-to-life color."
    )
    assert [c.text.split(":")[0] for c in rewrite.changes] == [
        "medium",
        "camera",
        "lighting",
        "composition",
        "detail",
        "palette",
    ]


def test_families_word_their_additions_differently() -> None:
    assert added("a cat", "flux-dev")["lighting"] == "soft directional light"
    assert "palette" not in added("a cat", "flux-dev")
    assert "palette" not in added("a cat", "krea-2")
    assert added("a cat", "flux-krea-dev")["palette"] == "natural, true-to-life color"


@pytest.mark.parametrize(
    ("prompt", "slot"),
    [
        ("a fox at golden hour", "lighting"),
        ("a fox lit by a street lamp", "lighting"),
        ("a fox, shot on Portra 400", "camera"),
        ("a fox, 85mm f/1.8", "camera"),
        ("a close-up of a fox", "composition"),
        ("a fox in the foreground, mountains behind", "composition"),
        ("a fox with intricate fur detail", "detail"),
        ("a fox in muted earth tones", "palette"),
        ("a photo of a fox", "medium"),
    ],
)
def test_a_part_already_there_is_never_added_again(prompt: str, slot: str) -> None:
    assert slot not in added(prompt)


def test_a_non_photographic_medium_gets_no_camera_texture_or_palette() -> None:
    parts = added("a watercolor painting of a fox")
    assert set(parts) == {"lighting", "composition", "detail"}
    assert parts["detail"] == "fine detail"
    assert "lens" not in enhance_prompt("an anime girl on a rooftop").prompt


def test_a_prompt_mixing_photo_and_art_gets_nothing_that_takes_sides() -> None:
    parts = added("a photo of an anime character")
    assert "camera" not in parts and "palette" not in parts and "medium" not in parts


@pytest.mark.parametrize(
    ("prompt", "lens"),
    [
        ("a perfume bottle on marble", "100mm"),
        ("portrait of a woman", "85mm"),
        ("a mountain valley", "35mm"),
        ("a cat", "50mm"),
    ],
)
def test_the_lens_and_framing_follow_the_first_named_subject(prompt: str, lens: str) -> None:
    assert lens in added(prompt)["camera"]


def test_style_is_added_as_the_medium_unless_present_or_contradicting() -> None:
    assert added("a fox in snow", style="35mm film")["style"] == "35mm film"
    assert "style" not in added("a fox in snow, 35mm film", style="35mm film")
    rewrite = enhance_prompt("a photo of a fox in snow", style="watercolor")
    assert "watercolor" not in rewrite.prompt.lower()
    assert rewrite.changes[0].kind == "skipped"
    with_art_style = added("a fox in snow", style="watercolor")
    assert "camera" not in with_art_style and "palette" not in with_art_style


def test_enhancing_with_a_style_twice_changes_nothing_more() -> None:
    once = enhance_prompt("a fox in snow", "flux-dev", style="linocut print")
    twice = enhance_prompt(once.prompt, "flux-dev", style="linocut print")
    assert twice.prompt == once.prompt
    assert twice.changes == ()


def test_trailing_punctuation_is_respected() -> None:
    assert enhance_prompt("A cat.", "flux-dev").prompt.startswith("A cat. Photograph,")
    assert enhance_prompt("a cat,", "flux-dev").prompt.startswith("a cat. Photograph,")
    assert enhance_prompt("夕暮れの猫", "flux-dev").prompt.startswith("夕暮れの猫. ")


def test_a_blank_prompt_is_returned_untouched_and_an_unknown_model_is_refused() -> None:
    assert enhance_prompt("   ").prompt == "   "
    with pytest.raises(ValueError, match="flux-krea-dev, flux-dev, krea-2"):
        enhance_prompt("a cat", "sdxl")


def phrases() -> list[str]:
    out = [*LENSES.values(), *FRAMINGS.values(), "fine detail"]
    for voice in VOICES.values():
        out += [voice.medium, voice.lighting, voice.detail_photo, *([voice.palette] if voice.palette else [])]
    return out


@pytest.mark.parametrize("phrase", phrases())
def test_no_addition_negates_names_a_subject_or_is_a_quality_tag(phrase: str) -> None:
    assert find_negations(phrase) == []
    assert not set(phrase.replace(",", " ").split()) & SUBJECT_NOUNS
    assert cue_pattern(QUALITY_TAGS).search(phrase) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_every_addition_fills_its_own_part_so_a_second_pass_finds_it(family: str) -> None:
    for prompt in ("a cat", "portrait of a man", "a bottle", "a valley", "an oil painting of a cat"):
        enhanced = enhance_prompt(prompt, family).prompt
        found = survey(enhanced)
        assert {"medium", "lighting", "composition", "detail"} <= found.present
