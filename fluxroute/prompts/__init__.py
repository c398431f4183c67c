"""Prompting for FLUX-family models, usable without a server or keys: guides per model family, rewrite
helpers that keep every word the user wrote (enhance, reframe negatives, fit the budget), lint, an
optional language-model rewrite behind an intent guard, and the rewrite_image_prompt tool's models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxroute.lazy import lazy_exports

if TYPE_CHECKING:
    from fluxroute.prompts.budget import budget_for, estimate_tokens, fit_budget
    from fluxroute.prompts.enhance import enhance_prompt
    from fluxroute.prompts.families import FAMILIES, FamilyId
    from fluxroute.prompts.guides import guide, guide_prompt, short_guide
    from fluxroute.prompts.intent import check_intent, content_words
    from fluxroute.prompts.lint import lint_prompt
    from fluxroute.prompts.llm import arewrite_with_llm, rewrite_instructions, rewrite_with_llm
    from fluxroute.prompts.negatives import find_negations, reframe_negatives
    from fluxroute.prompts.results import (
        Budget,
        Change,
        Fit,
        IntentCheck,
        LintWarning,
        LLMRewrite,
        Reframe,
        Rewrite,
    )
    from fluxroute.prompts.rewrite import (
        REWRITE_DESCRIPTION,
        REWRITE_FIELDS,
        PromptRewrite,
        RewriteOutput,
        RewriteQuery,
        rewrite_image_prompt,
        rewrite_prompt,
    )

__all__ = [
    "FAMILIES",
    "REWRITE_DESCRIPTION",
    "REWRITE_FIELDS",
    "Budget",
    "Change",
    "FamilyId",
    "Fit",
    "IntentCheck",
    "LLMRewrite",
    "LintWarning",
    "PromptRewrite",
    "Reframe",
    "Rewrite",
    "RewriteOutput",
    "RewriteQuery",
    "arewrite_with_llm",
    "budget_for",
    "check_intent",
    "content_words",
    "enhance_prompt",
    "estimate_tokens",
    "find_negations",
    "fit_budget",
    "guide",
    "guide_prompt",
    "lint_prompt",
    "reframe_negatives",
    "rewrite_image_prompt",
    "rewrite_instructions",
    "rewrite_prompt",
    "rewrite_with_llm",
    "short_guide",
]

# Each name is imported from its module on first access: `fluxroute.prompts.guides` (the MCP prompts) does not
# compile the lexicon's patterns, and `from fluxroute.prompts import X` loads only what X needs.
_LAZY = {
    "budget_for": "fluxroute.prompts.budget",
    "estimate_tokens": "fluxroute.prompts.budget",
    "fit_budget": "fluxroute.prompts.budget",
    "enhance_prompt": "fluxroute.prompts.enhance",
    "FAMILIES": "fluxroute.prompts.families",
    "FamilyId": "fluxroute.prompts.families",
    "guide": "fluxroute.prompts.guides",
    "guide_prompt": "fluxroute.prompts.guides",
    "short_guide": "fluxroute.prompts.guides",
    "check_intent": "fluxroute.prompts.intent",
    "content_words": "fluxroute.prompts.intent",
    "lint_prompt": "fluxroute.prompts.lint",
    "arewrite_with_llm": "fluxroute.prompts.llm",
    "rewrite_instructions": "fluxroute.prompts.llm",
    "rewrite_with_llm": "fluxroute.prompts.llm",
    "find_negations": "fluxroute.prompts.negatives",
    "reframe_negatives": "fluxroute.prompts.negatives",
    "Budget": "fluxroute.prompts.results",
    "Change": "fluxroute.prompts.results",
    "Fit": "fluxroute.prompts.results",
    "IntentCheck": "fluxroute.prompts.results",
    "LintWarning": "fluxroute.prompts.results",
    "LLMRewrite": "fluxroute.prompts.results",
    "Reframe": "fluxroute.prompts.results",
    "Rewrite": "fluxroute.prompts.results",
    "REWRITE_DESCRIPTION": "fluxroute.prompts.rewrite",
    "REWRITE_FIELDS": "fluxroute.prompts.rewrite",
    "PromptRewrite": "fluxroute.prompts.rewrite",
    "RewriteOutput": "fluxroute.prompts.rewrite",
    "RewriteQuery": "fluxroute.prompts.rewrite",
    "rewrite_image_prompt": "fluxroute.prompts.rewrite",
    "rewrite_prompt": "fluxroute.prompts.rewrite",
}


__getattr__, __dir__ = lazy_exports("fluxroute.prompts", _LAZY, globals(), __all__)
