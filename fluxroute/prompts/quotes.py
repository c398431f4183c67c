"""Quoted text in a prompt is text to render in the image; rewriting must leave it exactly as written."""

from __future__ import annotations

import re

# Paired quotes only: an unclosed quote marks nothing, so appending text never changes what is quoted.
QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”|«[^»\n]*»|「[^」\n]*」|『[^』\n]*』')


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every quoted passage, quotes included."""
    return [m.span() for m in QUOTED.finditer(text)]


def quoted_texts(text: str) -> list[str]:
    """The quoted passages without their quotes."""
    return [m.group()[1:-1] for m in QUOTED.finditer(text)]


def inside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """True when [start, end) overlaps one of `spans`."""
    return any(start < s_end and end > s_start for s_start, s_end in spans)
