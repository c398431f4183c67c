"""Prompting for FLUX-family models, usable without a server or keys: guides per model family, rewrite
helpers that keep every word the user wrote (enhance, reframe negatives, fit the budget), lint, an
optional language-model rewrite behind an intent guard, and the rewrite_image_prompt tool's models."""

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
