"""rewrite_with_llm with plain functions standing in for a model: an answer that keeps the intent is
used, anything else falls back to the deterministic rewrite and says why."""

from __future__ import annotations

import pytest

from fluxroute.prompts import arewrite_with_llm, rewrite_instructions, rewrite_prompt, rewrite_with_llm
from fluxroute.prompts.llm import clean_answer


def answer(text: str):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def complete(request: str) -> str:
        asked.append(request)
        return text

    complete.asked = asked  # type: ignore[attr-defined]
    return complete


def test_the_instructions_carry_the_prompt_the_rules_and_the_guide() -> None:
    text = rewrite_instructions("a red fox in snow", "flux-dev", style="linocut")
    assert "<prompt>\na red fox in snow\n</prompt>" in text
    assert "FLUX.1 [dev] (flux-dev)" in text
    assert "Style to add: linocut." in text
    assert "add no new people, animals or objects" in text
    assert "# Prompting FLUX.1 [dev]" in text


def test_an_answer_that_keeps_the_intent_is_used() -> None:
    complete = answer("A red fox curled in fresh snow at dawn, 85mm lens, soft blue light, fine frost on its fur.")
    result = rewrite_with_llm("a red fox in snow", "flux-krea-dev", complete=complete)
    assert result.used_llm and result.rejected is None
    assert result.prompt.startswith("A red fox curled in fresh snow")
    assert complete.asked and "a red fox in snow" in complete.asked[0]  # type: ignore[attr-defined]


def test_an_answer_that_drops_a_subject_falls_back() -> None:
    result = rewrite_with_llm("a red fox and an owl in snow", complete=answer("A red fox in deep snow, soft light."))
    assert not result.used_llm
    assert result.rejected == "it dropped owl"
    assert result.prompt == rewrite_prompt("a red fox and an owl in snow").prompt


def test_an_answer_that_adds_a_subject_falls_back() -> None:
    result = rewrite_with_llm("a red fox in snow", complete=answer("A red fox in snow watched by a hunter's dog."))
    assert not result.used_llm and result.rejected == "it added dog"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [("", "the answer was empty"), ("```\n\n```", "the answer was empty")],
)
def test_empty_answers_fall_back(reply: str, reason: str) -> None:
    assert rewrite_with_llm("a red fox in snow", complete=answer(reply)).rejected == reason


def test_a_failing_client_falls_back_and_says_why() -> None:
    def broken(_: str) -> str:
        raise ConnectionError("refused")

    result = rewrite_with_llm("a red fox in snow", complete=broken)
    assert not result.used_llm
    assert result.rejected == "the completion failed: ConnectionError: refused"


def test_negations_in_an_accepted_answer_are_reframed_and_the_budget_is_kept() -> None:
    reply = "A quiet street at dawn with no people, wet cobblestones. " + "Soft light on the stones, " * 80
    result = rewrite_with_llm("a quiet street at dawn", "flux-dev", complete=answer(reply))
    assert result.used_llm
    assert "no people" not in result.prompt and "deserted" in result.prompt
    assert len(result.prompt) <= 1800
    assert any(c.kind == "dropped" for c in result.changes)


def test_answers_are_cleaned_of_fences_lead_ins_and_quotes() -> None:
    assert clean_answer('```text\n"A red fox in snow."\n```') == "A red fox in snow."
    assert clean_answer("Here is the rewritten prompt: A red fox in snow.") == "A red fox in snow."
    assert clean_answer('Prompt: A sign reading "OPEN" in a window') == 'A sign reading "OPEN" in a window'


async def test_async_completions_are_awaited() -> None:
    async def complete(request: str) -> str:
        return "A red fox asleep in snow under pine branches, soft overcast light."

    result = await arewrite_with_llm("a red fox in snow", complete=complete)
    assert result.used_llm
    plain = await arewrite_with_llm("a red fox in snow", complete=answer("A red fox in snow, 50mm lens."))
    assert plain.used_llm


async def test_an_async_client_failure_falls_back() -> None:
    async def complete(request: str) -> str:
        raise TimeoutError("slow")

    result = await arewrite_with_llm("a red fox in snow", complete=complete)
    assert result.rejected == "the completion failed: TimeoutError: slow"


def test_the_sync_function_refuses_an_async_completion() -> None:
    async def complete(request: str) -> str:
        return "x"

    with pytest.raises(TypeError, match="arewrite_with_llm"):
        rewrite_with_llm("a red fox in snow", complete=complete)  # type: ignore[arg-type]


def test_an_unknown_model_is_refused_before_the_client_is_called() -> None:
    complete = answer("x")
    with pytest.raises(ValueError):
        rewrite_with_llm("a cat", "sdxl", complete=complete)
    assert complete.asked == []  # type: ignore[attr-defined]
