"""How much prompt each model's routes take, a token estimate that errs high, and `fit_budget`.

No tokenizer ships with fluxroute (T5's and CLIP's vocabularies come with the model weights), so tokens
are estimated: a run of Latin letters costs one token per three letters, rounded up; every other letter
(Cyrillic, Greek, CJK, ...), digit and punctuation mark costs one; one more for the end-of-sequence
token. T5's sentencepiece vocabulary spends about 1.3 tokens on an average English word, which this
counts as about two, so a prompt that fits the estimate fits the encoder, with room to spare.
"""

from __future__ import annotations

import itertools
import re

from fluxroute.catalog import Catalog
from fluxroute.prompts.families import FAMILIES, builtin_catalog, offers_for
from fluxroute.prompts.lexicon import QUALITY_TAGS, cue_pattern
from fluxroute.prompts.quotes import inside, quoted_spans
from fluxroute.prompts.results import Budget, Fit

# FluxPipeline refuses max_sequence_length > 512 (diffusers); fal serves the same encoders [assumed].
T5_MAX_TOKENS = 512
# CLIP's window: the pooled embedding FLUX also conditions on sees only the first 77 tokens.
CLIP_MAX_TOKENS = 77
# Krea's only documented prompt limit is flux-1-dev's maxLength 1800 (OpenAPI, 2026-05); Krea 2's pages
# give none, so Krea 2 is held to the same limit rather than risk a 400.
KREA_MAX_CHARS = 1800

MODEL_LIMITS: dict[str, tuple[int | None, int | None, str]] = {
    "flux-krea-dev": (T5_MAX_TOKENS, None, "T5 encoder, 512 tokens"),
    "flux-dev": (T5_MAX_TOKENS, None, "T5 encoder, 512 tokens"),
    "krea-2": (None, KREA_MAX_CHARS, "Krea API, 1,800 characters (Krea 2 documents no limit)"),
    "flux-schnell": (T5_MAX_TOKENS, None, "T5 encoder, 512 tokens"),
    "flux-kontext-dev": (T5_MAX_TOKENS, KREA_MAX_CHARS, "T5 encoder, 512 tokens; Krea API, 1,800 characters"),
}

_PIECE = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+|\S")  # runs of Latin letters
_SEPARATOR = re.compile(r"[,;.!?。，；！？、\n]+\s*")
_QUALITY = cue_pattern(QUALITY_TAGS)
_TRAILING = " ,;:\n\t，；、"


