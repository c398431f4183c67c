"""`lint_prompt`: what in a prompt will work against the request, each with what to do instead."""

from __future__ import annotations

from fluxroute.prompts import lexicon
from fluxroute.prompts.budget import CLIP_MAX_TOKENS, budget_for, estimate_tokens
from fluxroute.prompts.families import FAMILIES, FamilyId, builtin_catalog, family_name, is_distilled
from fluxroute.prompts.intent import content_words
from fluxroute.prompts.negatives import find_negations, negated_spans, negative_prompt_support, reframe_negatives
from fluxroute.prompts.quotes import inside, quoted_texts
from fluxroute.prompts.results import LintWarning
from fluxroute.prompts.slots import PHOTO, language, survey
from fluxroute.types import ImageRequest, parse_aspect_ratio

MIN_CONTENT_WORDS = 4
LONG_TEXT_WORDS = 6
ORIENTATION = {shape: lexicon.cue_pattern(words) for shape, words in lexicon.ORIENTATION_WORDS.items()}
MONOCHROME = lexicon.cue_pattern(("black and white", "black-and-white", "b&w", "monochrom*", "grayscale", "greyscale"))
VIVID = lexicon.cue_pattern(("vibrant", "vivid", "colorful", "colourful", "saturated", "neon colo*", "rainbow"))
QUALITY = lexicon.cue_pattern(lexicon.QUALITY_TAGS)
FOREIGN_SYNTAX = lexicon.cue_pattern(lexicon.FOREIGN_SYNTAX)
TEXT_CUES = lexicon.cue_pattern(lexicon.TEXT_RENDERING)
MEDIUM_CUES = lexicon.cue_pattern(
    (*lexicon.PHOTO_MEDIUM, *(w for group in lexicon.ART_MEDIA.values() for w in group), *lexicon.NEUTRAL_MEDIUM)
)
SHAPE_ADVICE = {
    "portrait": "a portrait ratio such as 2:3, 4:5 or 9:16",
    "landscape": "a landscape ratio such as 3:2, 16:9 or 2.35:1",
    "square": "1:1",
}


def lint_prompt(
    prompt: str, request: ImageRequest | None = None, *, model: str | None = None
) -> tuple[LintWarning, ...]:
    """Warnings about `prompt` as `request` would send it (model, size, negative prompt), most serious
    first. `model` overrides the request's; with neither, the checks of every model apply ("auto").

    Codes: too_short, conflicting_styles, orientation_mismatch, negation, negative_prompt_ignored,
    over_budget, late_medium, non_english, quality_tags, foreign_syntax, text_rendering.
    """
    chosen = model or (request.model if request else "auto")
    family = next((f for f in FAMILIES if f == chosen), None)
    checks = (
        _too_short(prompt),
        _conflicting_styles(prompt),
        _orientation(prompt, request),
        _negation(prompt, family),
        _negative_prompt(request, family),
        _over_budget(prompt, family),
        _late_medium(prompt, family),
        _non_english(prompt, family),
        _quality_tags(prompt),
        _foreign_syntax(prompt),
        _text_rendering(prompt),
    )
    return tuple(w for w in checks if w is not None)


def _too_short(prompt: str) -> LintWarning | None:
    words = content_words(prompt)
    if len(words) >= MIN_CONTENT_WORDS:
        return None
    return LintWarning(
        "too_short",
        f"Only {len(words)} descriptive word(s); the model fills in everything else with its defaults.",
        "Add the setting, light, composition and medium (enhance_prompt adds them without changing your words).",
    )


def _conflicting_styles(prompt: str) -> LintWarning | None:
    found = survey(prompt)
    if found.kind == "mixed":
        photo = PHOTO.search(prompt)
        return LintWarning(
            "conflicting_styles",
            f"Asks for a photograph ({photo.group() if photo else 'photo'}) and for "
            f"{' and '.join(found.art_groups)} at once; the model will pick one or blend them.",
            "Keep one medium. For a realistic painting say 'photorealistic painting'; for a photo, drop the art terms.",
        )
    if MONOCHROME.search(prompt) and VIVID.search(prompt):
        return LintWarning(
            "conflicting_styles",
            "Asks for black and white and for vivid color at once.",
            "Keep one: a monochrome image, or a colorful one.",
        )
    return None


def _orientation(prompt: str, request: ImageRequest | None) -> LintWarning | None:
    said = {shape: match.group() for shape, pattern in ORIENTATION.items() if (match := pattern.search(prompt))}
    if len(said) != 1:
        return None  # none said, or several (e.g. "16:9 ... vertical"): nothing clear to compare
    ((shape, word),) = said.items()
    actual, described = _request_shape(request)
    if shape == actual:
        return None
    return LintWarning(
        "orientation_mismatch",
        f"The prompt says '{word}' but the image will be {described}; words cannot change the canvas.",
        f"Set aspect_ratio to {SHAPE_ADVICE[shape]} (or width/height) and take '{word}' out of the prompt.",
    )


