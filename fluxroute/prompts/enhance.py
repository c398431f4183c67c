"""`enhance_prompt`: add what a prompt lacks for its model family, never touching what the user wrote."""

from __future__ import annotations

from dataclasses import dataclass

from fluxroute.prompts.families import FamilyId, check_family
from fluxroute.prompts.results import Change, Rewrite
from fluxroute.prompts.slots import Scene, Survey, survey

SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")


@dataclass(frozen=True)
class _Voice:
    """How a family's additions are worded. Each phrase carries a cue for its own part, so a second pass
    finds that part present and adds nothing: that is what makes `enhance_prompt` idempotent."""

    medium: str
    lighting: str
    detail_photo: str
    palette: str | None


VOICES: dict[FamilyId, _Voice] = {
    # photographic, against the glossy "AI look": real textures and true-to-life color
    "flux-krea-dev": _Voice(
        medium="natural photograph",
        lighting="soft natural light",
        detail_photo="real textures and fine detail",
        palette="natural, true-to-life color",
    ),
    "flux-dev": _Voice(
        medium="photograph", lighting="soft directional light", detail_photo="crisp, fine detail", palette=None
    ),
    "krea-2": _Voice(
        medium="photograph", lighting="soft natural light", detail_photo="crisp, fine detail", palette=None
    ),
    "flux-schnell": _Voice(
        medium="photograph", lighting="soft directional light", detail_photo="crisp detail", palette=None
    ),
    # an editing model: its prompts are instructions, so little is added to them
    "flux-kontext-dev": _Voice(
        medium="photograph", lighting="the same light", detail_photo="the same detail", palette=None
    ),
}
DETAIL_ART = "fine detail"
LENSES: dict[Scene, str] = {
    "close": "shot on a 100mm lens",
    "portrait": "shot on an 85mm lens",
    "wide": "shot on a 35mm lens",
    "general": "shot on a 50mm lens",
}
FRAMINGS: dict[Scene, str] = {
    "close": "close framing against a simple background",
    "portrait": "eye-level framing with a softly blurred background",
    "wide": "wide framing with depth from foreground to horizon",
    "general": "balanced, uncluttered composition",
}


def enhance_prompt(prompt: str, model: str = "flux-krea-dev", style: str | None = None) -> Rewrite:
    """A better prompt for `model`'s family, and the changes made.

    The user's text is kept verbatim at the front (FLUX's CLIP encoder reads only the first 77 tokens,
    so it must lead). What is missing — medium, camera and lens, lighting, composition, detail and, for
    FLUX.1 Krea [dev], a natural palette — is appended as one English sentence. A part already present in
    any words is left alone; a photographic addition is never made to a prompt that names a painting,
    drawing or other non-photographic medium. Enhancing the result again changes nothing.

    Args:
        prompt: what the user wrote.
        model: a family id: flux-krea-dev, flux-dev, krea-2 or flux-schnell.
        style: a medium or look to add (e.g. "35mm film", "watercolor"), unless the prompt already has it
            or names a medium of the other kind (photo against art), which is reported as skipped.

    Raises:
        ValueError: unknown model.
    """
    voice = VOICES[check_family(model)]
    if not prompt.strip():
        return Rewrite(prompt)
    phrases: list[tuple[str, str]] = []
    changes: list[Change] = []
    text = prompt
    if style and style.strip() and style.strip().casefold() not in prompt.casefold():
        style = style.strip()
        clash = _clash(survey(prompt), survey(style))
        if clash:
            changes.append(Change("skipped", f"style {style!r}: {clash}"))
        else:
            phrases.append(("style", style))
            text = f"{prompt} {style}"
    found = survey(text)
    photographic = found.kind in ("photo", "unnamed")
    if not found.has("medium"):
        phrases.append(("medium", voice.medium))
    if photographic and not found.has("camera"):
        phrases.append(("camera", LENSES[found.scene]))
    if not found.has("lighting"):
        phrases.append(("lighting", voice.lighting))
    if not found.has("composition"):
        phrases.append(("composition", FRAMINGS[found.scene] if photographic else FRAMINGS["general"]))
    if not found.has("detail"):
        phrases.append(("detail", voice.detail_photo if photographic else DETAIL_ART))
    if photographic and voice.palette and not found.has("palette"):
        phrases.append(("palette", voice.palette))
    if not phrases:
        return Rewrite(prompt, tuple(changes))
    changes.extend(Change("added", f"{slot}: {phrase}") for slot, phrase in phrases)
    return Rewrite(append_sentence(prompt, [phrase for _, phrase in phrases]), tuple(changes))


def _clash(prompt: Survey, style: Survey) -> str | None:
    if prompt.kind == "photo" and style.kind in ("art", "mixed"):
        return "the prompt asks for a photograph"
    if prompt.kind == "art" and style.kind in ("photo", "mixed"):
        return f"the prompt asks for {' and '.join(prompt.art_groups)}"
    return None


def append_sentence(prompt: str, phrases: list[str]) -> str:
    """The prompt, then the phrases as one sentence of their own."""
    base = prompt.rstrip().rstrip(",;:").rstrip()
    first = phrases[0][:1].upper() + phrases[0][1:]
    sentence = ", ".join([first, *phrases[1:]]) + "."
    if not base:
        return sentence
    joiner = " " if base.endswith(SENTENCE_END) else ". "
    return f"{base}{joiner}{sentence}"
