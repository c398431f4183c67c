"""The public names of fluxroute.prompts are pinned: adding or removing one is a deliberate change."""

import fluxroute.prompts


def test_public_names_are_pinned() -> None:
    assert fluxroute.prompts.__all__ == [
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
    for name in fluxroute.prompts.__all__:
        assert getattr(fluxroute.prompts, name) is not None
