"""Every prompt of the evaluation set through every helper: intent kept, budgets met, negations gone,
enhancement idempotent and deterministic, lint finding what it should."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from fluxroute.prompts import (
    budget_for,
    content_words,
    enhance_prompt,
    estimate_tokens,
    find_negations,
    fit_budget,
    lint_prompt,
    reframe_negatives,
    rewrite_prompt,
)
from fluxroute.prompts.families import is_distilled
from fluxroute.types import ImageRequest

from .eval_set import EvalPrompt, load_eval_set, negation_words

EVAL_SET = load_eval_set()
IDS = [e.id for e in EVAL_SET]
FOREIGN_NEGATIONS = {"es-street-sin": "sin", "de-portrait-ohne": "ohne"}


def test_the_set_is_large_and_covers_every_category() -> None:
    assert len(EVAL_SET) >= 60
    assert len(set(IDS)) == len(IDS)
    counts = Counter(e.category for e in EVAL_SET)
    for category in ("fragment", "detailed", "negation", "orientation", "long", "non_english", "text"):
        assert counts[category] >= 3, category
    assert {e.model for e in EVAL_SET} == {"flux-krea-dev", "flux-dev", "krea-2"}


def test_long_prompts_really_exceed_their_budgets() -> None:
    for entry in (e for e in EVAL_SET if e.category == "long"):
        budget = budget_for(entry.model)
        over_tokens = budget.tokens is not None and estimate_tokens(entry.prompt) > budget.tokens
        over_chars = budget.chars is not None and len(entry.prompt) > budget.chars
        assert over_tokens or over_chars, entry.id


@pytest.mark.parametrize("entry", EVAL_SET, ids=IDS)
def test_enhance_keeps_every_word_the_user_wrote(entry: EvalPrompt) -> None:
    enhanced = enhance_prompt(entry.prompt, entry.model).prompt
    kept = set(content_words(enhanced))
    assert [w for w in content_words(entry.prompt) if w not in kept] == []
    # stronger: the user's text leads, verbatim (only trailing commas and spaces may go)
    assert enhanced.startswith(entry.prompt.rstrip().rstrip(",;:").rstrip())


@pytest.mark.parametrize("entry", EVAL_SET, ids=IDS)
def test_enhance_is_idempotent_and_deterministic(entry: EvalPrompt) -> None:
    first = enhance_prompt(entry.prompt, entry.model)
    assert enhance_prompt(entry.prompt, entry.model) == first
    second = enhance_prompt(first.prompt, entry.model)
    assert second.prompt == first.prompt
    assert [c for c in second.changes if c.kind == "added"] == []


@pytest.mark.parametrize("entry", EVAL_SET, ids=IDS)
def test_rewrites_fit_the_model_budget(entry: EvalPrompt) -> None:
    budget = budget_for(entry.model)
    for text in (entry.prompt, enhance_prompt(entry.prompt, entry.model).prompt):
        fit = fit_budget(text, entry.model)
        assert fit.fits
        assert budget.tokens is None or estimate_tokens(fit.prompt) <= budget.tokens
        assert budget.chars is None or len(fit.prompt) <= budget.chars
    done = rewrite_prompt(entry.prompt, entry.model)
    assert budget.tokens is None or estimate_tokens(done.prompt) <= budget.tokens
    assert budget.chars is None or len(done.prompt) <= budget.chars


@pytest.mark.parametrize("entry", EVAL_SET, ids=IDS)
def test_no_negation_survives_reframing_for_distilled_models(entry: EvalPrompt) -> None:
    for model in ("flux-krea-dev", "flux-dev"):
        assert is_distilled(model)
        reframed = reframe_negatives(entry.prompt, model=model).prompt
        assert negation_words(reframed) == []
        assert find_negations(reframed) == []
        if entry.id in FOREIGN_NEGATIONS:
            assert FOREIGN_NEGATIONS[entry.id] not in re.findall(r"\w+", reframed.lower())


@pytest.mark.parametrize("entry", EVAL_SET, ids=IDS)
def test_reframing_keeps_quoted_text_and_the_words_outside_negations(entry: EvalPrompt) -> None:
    reframed = reframe_negatives(entry.prompt, model=entry.model).prompt
    for quoted in re.findall(r'"[^"]*"', entry.prompt):
        assert quoted in reframed
    if not find_negations(entry.prompt):
        assert reframed == entry.prompt


@pytest.mark.parametrize("entry", [e for e in EVAL_SET if e.lint or e.not_lint], ids=lambda e: e.id)
def test_lint_reports_what_the_set_expects(entry: EvalPrompt) -> None:
    request = ImageRequest(prompt=entry.prompt, model=entry.model, aspect_ratio=entry.aspect_ratio)
    codes = {w.code for w in lint_prompt(entry.prompt, request)}
    assert set(entry.lint) <= codes
    assert not set(entry.not_lint) & codes


@pytest.mark.parametrize("entry", [e for e in EVAL_SET if e.category == "non_english"], ids=lambda e: e.id)
def test_non_english_prompts_get_additions_as_a_separate_english_sentence(entry: EvalPrompt) -> None:
    rewrite = enhance_prompt(entry.prompt, entry.model)
    base = entry.prompt.rstrip()
    assert rewrite.prompt.startswith(base)
    added = rewrite.prompt[len(base) :]
    assert added == "" or added.startswith((". ", " "))
    assert all(c.isascii() for c in added)


@pytest.mark.parametrize("entry", [e for e in EVAL_SET if e.category == "long"], ids=lambda e: e.id)
def test_long_prompts_keep_their_opening_and_report_what_was_dropped(entry: EvalPrompt) -> None:
    fit = fit_budget(entry.prompt, entry.model)
    assert fit.dropped
    opening = " ".join(entry.prompt.split()[:8])
    assert fit.prompt.startswith(opening)
    for piece in fit.dropped:
        assert piece in entry.prompt