def estimate_tokens(text: str) -> int:
    """Tokens `text` takes at most, estimated as the module docstring says (never fewer than T5 uses for
    ordinary prose)."""
    return 1 + sum(-(-len(piece) // 3) for piece in _PIECE.findall(text))


def budget_for(model: str, catalog: Catalog | None = None) -> Budget:
    """The tightest limit among the routes serving `model` ("auto": among all routes).

    Raises:
        ValueError: `model` is neither "auto" nor a model the prompt helpers know.
    """
    if model == "auto":
        parts = [budget_for(family, catalog) for family in FAMILIES]
        tokens = min((b.tokens for b in parts if b.tokens), default=None)
        chars = min((b.chars for b in parts if b.chars), default=None)
        return Budget(tokens, chars, "tightest of every model's routes")
    if model not in MODEL_LIMITS:
        raise ValueError(f"model must be auto or one of {', '.join(MODEL_LIMITS)}; got {model!r}")
    tokens, chars, source = MODEL_LIMITS[model]
    for offer in offers_for(model, catalog or builtin_catalog()):
        if offer.max_prompt_chars is not None and (chars is None or offer.max_prompt_chars < chars):
            chars = offer.max_prompt_chars
            source = f"{source}; {offer.label}, {chars:,} characters"
    return Budget(tokens, chars, source)


def fit_budget(
    prompt: str, model: str = "flux-krea-dev", *, limit: Budget | None = None, catalog: Catalog | None = None
) -> Fit:
    """`prompt` shortened to fit `limit` (default: `budget_for(model, catalog)`), most important first.

    Prompts lead with what matters, so the first clause is kept longest. Dropped, in this order, until it
    fits: clauses repeated word for word, clauses made only of quality tags ("8k, masterpiece"; FLUX
    reads them as words), then the other clauses from the last one back; if the first clause alone is
    still too long, its end is cut. Quoted text is never split. What was dropped is listed, in that order.

    Raises:
        ValueError: unknown model (when no `limit` is given).
    """
    budget = limit or budget_for(model, catalog)
    if _fits(prompt, budget):
        return _fit(prompt, (), budget)
    clauses = _clauses(prompt)
    # Clauses end at a separator, so no token spans two of them and sizes add up; the last clause kept is
    # counted without the separator that joining trims from the end.
    full = [(estimate_tokens(c) - 1, len(c)) for c in clauses]
    trimmed = [(estimate_tokens(c.rstrip(_TRAILING)) - 1, len(c.rstrip(_TRAILING))) for c in clauses]
    kept = set(range(len(clauses)))
    tokens, chars = sum(t for t, _ in full), sum(n for _, n in full)
    dropped: list[str] = []
    for index in _drop_order(clauses):
        last = max(kept)
        if _within(budget, tokens - full[last][0] + trimmed[last][0] + 1, chars - full[last][1] + trimmed[last][1]):
            break
        kept.discard(index)
        tokens, chars = tokens - full[index][0], chars - full[index][1]
        dropped.append(clauses[index].strip(" ,;\n"))
    text = _join(clauses, sorted(kept))
    if not _fits(text, budget):
        text, cut = _cut(text, budget)
        dropped.append(cut)
    return _fit(text, tuple(d for d in dropped if d), budget)


def _fit(text: str, dropped: tuple[str, ...], budget: Budget) -> Fit:
    return Fit(text, dropped, estimate_tokens(text), len(text), budget)


def _fits(text: str, budget: Budget) -> bool:
    return _within(budget, estimate_tokens(text), len(text))


def _within(budget: Budget, tokens: int, chars: int) -> bool:
    return (budget.tokens is None or tokens <= budget.tokens) and (budget.chars is None or chars <= budget.chars)


def _clauses(text: str) -> list[str]:
    """`text` cut after each separator outside quoted passages; the pieces join back to `text`."""
    spans = quoted_spans(text)
    cuts = [m.end() for m in _SEPARATOR.finditer(text) if not inside(spans, m.start(), m.end())]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _drop_order(clauses: list[str]) -> list[int]:
    later = range(len(clauses) - 1, 0, -1)
    seen: set[str] = set()
    repeated: set[int] = set()
    for index, clause in enumerate(clauses):
        key = clause.strip(" ,;.!?\n").casefold()
        if key in seen:
            repeated.add(index)
        seen.add(key)
    tags = {i for i, clause in enumerate(clauses) if not _QUALITY.sub("", clause).strip(" ,;.!?\n")}
    if len(tags) == len(clauses):
        tags.discard(0)  # something must stay; the cut below shortens it if need be
    first = [0] if 0 in tags else []
    return [
        *(i for i in later if i in repeated),
        *(i for i in [*later, *first] if i in tags and i not in repeated),
        *(i for i in later if i not in repeated and i not in tags),
    ]


def _join(clauses: list[str], kept: list[int]) -> str:
    return "".join(clauses[i] for i in kept).rstrip(_TRAILING)


def _cut(text: str, budget: Budget) -> tuple[str, str]:
    """The longest prefix of `text` that fits, ending at a word boundary where one fits; and the rest."""
    ends = [m.start() for m in re.finditer(r"\s+", text)]
    at = _longest(text, ends, budget)
    if at == 0:
        at = _longest(text, list(range(1, len(text))), budget)
    return text[:at].rstrip(), text[at:].strip()


def _longest(text: str, ends: list[int], budget: Budget) -> int:
    """The largest end in `ends` (ascending) whose prefix fits, by bisection (fitting is monotone in
    length); 0 if none does."""
    low, high = 0, len(ends)
    while low < high:
        middle = (low + high) // 2
        if _fits(text[: ends[middle]], budget):
            low = middle + 1
        else:
            high = middle
    return ends[low - 1] if low else 0