def _request_shape(request: ImageRequest | None) -> tuple[str, str]:
    if request is not None and request.aspect_ratio is not None:
        ratio, described = parse_aspect_ratio(request.aspect_ratio), request.aspect_ratio
    elif request is not None and request.width is not None and request.height is not None:
        ratio, described = request.width / request.height, f"{request.width}x{request.height}"
    elif request is not None and request.image_size is not None:
        width, height = builtin_catalog().presets[request.image_size]
        ratio, described = width / height, f"{request.image_size} ({width}x{height})"
    else:
        ratio, described = 1.0, "square (1:1, the default)"
    shape = "square" if 0.9 <= ratio <= 1.1 else "portrait" if ratio < 1 else "landscape"
    return shape, described if "square" in described else f"{shape} ({described})"


def _negation(prompt: str, family: FamilyId | None) -> LintWarning | None:
    found = find_negations(prompt)
    if not found:
        return None
    reframed = reframe_negatives(prompt, model=family or "flux-dev")
    example = next((c.text for c in reframed.changes if c.kind == "reframed"), None)
    why = (
        "FLUX [dev] models are guidance-distilled and follow the words they are given, so they tend to draw it"
        if family is None or is_distilled(family)
        else "a text encoder reads 'no X' much like 'X'"
    )
    return LintWarning(
        "negation",
        f"{', '.join(repr(n) for n in dict.fromkeys(found))}: a negation still names what it excludes; {why}.",
        "Say what should be there instead (reframe_negatives does it" + (f", e.g. {example})." if example else ")."),
    )


def _negative_prompt(request: ImageRequest | None, family: FamilyId | None) -> LintWarning | None:
    if request is None or request.negative_prompt is None:
        return None
    _, note = negative_prompt_support(family or "auto")
    if note is None:
        return None
    return LintWarning(
        "negative_prompt_ignored",
        note,
        "Move what it excludes into the prompt as positive phrasing (reframe_negatives with negative_prompt).",
    )


def _over_budget(prompt: str, family: FamilyId | None) -> LintWarning | None:
    budget = budget_for(family or "auto")
    tokens, chars = estimate_tokens(prompt), len(prompt)
    over = (budget.tokens is not None and tokens > budget.tokens) or (budget.chars is not None and chars > budget.chars)
    if not over:
        return None
    who = family_name(family) if family else "Some routes"
    return LintWarning(
        "over_budget",
        f"About {tokens} tokens and {chars:,} characters; {who} take(s) at most {budget} ({budget.source}).",
        "Shorten it: fit_budget keeps the first clauses and lists what it drops.",
    )


def _late_medium(prompt: str, family: FamilyId | None) -> LintWarning | None:
    if family == "krea-2" or estimate_tokens(prompt) <= CLIP_MAX_TOKENS:
        return None
    first = MEDIUM_CUES.search(prompt)
    if first is None or estimate_tokens(prompt[: first.end()]) <= CLIP_MAX_TOKENS:
        return None
    return LintWarning(
        "late_medium",
        f"The medium ('{first.group()}') comes after the first {CLIP_MAX_TOKENS} tokens, which are all CLIP reads.",
        "Lead with the subject and the medium; T5 still reads the details that follow.",
    )


def _non_english(prompt: str, family: FamilyId | None) -> LintWarning | None:
    if family == "krea-2" or language(prompt) == "english":
        return None
    return LintWarning(
        "non_english",
        "FLUX's T5 text encoder was trained on English text (C4); other languages are followed loosely.",
        "Translate the prompt to English; keep words meant to appear in the image, in quotes, as they are.",
    )


def _quality_tags(prompt: str) -> LintWarning | None:
    tags = list(dict.fromkeys(m.group() for m in QUALITY.finditer(prompt)))
    if not tags:
        return None
    return LintWarning(
        "quality_tags",
        f"{', '.join(repr(t) for t in tags)}: tags from other models' habits; FLUX reads them as plain words.",
        "Describe light, lens and texture instead; on FLUX.1 Krea [dev] such tags pull toward the glossy AI look.",
    )


def _foreign_syntax(prompt: str) -> LintWarning | None:
    found = list(dict.fromkeys(m.group() for m in FOREIGN_SYNTAX.finditer(prompt)))
    if not found:
        return None
    return LintWarning(
        "foreign_syntax",
        f"{', '.join(repr(f) for f in found)}: weighting and parameter syntax from other tools is read as text.",
        "Use plain words for emphasis; set the size with aspect_ratio rather than --ar.",
    )


def _text_rendering(prompt: str) -> LintWarning | None:
    quoted = quoted_texts(prompt)
    negated = negated_spans(prompt)
    cue = next((m for m in TEXT_CUES.finditer(prompt) if not inside(negated, m.start(), m.end())), None)
    if not quoted and cue is None:
        return None
    if not quoted:
        return LintWarning(
            "text_rendering",
            f"The image should show text ('{cue.group() if cue else 'text'}') but no words are quoted.",
            'Put the exact words in double quotes and say where and in what lettering, e.g. a sign reading "OPEN".',
        )
    long = [q for q in quoted if len(q.split()) > LONG_TEXT_WORDS]
    if long:
        return LintWarning(
            "text_rendering",
            f"Quoted text of {len(long[0].split())} words: long text is often misspelled.",
            "Keep text to a few words per line; add the rest in editing, or split it across signs.",
        )
    return None
