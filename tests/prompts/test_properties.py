"""Properties on generated prompts: enhancement keeps the user's text and is idempotent and deterministic;
reframing leaves no negation outside quotes; the whole rewrite fits the budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxroute.prompts import (
    budget_for,
    content_words,
    enhance_prompt,
    estimate_tokens,
    reframe_negatives,
    rewrite_prompt,
)

from .eval_set import negation_words


def spaced(text: str) -> list[str]:
    return text.split()


WORDS = [
    *spaced("a the of in on with and or at by"),
    *spaced("cat fox woman man street harbour bottle valley lighthouse sofa cars people text clouds"),
    *spaced("photo photograph watercolor anime painting render 35mm lens bokeh macro"),
    *spaced("light sunset night neon shadow close-up aerial background detailed texture vibrant muted"),
    *spaced("no not without never nobody avoid don't isn't nothing"),
    *spaced("masterpiece 8k vertical 16:9 --ar (red:1.2)"),
    *["猫", "夜の街", "кошка", "gato", "playa", "sin", "ohne", '"OPEN"', '"NO ENTRY"'],
]
SEPARATORS = [" ", " ", " ", ", ", ". ", "; ", "\n", " - "]
FAMILY = st.sampled_from(["flux-krea-dev", "flux-dev", "krea-2"])


@st.composite
def prompts(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=40))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)))
    text = "".join(w + s for w, s in zip(words, seps, strict=True))
    return draw(st.sampled_from([text, text.strip(), text.upper(), text.capitalize()]))


@settings(max_examples=120, deadline=None)
@given(prompt=prompts(), family=FAMILY, style=st.sampled_from([None, "35mm film", "watercolor", "cinematic"]))
def test_enhance_keeps_the_text_and_is_idempotent_and_deterministic(
    prompt: str, family: str, style: str | None
) -> None:
    first = enhance_prompt(prompt, family, style)
    assert first.prompt.startswith(prompt.rstrip().rstrip(",;:").rstrip())
    kept = set(content_words(first.prompt))
    assert all(w in kept for w in content_words(prompt))
    assert enhance_prompt(prompt, family, style) == first
    second = enhance_prompt(first.prompt, family, style)
    assert second.prompt == first.prompt


@settings(max_examples=120, deadline=None)
@given(prompt=prompts(), family=st.sampled_from(["flux-krea-dev", "flux-dev"]))
def test_reframing_leaves_no_english_negation_outside_quotes(prompt: str, family: str) -> None:
    reframed = reframe_negatives(prompt, model=family)
    assert negation_words(reframed.prompt) == []
    for quoted in ('"OPEN"', '"NO ENTRY"'):
        assert prompt.count(quoted) == reframed.prompt.count(quoted)


@settings(max_examples=60, deadline=None)
@given(prompt=prompts(), family=FAMILY, repeat=st.integers(1, 12))
def test_the_whole_rewrite_fits_the_budget(prompt: str, family: str, repeat: int) -> None:
    done = rewrite_prompt(prompt * repeat, family)
    budget = budget_for(family)
    assert budget.tokens is None or estimate_tokens(done.prompt) <= budget.tokens
    assert budget.chars is None or len(done.prompt) <= budget.chars
