"""The evaluation set (eval_prompts.toml) as records, and a negation check that does not reuse the code
under test."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

EVAL_FILE = Path(__file__).with_name("eval_prompts.toml")

# Written independently of fluxroute.prompts.negatives, so the eval cannot pass by sharing its blind spots.
ENGLISH_NEGATIONS = re.compile(
    r"(?<![\w'’-])(?:no|not|without|never|none|nothing|nobody|no one|avoid|avoiding|exclude|excluding"
    r"|don['’]t|doesn['’]t|isn['’]t|aren['’]t|wasn['’]t|can['’]t|cannot|won['’]t|shouldn['’]t)(?![\w'’-])"
    r"(?!\.\s*\d)",  # "No. 5" is a number
    re.IGNORECASE,
)
QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    category: str
    prompt: str
    model: str
    aspect_ratio: str | None
    lint: tuple[str, ...]
    not_lint: tuple[str, ...]


def load_eval_set() -> list[EvalPrompt]:
    with EVAL_FILE.open("rb") as f:
        rows = tomllib.load(f)["prompts"]
    return [
        EvalPrompt(
            id=row["id"],
            category=row["category"],
            prompt=row["prompt"],
            model=row.get("model", "flux-krea-dev"),
            aspect_ratio=row.get("aspect_ratio"),
            lint=tuple(row.get("lint", ())),
            not_lint=tuple(row.get("not_lint", ())),
        )
        for row in rows
    ]


def negation_words(text: str) -> list[str]:
    """English negation words outside double-quoted passages (quoted text is rendered, not obeyed)."""
    return ENGLISH_NEGATIONS.findall(QUOTED.sub(" ", text))
