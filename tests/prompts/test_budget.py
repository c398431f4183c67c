"""Budgets per model come from the catalog and the encoders; fit_budget keeps what matters and always fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxroute.catalog import load_catalog
from fluxroute.prompts import Budget, budget_for, estimate_tokens, fit_budget
from fluxroute.settings import Settings


def test_budgets_per_model() -> None:
    assert (budget_for("flux-krea-dev").tokens, budget_for("flux-krea-dev").chars) == (512, None)
    # the Krea flux-1-dev offer's max_prompt_chars is the tightest character limit for flux-dev
    assert (budget_for("flux-dev").tokens, budget_for("flux-dev").chars) == (512, 1800)
    assert "krea flux-1-dev" in budget_for("flux-dev").source
    assert (budget_for("krea-2").tokens, budget_for("krea-2").chars) == (None, 1800)
    assert (budget_for("auto").tokens, budget_for("auto").chars) == (512, 1800)
    assert (budget_for("flux-schnell").tokens, budget_for("flux-schnell").chars) == (512, None)
    with pytest.raises(ValueError, match="sdxl"):
        budget_for("sdxl")


def test_an_added_offer_with_a_tighter_limit_tightens_the_budget() -> None:
    offer = {
        "id": "krea-flux-tight",
        "label": "krea flux tight",
        "model": "flux-krea-dev",
        "provider": "krea",
        "endpoint": "bfl/flux-1-dev",
        "wire": "krea-flux",
        "license": "krea-api-terms",
        "modes": ["text-to-image"],
        "max_images": 1,
        "latency_s": 7.0,
        "max_prompt_chars": 300,
        "size": {"custom": True},
        "price": {"unit": "image", "usd": "0.007", "as_of": "2026-08-01", "source": "test"},
    }
    catalog = load_catalog(Settings(offers=(offer,)))
    assert budget_for("flux-krea-dev", catalog).chars == 300
    assert fit_budget("a cat, " * 100, "flux-krea-dev", catalog=catalog).chars <= 300


def test_the_token_estimate_errs_high_on_plain_english() -> None:
    text = "a weathered fisherman mending nets on a wooden pier at dawn"
    words = len(text.split())
    # T5 spends about 1.3 tokens a word on prose like this; the estimate must not be below that
    assert estimate_tokens(text) >= 1.3 * words + 1
    assert estimate_tokens("") == 1
    assert estimate_tokens("一只猫") == 4
    assert estimate_tokens("кошка") == 6


def test_a_prompt_that_fits_is_returned_unchanged() -> None:
    fit = fit_budget("a cat on a sofa, soft light", "flux-dev")
    assert fit.prompt == "a cat on a sofa, soft light" and fit.dropped == () and fit.fits


def test_duplicates_and_quality_tags_go_before_real_content() -> None:
    prompt = "a red fox in snow, masterpiece, 8k, a red fox in snow, pine trees behind"
    fit = fit_budget(prompt, limit=Budget(tokens=None, chars=40, source="test"))
    assert fit.prompt == "a red fox in snow, pine trees behind"
    assert fit.dropped == ("a red fox in snow", "8k", "masterpiece")


def test_clauses_go_from_the_end_and_the_first_clause_is_cut_last() -> None:
    prompt = "a lighthouse on a cliff, stormy sea, gulls overhead, warm window light"
    fit = fit_budget(prompt, limit=Budget(tokens=None, chars=36, source="test"))
    assert fit.prompt == "a lighthouse on a cliff, stormy sea"
    assert fit.dropped == ("warm window light", "gulls overhead")
    cut = fit_budget(prompt, limit=Budget(tokens=None, chars=15, source="test"))
    assert cut.prompt == "a lighthouse on"
    assert cut.dropped[-1] == "a cliff"


def test_quoted_text_is_never_split() -> None:
    prompt = 'a sign that reads "OPEN, CLOSED, OPEN", a dog, a cat'
    fit = fit_budget(prompt, limit=Budget(tokens=None, chars=40, source="test"))
    assert fit.prompt == 'a sign that reads "OPEN, CLOSED, OPEN"'


def test_a_single_unbroken_word_is_cut_by_characters() -> None:
    fit = fit_budget("x" * 5000, "krea-2")
    assert fit.chars == 1800 and fit.fits
    assert fit_budget("猫" * 900, "flux-dev").tokens <= 512


texts = st.text(
    alphabet=st.sampled_from([*"abcdefghij xyz,.;!?\"'-\n", "猫", "é", "ж", "😀"]), min_size=0, max_size=600
)
budgets = st.builds(
    Budget,
    tokens=st.one_of(st.none(), st.integers(1, 300)),
    chars=st.one_of(st.none(), st.integers(0, 400)),
    source=st.just("test"),
)


@settings(max_examples=120, deadline=None)
@given(text=texts, budget=budgets)
def test_fit_always_fits_and_drops_only_what_was_there(text: str, budget: Budget) -> None:
    fit = fit_budget(text, limit=budget)
    assert fit.fits
    assert fit.tokens == estimate_tokens(fit.prompt) and fit.chars == len(fit.prompt)
    if budget.chars is not None:
        assert len(fit.prompt) <= budget.chars
    if budget.tokens is not None:
        assert estimate_tokens(fit.prompt) <= budget.tokens
    for piece in fit.dropped:
        assert piece in text
    assert fit_budget(text, limit=budget) == fit


@settings(max_examples=100, deadline=None)
@given(text=texts, cut=st.integers(0, 600))
def test_the_estimate_never_shrinks_as_text_grows(text: str, cut: int) -> None:
    assert estimate_tokens(text[:cut]) <= estimate_tokens(text)
