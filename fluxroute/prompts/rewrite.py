"""The rewrite_image_prompt tool: its input and output models, and the pipeline behind it (reframe
negatives -> enhance -> fit the budget -> lint)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from fluxroute.prompts.families import FamilyId
from fluxroute.prompts.results import Change, Fit, Reframe
from fluxroute.types import AspectRatio, ImageRequest, NegativeText, PromptText, StyleText

REWRITE_DESCRIPTION = (
    "Improve a prompt for generate_image, offline and free: keeps every word, adds the light, lens, "
    "composition and detail the model's guide asks for, says 'no X' positively (FLUX [dev] ignores "
    "negatives), trims to the model's limit; lists changes and warnings."
)
REWRITE_FIELDS: dict[str, str] = {
    "prompt": "The prompt to improve.",
    "model": "The model whose guide to follow.",
    "style": "Look to add, e.g. 35mm film.",
    "negative_prompt": "What to avoid; said positively.",
    "aspect_ratio": "W:H of the image, for checks.",
}


class RewriteQuery(BaseModel):
    """Arguments of rewrite_image_prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: PromptText
    model: FamilyId = "flux-krea-dev"
    style: StyleText | None = None
    negative_prompt: NegativeText | None = None
    aspect_ratio: AspectRatio | None = None


class RewriteOutput(BaseModel):
    """The rewritten prompt, what changed, what was cut to fit, and what to watch for."""

    prompt: str
    changes: list[str]
    dropped: list[str]
    warnings: list[str]
    negative_prompt: str | None
    negative_prompt_ignored: bool


@dataclass(frozen=True)
class PromptRewrite:
    """The deterministic rewrite: every change in order, the fit to the budget, what became of negatives."""

    prompt: str
    changes: tuple[Change, ...]
    fit: Fit
    reframe: Reframe


def rewrite_prompt(
    prompt: str, model: str = "flux-krea-dev", style: str | None = None, negative_prompt: str | None = None
) -> PromptRewrite:
    """reframe_negatives, then enhance_prompt, then fit_budget, with every change collected.

    Negations go first: the user's own words then decide which language's negation words count, and
    enhancement sees what the positive phrasing already covers ("no harsh shadows" -> "soft, even light"
    leaves no lighting to add). Enhancement adds at the end, so fitting drops its additions first.

    Raises:
        ValueError: unknown model.
    """
    # The pipeline compiles the lexicon's patterns when it is imported: the first rewrite pays for that, not
    # whoever only needs the tool's models (listing the tools).
    from fluxroute.prompts.budget import fit_budget
    from fluxroute.prompts.enhance import enhance_prompt
    from fluxroute.prompts.negatives import reframe_negatives

    reframed = reframe_negatives(prompt, negative_prompt, model)
    enhanced = enhance_prompt(reframed.prompt, model, style)
    fit = fit_budget(enhanced.prompt, model)
    dropped = tuple(Change("dropped", f"{text!r} (over {fit.budget})") for text in fit.dropped)
    return PromptRewrite(fit.prompt, (*reframed.changes, *enhanced.changes, *dropped), fit, reframed)


def rewrite_image_prompt(query: RewriteQuery) -> RewriteOutput:
    """The tool's handler: `rewrite_prompt`, then `lint_prompt` on the result as it would be sent."""
    from fluxroute.prompts.lint import lint_prompt

    done = rewrite_prompt(query.prompt, query.model, query.style, query.negative_prompt)
    request = ImageRequest(prompt=done.prompt or query.prompt, model=query.model, aspect_ratio=query.aspect_ratio)
    warnings = [str(w) for w in lint_prompt(done.prompt, request)]
    if done.reframe.note:
        warnings.append(f"negative_prompt_ignored: {done.reframe.note}")
    return RewriteOutput(
        prompt=done.prompt,
        changes=[str(c) for c in done.changes if c.kind != "dropped"],
        dropped=list(done.fit.dropped),
        warnings=warnings,
        negative_prompt=done.reframe.negative_prompt,
        negative_prompt_ignored=done.reframe.negative_prompt_ignored,
    )
