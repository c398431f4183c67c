"""The intent guard: did a rewrite keep every content word the user wrote, and bring in no new subject?

Content words are the words of a prompt less function words ("a", "with", "el", "und", ...); a run of
CJK or Hangul characters counts as one word. A word survives when the rewrite has a word with the same
stem ("cars" survives as "car", "photo" as "photograph"). New subjects are nouns from a list of
concrete things (people, animals, vehicles, objects, buildings: `lexicon.SUBJECT_NOUNS`) that the
original does not name; descriptive additions (light, lens, texture) are what a rewrite is for.
"""

from __future__ import annotations

import re

from fluxroute.prompts.lexicon import STOPWORDS, SUBJECT_NOUNS, is_spaceless
from fluxroute.prompts.negatives import negated_spans
from fluxroute.prompts.results import IntentCheck

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\d+")


def content_words(text: str) -> tuple[str, ...]:
    """The content words of `text`, lower case, each once, in order of first use."""
    words = (w.lower() for w in _WORD.findall(text))
    return tuple(dict.fromkeys(w for w in words if w not in STOPWORDS and (len(w) > 1 or _spaceless(w))))


def stem(word: str) -> str:
    """A crude English stem, enough to see "cars" in "car" and "cities" in "city"."""
    word = word.lower().removesuffix("'s").removesuffix("’s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def survives(word: str, text: str) -> bool:
    """Whether `word` (a content word) is still in `text`, as itself or as a word sharing its stem."""
    if _spaceless(word):
        return word in text
    root = stem(word)
    return any(w.startswith(root) or stem(w) == root for w in (x.lower() for x in _WORD.findall(text)))


def check_intent(original: str, rewritten: str) -> IntentCheck:
    """What `rewritten` lost of `original` and which subjects it added.

    Words inside a negation of the original ("no cars") need not survive: saying the same positively
    ("empty roads") is the point of rewriting them. Nor is a subject inside a negation of the rewrite
    ("with no people") an added one; the negation is reframed afterwards.
    """
    negated = negated_spans(original)
    required = content_words(_blank(original, negated))
    dropped = tuple(w for w in required if not survives(w, rewritten))
    named = {stem(w) for w in content_words(original)}
    added = tuple(
        w
        for w in content_words(_blank(rewritten, negated_spans(rewritten)))
        if w in SUBJECT_NOUNS and stem(w) not in named and not any(n.startswith(stem(w)) for n in named)
    )
    return IntentCheck(dropped, added)


def _spaceless(word: str) -> bool:
    return any(is_spaceless(c) for c in word)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in reversed(spans):
        text = text[:start] + " " + text[end:]
    return text
