"""`reframe_negatives`: say "no X" positively, since a prompt that names X tends to draw it.

FLUX [dev] models are guidance-distilled: there is no unconditional pass for a negative prompt to steer
away from, so hosted routes ignore it (fluxroute rejects those routes for a request carrying one) and only
local true CFG honours it, at about twice the compute. Inside the prompt, a negation is read as words, and
"no cars" still puts cars in the text the model follows. So each negation is replaced by what should be
there instead ("no oversaturation" -> "a natural, muted palette"), or, where there is no such phrase,
removed and returned as a negative-prompt term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fluxroute.prompts.enhance import append_sentence
from fluxroute.prompts.families import check_family, family_name, offers_for
from fluxroute.prompts.lexicon import cue_pattern, words
from fluxroute.prompts.quotes import inside, quoted_spans
from fluxroute.prompts.results import Change, Reframe
from fluxroute.prompts.slots import language

_APOSTROPHE = "['’]"
# "with" form: the replacement reads "with <phrase>"; "bare": "<phrase>".
WITH_CUES = (
    rf"(?:(?:who|that|which)\s+)?(?:(?:is|are|was|were)\s+not|(?:is|are|was|were)n{_APOSTROPHE}t"
    rf"|(?:does|do)\s+not\s+have|(?:doesn|don){_APOSTROPHE}t\s+have|(?:has|have)\s+no"
    rf"|(?:does|do|did)\s+not\s+(?:look|seem|appear|feel)(?:\s+like)?"
    rf"|(?:doesn|don|didn){_APOSTROPHE}t\s+(?:look|seem|appear|feel)(?:\s+like)?)"
    r"|without|w/o|без"
)
# Only read in prompts that are not English: "sin" and "sans" are English words too.
FOREIGN_WITH_CUES = r"sin|sans|ohne|senza|sem"
BARE_CUES = (
    rf"(?:please\s+)?(?:do\s+not|don{_APOSTROPHE}t|dont|must\s+not|mustn{_APOSTROPHE}t|should\s+not"
    rf"|shouldn{_APOSTROPHE}t|never)\s+(?:show|include|add|draw|render|put|use|want|have|make|give|depict)"
    rf"|(?:does|do|did|can|could|will|would)\s+not|(?:doesn|don|didn|can|couldn|won|wouldn){_APOSTROPHE}t|cannot"
    r"|nobody|no[\s-]one|noone|not\s+only|nothing\s+but|no\s+longer"
    r"|no(?![\w'-])(?!\.\s*\d)|not|never|avoid(?:ing)?|exclude[ds]?|excluding|minus|free\s+of|devoid\s+of"
    r"|lacking|none\s+of(?:\s+the)?|none|nothing(?:\s+like)?|нет|никаких"
)
FOREIGN_BARE_CUES = r"kein(?:e|en|er|es)?|pas\s+de"
_TEMPLATE = r"(?<![\w'’-])(?:(?P<with>{with_})|(?P<bare>{bare}))(?![\w'’-])"
NEGATION = re.compile(_TEMPLATE.format(with_=WITH_CUES, bare=BARE_CUES), re.IGNORECASE)
NEGATION_ANY_LANGUAGE = re.compile(
    _TEMPLATE.format(with_=f"{WITH_CUES}|{FOREIGN_WITH_CUES}", bare=f"{BARE_CUES}|{FOREIGN_BARE_CUES}"), re.IGNORECASE
)

# After these cues the words that follow are not negated, so they stay; the cue is replaced by this.
KEEP_FOLLOWING = {"not only": "", "nothing but": "only", "no longer": ""}
PEOPLE_CUES = ("nobody", "no one", "no-one", "noone")
# Words after a negated thing that only make sense with the negation ("no people around"): they go with it.
TAIL = re.compile(
    r"\s+(?:around|in sight|in the frame|in frame|visible|present|else|anywhere|at all|whatsoever|allowed|please)"
    r"(?![\w'])",
    re.IGNORECASE,
)
_NEXT_WORD = re.compile(r"[ \t]+([^\W\d_]+)")
# "no clouds in the sky" -> "a clear sky", not "a clear sky in the sky".
PLACE_TAIL = re.compile(r"\s+(?:in|on|at)\s+(?:the\s+)?([^\W\d_]+)", re.IGNORECASE)

SENTENCE_BOUNDARY = re.compile(r"[.;:!?()\[\]{}\n。！？]")
OR = re.compile(r"(?<!\w)(?:or|nor)(?!\w)", re.IGNORECASE)
ITEM_SPLIT = re.compile(r"\s*,\s*|\s+(?:or|nor|o|ou|oder|ni|noch|né|nem|или|ни)\s+", re.IGNORECASE)
STOP_WORDS = words("and but while with y et und и")
PLACE_WORDS = words(
    "in on at under near behind beside along across inside outside during over above below around through"
)
LEADING_FILLER = re.compile(r"^(?:(?:any|a|an|the|visible|too|very|overly|so|much|excessive|excessively)\s+)+", re.I)


@dataclass(frozen=True)
class _Concept:
    phrase: str
    pattern: re.Pattern[str]


def _concepts(*table: tuple[str, str]) -> tuple[_Concept, ...]:
    """(phrase, "cue | cue | ...") rows, cues written as in `lexicon.cue_pattern`."""
    return tuple(_Concept(phrase, cue_pattern(cues.split(" | "))) for phrase, cues in table)


# Checked in order, first match wins; every phrase is free of negation words and of subject nouns.
CONCEPTS = _concepts(
    ("deep focus", "background blur | blurred background | blurry background | bokeh | depth of field"),
    ("sharp focus", "blur* | out of focus | unfocused | soft focus"),
    ("clean, sharp detail", "low quality | lowres | low-res | low resolution | worst quality | bad quality"),
    ("clean, sharp detail", "pixelat* | jpeg artifact* | compression artifact*"),
    ("a natural, muted palette", "oversaturat* | over-saturat* | saturat* | garish | too colorful | neon colo*"),
    ("neutral color balance", "color cast | colour cast | tint*"),
    ("black and white", "re:colou?r(?:s|ed)?(?!\\w)"),
    (
        "plain, unmarked surfaces",
        "watermark* | signature* | logo* | text | word* | letter* | caption* | writing | typography | label*"
        " | subtitle* | font* | inscription*",
    ),
    (
        "deserted, empty surroundings",
        "people | person* | human* | crowd* | pedestrian* | tourist* | figure* | anyone | someone | man | men"
        " | woman | women | child* | kid* | passerby | passers-by | bystander* | gente | personas | gens | personnes"
        " | leute | menschen | persone | pessoas | люд*",
    ),
    ("empty roads", "car | vehicle* | traffic | truck* | bus | buses | coche* | voiture* | auto | autos | carro*"),
    ("a clear sky", "cloud*"),
    ("a clean, uncluttered background", "clutter* | mess* | distraction* | busy background | background object*"),
    ("a plain, uncluttered background", "background"),
    ("clean, smooth tones", "noise | noisy | grain | grainy | artifact* | artefact* | compression | jpeg"),
    (
        "natural, correct anatomy",
        "deform* | distort* | mutat* | bad anatomy | malformed | disfigur* | extra finger* | finger*"
        " | extra limb* | limb* | anatom* | bad hand*",
    ),
    (
        "a true photograph",
        "cartoon* | anime | illustrat* | drawing* | painting* | painted | cgi | 3d | render* | digital art"
        " | video game | sketch*",
    ),
    (
        "real, tactile textures",
        "plastic* | artificial | fake | ai look | ai-generated | ai generated | airbrush* | waxy | doll*"
        " | smooth skin | overly smooth | too smooth",
    ),
    (
        "natural, gently processed tones",
        "overprocess* | over-process* | overedit* | over-edit* | hdr | oversharpen* | over-sharpen* | filter*",
    ),
    ("soft, even light", "harsh light* | harsh shadow* | hard shadow* | shadow* | harsh"),
    ("bright, well-lit", "underexpos* | dark | darkness | gloom* | murky"),
    ("balanced exposure", "overexpos* | blown | bright | glare | washed out | washed-out"),
    ("clean, even light", "lens flare* | flare*"),
    ("matte surfaces", "reflection*"),
    ("even brightness to the edges", "vignett*"),
    ("a full-bleed image", "frame | border*"),
    ("bare, natural skin", "makeup | make-up"),
    ("a calm, serious expression", "smil* | grin*"),
    ("a single subject", "duplicate* | twin* | clone* | repeat* | repetition"),
    ("the whole subject in frame", "crop* | cut off | cut-off"),
    ("overcast, diffused light", "sun | sunlight | direct sun*"),
    ("dry weather", "rain*"),
    ("clear, crisp air", "fog* | haze | hazy | mist*"),
    ("an off-centre composition", "symmetr*"),
    ("modest, fully clothed subjects", "nudity | nude* | naked | nsfw"),
    ("a calm, peaceful scene", "violence | violent | blood* | gore | gory"),
    ("period-accurate details", "modern | contemporary | anachronis*"),
)


def find_negations(text: str) -> list[str]:
    """The negation words and phrases in `text` outside quoted passages, in order."""
    spans = quoted_spans(text)
    return [m.group() for m in _negation(text).finditer(text) if not inside(spans, m.start(), m.end())]


def _negation(text: str) -> re.Pattern[str]:
    return NEGATION if language(text) == "english" else NEGATION_ANY_LANGUAGE


def positive_phrase(term: str) -> str | None:
    """What to say instead of avoiding `term`, or None when there is no phrase for it."""
    for concept in CONCEPTS:
        if concept.pattern.search(term):
            return concept.phrase
    return None


def reframe_negatives(prompt: str, negative_prompt: str | None = None, model: str = "flux-krea-dev") -> Reframe:
    """`prompt` with every negation outside quoted text said positively, and what became of `negative_prompt`.

    Every model gets this (a text encoder reads "no cars" much like "cars"); what differs by model is where a
    negative prompt is used. In a prompt that is not English, the English phrases are appended as a sentence
    of their own rather than put into the user's sentence. Words after "no" with no positive phrase ("no
    dogs") are removed and returned as negative-prompt terms.

    Known terms in `negative_prompt` become positive phrases appended to the prompt; the rest is returned
    as `negative_prompt`, which only routes with true CFG honour (`note` says which, and
    `negative_prompt_ignored` is true when some route would not).

    Raises:
        ValueError: unknown model.
    """
    family = check_family(model)
    edits = _edits(prompt)
    text = prompt
    changes: list[Change] = []
    leftovers: list[str] = []
    for edit in reversed(edits):
        text = text[: edit.start] + edit.replacement + text[edit.end :]
    for edit in edits:
        changes.append(edit.change)
        leftovers.extend(edit.leftovers)
    if edits:
        text = _tidy(text)
    phrases = [phrase for edit in edits for phrase in edit.appended]
    for term in _terms(negative_prompt):
        phrase = positive_phrase(term)
        if phrase is None:
            leftovers.append(term)
        elif phrase.casefold() not in text.casefold() and phrase not in phrases:
            phrases.append(phrase)
            changes.append(Change("reframed", f"negative prompt {term!r} -> {phrase!r}"))
    if phrases:
        text = append_sentence(text, phrases)
    leftovers = list(dict.fromkeys(leftovers))
    ignored, note = negative_prompt_support(family) if leftovers or negative_prompt is not None else (False, None)
    return Reframe(
        prompt=text,
        changes=tuple(changes),
        negative_prompt=", ".join(leftovers) or None,
        negative_prompt_ignored=ignored,
        note=note,
    )


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    replacement: str
    change: Change
    leftovers: tuple[str, ...]
    appended: tuple[str, ...] = ()


def _edits(text: str) -> list[_Edit]:
    spans = quoted_spans(text)
    negation = _negation(text)
    english = negation is NEGATION
    edits: list[_Edit] = []
    said = {c.phrase for c in CONCEPTS if c.phrase.casefold() in text.casefold()}
    consumed = 0
    for match in negation.finditer(text):
        if match.start() < consumed or inside(spans, match.start(), match.end()):
            continue
        edit = _edit(text, match, spans, negation, said, english)
        edits.append(edit)
        consumed = edit.end
    return edits


def _edit(
    text: str,
    match: re.Match[str],
    spans: list[tuple[int, int]],
    negation: re.Pattern[str],
    said: set[str],
    english: bool,
) -> _Edit:
    """The replacement for one negation; `said` holds the phrases the prompt already has (none is said twice).
    In a prompt that is not English the phrases are not put into the user's sentence: they are appended."""
    cue = " ".join(match.group().lower().split())
    start, end = match.span()
    if cue in KEEP_FOLLOWING:
        replacement = KEEP_FOLLOWING[cue]
        return _Edit(start, end, replacement, Change("reframed", f"{match.group()!r} -> {replacement!r}"), ())
    if cue in PEOPLE_CUES:
        tail = TAIL.match(text, end)
        following = _NEXT_WORD.match(text, end)
        if tail:
            end = tail.end()
        elif following and following.group(1).lower() not in PLACE_WORDS:
            # "nobody wants to leave": a statement about the scene, not a thing in it; it goes, whole
            end, _ = _negated(text, end, spans, negation)
            original = text[start:end]
            return _Edit(start, end, "", Change("removed", f"{original!r}: a negation the model cannot draw"), ())
        items = ["people"]
    else:
        end, items = _negated(text, end, spans, negation)
    phrases: list[str] = []
    unknown: list[str] = []
    repeated: list[str] = []
    for item in items:
        phrase = positive_phrase(item)
        if phrase is None:
            unknown.append(item)
        elif phrase in said:
            repeated.append(phrase)
        else:
            phrases.append(phrase)
            said.add(phrase)
    tail = TAIL.match(text, end)
    if tail:
        end = tail.end()
    place = PLACE_TAIL.match(text, end)
    if place and any(place.group(1).lower() in phrase.split() for phrase in phrases):
        end = place.end()
    original = text[start:end]
    if phrases and not english:
        replacement = ""
        change = Change("reframed", f"{original!r} -> {' and '.join(phrases)!r}, as a sentence of its own")
    elif phrases:
        joined = " and ".join(phrases)
        replacement = _case(f"with {joined}" if match.group("with") else joined, original)
        change = Change("reframed", f"{original!r} -> {replacement!r}")
    elif repeated and not unknown:
        replacement = ""
        change = Change("reframed", f"{original!r} removed: the prompt already says {repeated[0]!r}")
    else:
        replacement = ""
        change = Change(
            "removed",
            f"{original!r}: naming a thing tends to draw it; say what is there instead"
            + (" (kept as a negative-prompt term)" if unknown else ""),
        )
    if phrases and unknown:
        change = Change("reframed", f"{change.text}; {', '.join(unknown)!r} kept as negative-prompt terms")
    return _Edit(start, end, replacement, change, tuple(unknown), () if english else tuple(phrases))


