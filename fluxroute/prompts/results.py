"""The small frozen records the prompt helpers return: what changed, what was dropped, what to fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChangeKind = Literal["added", "reframed", "removed", "skipped", "dropped"]


@dataclass(frozen=True)
class Change:
    """One edit a helper made to a prompt (or, with kind "skipped", one it chose not to make, and why)."""

    kind: ChangeKind
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@dataclass(frozen=True)
class Rewrite:
    """A prompt after `enhance_prompt`, and every change made to get there (empty: nothing was missing)."""

    prompt: str
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class Reframe:
    """A prompt after `reframe_negatives`.

    `negative_prompt` holds what could not be said positively (send it only where a route honours it);
    `negative_prompt_ignored` is true when some or all of the model's routes would not honour a negative
    prompt, and `note` says which, in words.
    """

    prompt: str
    changes: tuple[Change, ...] = ()
    negative_prompt: str | None = None
    negative_prompt_ignored: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Budget:
    """How much prompt a model takes: estimated T5 tokens and/or characters (None: no limit of that kind)."""

    tokens: int | None
    chars: int | None
    source: str

    def __str__(self) -> str:
        parts = [f"{self.tokens} tokens" if self.tokens else "", f"{self.chars:,} characters" if self.chars else ""]
        return " and ".join(p for p in parts if p) or "no limit"


@dataclass(frozen=True)
class Fit:
    """A prompt after `fit_budget`: what was dropped to fit, and its size against the budget."""

    prompt: str
    dropped: tuple[str, ...]
    tokens: int
    chars: int
    budget: Budget

    @property
    def fits(self) -> bool:
        return (self.budget.tokens is None or self.tokens <= self.budget.tokens) and (
            self.budget.chars is None or self.chars <= self.budget.chars
        )


@dataclass(frozen=True)
class LintWarning:
    """A problem `lint_prompt` found: a stable code, what is wrong, and what to do about it."""

    code: str
    message: str
    suggestion: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message} {self.suggestion}"


@dataclass(frozen=True)
class IntentCheck:
    """What a rewrite did to the user's intent: content words it lost, subjects it brought in."""

    dropped: tuple[str, ...]
    added: tuple[str, ...]

    @property
    def kept(self) -> bool:
        return not self.dropped and not self.added


@dataclass(frozen=True)
class LLMRewrite:
    """The result of `rewrite_with_llm`: the model's prompt if it kept the user's intent, else the
    deterministic rewrite, with the reason the model's answer was refused."""

    prompt: str
    used_llm: bool
    changes: tuple[Change, ...]
    rejected: str | None = None
