"""The intent guard: content words must survive a rewrite, and no new subject may appear."""

from __future__ import annotations

from fluxroute.prompts import check_intent, content_words


def test_content_words_leave_out_function_words_in_several_languages() -> None:
    assert content_words("A red fox in the snow, and the fox sleeps") == ("red", "fox", "snow", "sleeps")
    assert content_words("un gato en la playa con el sol") == ("gato", "playa", "sol")
    assert content_words("一只猫 on a roof") == ("一只猫", "roof")


def test_a_rewrite_that_adds_only_description_keeps_the_intent() -> None:
    check = check_intent("a red fox in snow", "A red fox standing in deep snow at dawn, 85mm lens, soft light")
    assert check.kept


def test_plural_and_longer_forms_of_a_word_count_as_kept() -> None:
    assert check_intent("two cars, a photo", "two red car parked, 35mm photograph").kept


def test_a_dropped_word_and_an_added_subject_are_both_reported() -> None:
    check = check_intent("two cats on a sofa", "a cat on a couch with a dog")
    assert check.dropped == ("two", "sofa")
    assert check.added == ("couch", "dog")
    assert not check.kept


def test_words_inside_a_negation_may_go() -> None:
    assert check_intent("a quiet street, no cars", "a quiet street with empty roads").kept


def test_cjk_words_must_survive_as_written() -> None:
    assert check_intent("一只猫", "一只猫, soft light").kept
    assert check_intent("一只猫", "a cat, soft light").dropped == ("一只猫",)
