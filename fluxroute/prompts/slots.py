"""What a prompt already says: which parts of a good image prompt are there (medium, camera, lighting,
composition, detail, palette), what kind of medium, what kind of subject leads, which script it is in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from fluxroute.prompts import lexicon

MediumKind = Literal["photo", "art", "mixed", "unnamed"]
Scene = Literal["close", "portrait", "wide", "general"]
Slot = Literal["medium", "camera", "lighting", "composition", "detail", "palette"]
SLOTS: tuple[Slot, ...] = ("medium", "camera", "lighting", "composition", "detail", "palette")

PHOTO = lexicon.cue_pattern(lexicon.PHOTO_MEDIUM)
ART_GROUPS = {group: lexicon.cue_pattern(words) for group, words in lexicon.ART_MEDIA.items()}
NEUTRAL = lexicon.cue_pattern(lexicon.NEUTRAL_MEDIUM)
REALISM = lexicon.cue_pattern(lexicon.REALISM)
SLOT_PATTERNS: dict[Slot, re.Pattern[str]] = {
    "camera": lexicon.cue_pattern(lexicon.CAMERA),
    "lighting": lexicon.cue_pattern(lexicon.LIGHTING),
    "composition": lexicon.cue_pattern(lexicon.COMPOSITION),
    "detail": lexicon.cue_pattern(lexicon.DETAIL),
    "palette": lexicon.cue_pattern(lexicon.PALETTE),
}
SCENES: tuple[tuple[Scene, re.Pattern[str]], ...] = (
    ("close", lexicon.cue_pattern(lexicon.CLOSE_SUBJECTS)),
    ("portrait", lexicon.cue_pattern(lexicon.PORTRAIT_SUBJECTS)),
    ("wide", lexicon.cue_pattern(lexicon.WIDE_SUBJECTS)),
)


@dataclass(frozen=True)
class Survey:
    """The parts a prompt already has (`present`), its medium's kind, the art groups it names and the
    kind of subject named first."""

    present: frozenset[Slot]
    kind: MediumKind
    art_groups: tuple[str, ...]
    scene: Scene

    def has(self, slot: Slot) -> bool:
        return slot in self.present


def survey(text: str) -> Survey:
    """What `text` already says; the same text always gives the same survey."""
    groups = tuple(group for group, pattern in ART_GROUPS.items() if pattern.search(text))
    photo = bool(PHOTO.search(text))
    kind: MediumKind = "mixed" if photo and groups else "photo" if photo else "art" if groups else "unnamed"
    present = {slot for slot, pattern in SLOT_PATTERNS.items() if pattern.search(text)}
    if kind != "unnamed" or "camera" in present or NEUTRAL.search(text):
        present.add("medium")  # a lens or a camera implies a photograph without naming one
    return Survey(frozenset(present), kind, groups, _scene(text))


def _scene(text: str) -> Scene:
    """The kind of the earliest-named subject: prompts lead with what matters most."""
    best: tuple[int, Scene] = (len(text) + 1, "general")
    for scene, pattern in SCENES:
        match = pattern.search(text)
        if match and match.start() < best[0]:
            best = (match.start(), scene)
    return best[1]


Language = Literal["english", "other-latin", "non-latin"]


def language(text: str) -> Language:
    """A rough guess, enough to decide whether to suggest translating: the script of most letters, then
    whether common non-English function words outnumber English ones."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "english"
    latin = sum(1 for c in letters if c < "\u0250" or "\u1e00" <= c <= "\u1eff")  # Latin blocks
    if latin < 0.7 * len(letters):
        return "non-latin"
    words = re.findall(r"[^\W\d_]+", text.lower())
    foreign = {w for w in words if w in lexicon.FOREIGN_FUNCTION_WORDS}
    english = sum(1 for w in words if w in lexicon.ENGLISH_FUNCTION_WORDS)
    return "other-latin" if len(foreign) >= 2 and len(foreign) > english else "english"