def _negated(text: str, pos: int, spans: list[tuple[int, int]], negation: re.Pattern[str]) -> tuple[int, list[str]]:
    """Where the negated words after `pos` end, and the items they list ("people or cars": two).

    The negation runs to the end of the clause: up to a comma (unless the comma list ends in "or"/"nor",
    as in "no text, logos or watermarks"), a sentence mark, quoted text, "and"/"with"/"but", or a place
    phrase after at least one word ("no people | in the street").
    """
    boundary = SENTENCE_BOUNDARY.search(text, pos)
    stop = boundary.start() if boundary else len(text)
    for s_start, _ in spans:
        if pos <= s_start < stop:
            stop = s_start
    chunks = text[pos:stop].split(",")
    region = chunks[0]
    for i, chunk in enumerate(chunks[1:], 1):
        if len(chunk.split()) > 4 or OR.search(region):
            break
        if OR.search(chunk):
            region = ",".join(chunks[: i + 1])
            break
    end = pos
    for taken, word in enumerate(re.finditer(r"\S+", region)):
        bare = word.group().lower().strip(",")
        if bare in STOP_WORDS or (taken and (bare in PLACE_WORDS or negation.fullmatch(bare))):
            break
        end = pos + word.end()
    items = [LEADING_FILLER.sub("", i.strip(" ,")) for i in ITEM_SPLIT.split(text[pos:end])]
    items = [negation.sub("", i).strip() for i in items]
    return end, [i for i in items if i]


