"""`rewrite_with_llm`: a language model rewrites the prompt by the family's guide; the intent guard keeps
its answer only if every content word survives and no new subject appears, else the deterministic rewrite
is used. Any completion function plugs in: OpenAI, Anthropic, a local model, an MCP client's sampling.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable

from fluxroute.prompts.budget import fit_budget
from fluxroute.prompts.families import check_family, family_name
from fluxroute.prompts.guides import guide, writing_rules
from fluxroute.prompts.intent import check_intent
from fluxroute.prompts.negatives import find_negations, reframe_negatives
from fluxroute.prompts.results import Change, LLMRewrite
from fluxroute.prompts.rewrite import rewrite_prompt

Complete = Callable[[str], str]
AsyncComplete = Callable[[str], Awaitable[str] | str]

_FENCE = re.compile(r"^```[\w-]*\n(?P<body>.*?)\n```$", re.DOTALL)
_LEAD_IN = re.compile(r"^(?:here(?:'s| is)[^\n]*|(?:rewritten |improved |final )?prompt)\s*:\s*", re.IGNORECASE)
_WRAPPING_QUOTES = (('"', '"'), ("“", "”"), ("'", "'"))


def rewrite_instructions(prompt: str, model: str = "flux-krea-dev", style: str | None = None) -> str:
    """The request sent to the language model: the prompt, the rules, the family's guide.

    Raises:
        ValueError: unknown model.
    """
    family = check_family(model)
    parts = [
        f"Rewrite this image prompt for {family_name(family)} ({family}):\n<prompt>\n{prompt.strip()}\n</prompt>",
        *([f"Style to add: {style.strip()}."] if style else []),
        writing_rules(),
        f"<guide>\n{guide(family).strip()}\n</guide>",
    ]
    return "\n\n".join(parts)


def rewrite_with_llm(
    prompt: str, model: str = "flux-krea-dev", *, complete: Complete, style: str | None = None
) -> LLMRewrite:
    """The language model's rewrite of `prompt` if it keeps the user's intent, else the deterministic one.

    `complete(text) -> str` is any completion function. An exception from it, an empty answer, a dropped
    content word or an added subject each fall back to `rewrite_prompt`, with the reason in `rejected`.
    An accepted answer still has its negations reframed and is fitted to the model's budget.

    Raises:
        ValueError: unknown model.
        TypeError: `complete` returned an awaitable (use `arewrite_with_llm`).
    """
    check_family(model)
    try:
        answer: object = complete(rewrite_instructions(prompt, model, style))
    except Exception as exc:  # any client's failure means: fall back, and say why
        return _fallback(prompt, model, style, f"the completion failed: {type(exc).__name__}: {exc}")
    if inspect.isawaitable(answer):
        if inspect.iscoroutine(answer):
            answer.close()
        raise TypeError("complete returned an awaitable; use arewrite_with_llm")
    return _accept(prompt, model, style, answer)


async def arewrite_with_llm(
    prompt: str, model: str = "flux-krea-dev", *, complete: AsyncComplete, style: str | None = None
) -> LLMRewrite:
    """`rewrite_with_llm` for a completion function that is async (or returns an awaitable), or plain.

    Raises:
        ValueError: unknown model.
    """
    check_family(model)
    try:
        answer: object = complete(rewrite_instructions(prompt, model, style))
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # any client's failure means: fall back, and say why
        return _fallback(prompt, model, style, f"the completion failed: {type(exc).__name__}: {exc}")
    return _accept(prompt, model, style, answer)


def clean_answer(answer: str) -> str:
    """The prompt inside a model's answer: without code fences, a "Prompt:" lead-in or wrapping quotes."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group("body").strip()
    text = _LEAD_IN.sub("", text, count=1).strip()
    for open_, close in _WRAPPING_QUOTES:
        if len(text) > 1 and text.startswith(open_) and text.endswith(close) and open_ not in text[1:-1]:
            text = text[1:-1].strip()
    return text


def _accept(prompt: str, model: str, style: str | None, answer: object) -> LLMRewrite:
    if not isinstance(answer, str):
        return _fallback(prompt, model, style, f"the completion returned {type(answer).__name__}, not text")
    text = clean_answer(answer)
    if not text:
        return _fallback(prompt, model, style, "the answer was empty")
    check = check_intent(prompt, text)
    if not check.kept:
        reasons = [
            *([f"it dropped {', '.join(check.dropped)}"] if check.dropped else []),
            *([f"it added {', '.join(check.added)}"] if check.added else []),
        ]
        return _fallback(prompt, model, style, "; ".join(reasons))
    changes = [Change("reframed", "rewritten by the language model")]
    if find_negations(text):
        reframed = reframe_negatives(text, model=model)
        text = reframed.prompt
        changes.extend(reframed.changes)
    fit = fit_budget(text, model)
    changes.extend(Change("dropped", f"{d!r} (over {fit.budget})") for d in fit.dropped)
    return LLMRewrite(fit.prompt, True, tuple(changes))


def _fallback(prompt: str, model: str, style: str | None, reason: str) -> LLMRewrite:
    done = rewrite_prompt(prompt, model, style)
    return LLMRewrite(done.prompt, False, done.changes, rejected=reason)
