"""The prompting guides (markdown, one per model family, in guides/), their short forms, and the text of
the MCP prompt that asks a client's model to write a prompt by a guide."""

from __future__ import annotations

import functools
import re
from importlib import resources

from fluxroute.prompts.families import check_family, family_name

# Words an LLM-written prompt should stay within: well inside 512 estimated T5 tokens and 1,800 characters.
PROMPT_WORDS = 150
_SHORT = re.compile(r"^## In short\n(?P<text>.+?)(?:\n\n|\n#|\Z)", re.MULTILINE | re.DOTALL)


@functools.cache
def guide(model: str) -> str:
    """The full guide for `model` (flux-krea-dev, flux-dev, krea-2 or flux-schnell), as markdown.

    Raises:
        ValueError: unknown model.
    """
    family = check_family(model)
    return resources.files("fluxroute.prompts").joinpath("guides", f"{family}.md").read_text(encoding="utf-8")


def short_guide(model: str) -> str:
    """The guide's "In short" paragraph on one line (at most 200 characters: it goes in tool descriptions).

    Raises:
        ValueError: unknown model.
    """
    match = _SHORT.search(guide(model))
    if match is None:
        raise ValueError(f"guide for {model!r} has no '## In short' section")
    return " ".join(match.group("text").split())


def guide_prompt(model: str, subject: str, style: str | None = None, aspect_ratio: str | None = None) -> str:
    """The user message of an MCP prompt: write a prompt for `subject` on `model`, following its guide.

    Raises:
        ValueError: unknown model.
    """
    family = check_family(model)
    lines = [f"Write one image prompt for {family_name(family)} ({family}) showing: {subject.strip()}"]
    if style:
        lines.append(f"Style: {style.strip()}.")
    if aspect_ratio:
        lines.append(f"The image will be {aspect_ratio}: compose for that shape, without orientation words.")
    lines.append(writing_rules())
    lines.append(f"<guide>\n{guide(family).strip()}\n</guide>")
    return "\n\n".join(lines)


def writing_rules() -> str:
    """What every prompt written by a model for fluxroute must respect (also used by `rewrite_with_llm`)."""
    return (
        "Keep every subject and detail given above and add no new people, animals or objects. Follow the "
        f"guide below: plain sentences, subject first, at most {PROMPT_WORDS} words, and describe what "
        "should be there rather than what should not (no 'no', 'without' or 'not'). Keep quoted text "
        "exactly as written. Reply with the prompt only."
    )