def _case(replacement: str, original: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() and replacement else replacement


def _tidy(text: str) -> str:
    """Mend what removing words leaves behind: doubled spaces and commas, dangling connectors."""
    text = re.sub(r"[ \t]{2,}", " ", text)
    for _ in range(2):
        text = re.sub(r"(?<!\w)(?:with|and|or|but|that|which|who)\s+(?=(?:and|or|but)(?!\w))", "", text, flags=re.I)
        text = re.sub(r"\s+(?:with|and|or|but|nor|that|which|who)(?=\s*(?:[,.;:!?]|$))", "", text, flags=re.I)
        text = re.sub(r"\s+([,.;:!?])", r"\1", text)
        text = re.sub(r",(?:\s*,)+", ",", text)
        text = re.sub(r"[,;:]\s*(?=[.!?]|$)", "", text)
    text = re.sub(r"^\s*[,;:.]\s*", "", text)
    return text.strip()


def _terms(negative_prompt: str | None) -> list[str]:
    if not negative_prompt:
        return []
    terms = (_negation(t).sub("", t).strip() for t in re.split(r"[,;\n|]+", negative_prompt))
    return list(dict.fromkeys(t for t in terms if t))


def negative_prompt_support(model: str) -> tuple[bool, str | None]:
    """Whether a negative prompt would go unused on some of `model`'s routes ("auto": on any route), and
    a sentence saying where it is used; (False, None) when every route uses it."""
    offers = offers_for(model)
    honour = [o for o in offers if o.negative_prompt]
    if len(honour) == len(offers):
        return False, None
    if not honour:
        who = family_name(check_family(model)) if model != "auto" else "No model"
        return True, f"{who} has no route that takes a negative prompt; only the prompt's own words count."
    others = sorted({o.provider for o in offers if not o.negative_prompt})
    return True, (
        f"A negative prompt is used only by {', '.join(o.label for o in honour)} (true CFG, about twice the "
        f"compute); {' and '.join(others)} routes do not take one, so a request carrying it can run only there."
    )


def negated_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each negation and the words it negates, as `reframe_negatives` would replace them."""
    return [(edit.start, edit.end) for edit in _edits(text)]
