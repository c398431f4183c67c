"""reframe_negatives says "no X" as what should be there, keeps quoted text, and is honest about where a
negative prompt is used."""

from __future__ import annotations

import pytest

from fluxroute.prompts import find_negations, reframe_negatives
from fluxroute.prompts.lexicon import SUBJECT_NOUNS
from fluxroute.prompts.negatives import CONCEPTS, negative_prompt_support


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            "a quiet street at dawn, no cars, no people",
            "a quiet street at dawn, empty roads, deserted, empty surroundings",
        ),
        ("portrait of a fisherman, no oversaturation", "portrait of a fisherman, a natural, muted palette"),
        ("a forest path without people or cars", "a forest path with deserted, empty surroundings and empty roads"),
        ("a watch, no text, logos or watermarks, on slate", "a watch, plain, unmarked surfaces, on slate"),
        ("a man who is not smiling, studio portrait", "a man with a calm, serious expression, studio portrait"),
        ("a lake with no clouds in the sky", "a lake with a clear sky"),
        ("nothing in the background, a red apple", "a plain, uncluttered background, a red apple"),
        ("a beach, nobody in sight", "a beach, deserted, empty surroundings"),
        ("a cat, not too bright", "a cat, balanced exposure"),
        ("Without people, a quiet beach", "With deserted, empty surroundings, a quiet beach"),
    ],
)
def test_known_negations_become_what_should_be_there(prompt: str, expected: str) -> None:
    assert reframe_negatives(prompt, model="flux-dev").prompt == expected


def test_unknown_negations_are_removed_and_kept_as_negative_prompt_terms() -> None:
    reframed = reframe_negatives("a cat sleeping on a sofa, no dogs, no toys")
    assert reframed.prompt == "a cat sleeping on a sofa"
    assert reframed.negative_prompt == "dogs, toys"
    assert {c.kind for c in reframed.changes} == {"removed"}
    assert reframe_negatives("a kitchen with no cats and a dog").prompt == "a kitchen and a dog"


def test_the_same_phrase_is_never_said_twice() -> None:
    reframed = reframe_negatives("a bowl of fruit, not a painting, not a cartoon").prompt
    assert reframed == "a bowl of fruit, a true photograph"


def test_quoted_text_is_left_exactly_as_written() -> None:
    prompt = 'a sign that reads "NO ENTRY, NOT TODAY", no people around'
    reframed = reframe_negatives(prompt).prompt
    assert reframed == 'a sign that reads "NO ENTRY, NOT TODAY", deserted, empty surroundings'
    assert find_negations(reframed) == []


def test_a_prompt_without_negations_comes_back_unchanged() -> None:
    prompt = "A notebook on a nook shelf, nothingness as a theme?  Knots,  and noodles."
    assert find_negations(prompt) == []
    reframed = reframe_negatives(prompt)
    assert reframed.prompt == prompt
    assert reframed.changes == ()
    assert reframed.negative_prompt is None and reframed.note is None and not reframed.negative_prompt_ignored


def test_numbers_and_compounds_are_not_negations() -> None:
    assert find_negations("No. 5 perfume, a no-parking sign") == []


def test_foreign_negation_words_count_only_in_prompts_that_are_not_english() -> None:
    assert find_negations("Sin City at night, sans-serif title") == []
    assert find_negations("ein Porträt einer alten Frau ohne Schmuck") == ["ohne"]


def test_in_other_languages_the_positive_phrasing_is_appended_not_mixed_into_the_sentence() -> None:
    reframed = reframe_negatives("una calle tranquila sin coches ni gente")
    assert reframed.prompt == "una calle tranquila. Empty roads, deserted, empty surroundings."
    assert reframed.negative_prompt is None
    unknown = reframe_negatives("ein Porträt einer alten Frau ohne Schmuck")
    assert unknown.prompt == "ein Porträt einer alten Frau" and unknown.negative_prompt == "Schmuck"


def test_a_statement_with_nobody_as_its_subject_is_removed_without_leaving_a_term() -> None:
    reframed = reframe_negatives("a stream that nobody wants to end and a ferryman")
    assert reframed.prompt == "a stream and a ferryman"
    assert reframed.negative_prompt is None


def test_a_negative_prompt_becomes_positive_phrasing_where_it_can() -> None:
    reframed = reframe_negatives("a cat", "blurry, lowres, extra fingers, dogs", model="flux-krea-dev")
    assert reframed.prompt == "a cat. Sharp focus, clean, sharp detail, natural, correct anatomy."
    assert reframed.negative_prompt == "dogs"
    assert reframed.negative_prompt_ignored
    assert reframed.note is not None and "local flux-krea-dev" in reframed.note and "fal" in reframed.note


def test_krea_2_has_no_negative_prompt_at_all() -> None:
    reframed = reframe_negatives("a cat", "dogs", model="krea-2")
    assert reframed.negative_prompt_ignored
    assert reframed.note == "Krea 2 has no route that takes a negative prompt; only the prompt's own words count."


def test_support_follows_the_catalog() -> None:
    assert negative_prompt_support("flux-dev")[0]
    note = negative_prompt_support("flux-dev")[1]
    assert note is not None and "local flux-dev" in note and "fal and krea" in note


@pytest.mark.parametrize("concept", CONCEPTS, ids=lambda c: c.phrase)
def test_every_positive_phrase_is_free_of_negations_and_subjects(concept: object) -> None:
    phrase = concept.phrase  # type: ignore[attr-defined]
    assert find_negations(phrase) == []
    assert not set(phrase.replace(",", " ").split()) & SUBJECT_NOUNS
