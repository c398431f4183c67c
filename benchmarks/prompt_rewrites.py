"""What the prompt helpers do to the evaluation set (tests/prompts/eval_prompts.toml), for a person to judge.

Run: python benchmarks/prompt_rewrites.py [--write]
Prints the "## Prompt rewrites" section of benchmarks/RESULTS.md: checks over the whole set, a table of what
each helper changed on a sample, a few rewrites in full, and the time per call. --write replaces that
section at the end of RESULTS.md (or appends it).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import statistics
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxroute.prompts import (
    budget_for,
    content_words,
    enhance_prompt,
    find_negations,
    fit_budget,
    lint_prompt,
    reframe_negatives,
    rewrite_prompt,
)
from fluxroute.types import ImageRequest

ROOT = Path(__file__).resolve().parent.parent
EVAL_FILE = ROOT / "tests" / "prompts" / "eval_prompts.toml"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADING = "## Prompt rewrites"
SAMPLE = [
    "cat",
    "mountain-lake",
    "ramen",
    "fisherman-pier",
    "watercolor-fox",
    "stormy-sea-oil",
    "street-no-cars",
    "fisherman-no-oversaturation",
    "perfume-no-text",
    "not-smiling",
    "cat-no-dogs",
    "village-lights",
    "vertical-forest",
    "hills-ar-flag",
    "long-harbour",
    "long-tag-soup",
    "zh-orange-cat",
    "es-street-sin",
    "sign-unquoted",
    "sd-tags",
]
IN_FULL = ["cat", "street-no-cars", "watercolor-fox", "not-ai-looking", "es-street-sin", "long-harbour"]


def load() -> list[dict[str, Any]]:
    with EVAL_FILE.open("rb") as f:
        rows: list[dict[str, Any]] = tomllib.load(f)["prompts"]
    for row in rows:
        row.setdefault("model", "flux-krea-dev")
    return rows


def checks(rows: list[dict[str, Any]]) -> list[str]:
    """The evaluation's pass rates over the whole set."""
    kept = fits = idempotent = clean = 0
    for row in rows:
        prompt, model = row["prompt"], row["model"]
        enhanced = enhance_prompt(prompt, model)
        words = set(content_words(enhanced.prompt))
        kept += all(w in words for w in content_words(prompt))
        idempotent += enhance_prompt(enhanced.prompt, model).prompt == enhanced.prompt
        fits += rewrite_prompt(prompt, model).fit.fits
        clean += all(
            not find_negations(reframe_negatives(prompt, model=m).prompt) for m in ("flux-krea-dev", "flux-dev")
        )
    n = len(rows)
    return [
        "| check (whole set) | passed |",
        "|---|---:|",
        f"| every content word survives enhance_prompt | {kept}/{n} |",
        f"| enhance_prompt is idempotent (a second pass adds nothing) | {idempotent}/{n} |",
        f"| rewrite (reframe, enhance, fit) within the model's budget | {fits}/{n} |",
        f"| no negation left after reframe_negatives (flux-krea-dev and flux-dev) | {clean}/{n} |",
    ]


def sample_table(rows: list[dict[str, Any]]) -> list[str]:
    by_id = {row["id"]: row for row in rows}
    out = [
        "| id | model | prompt | enhance_prompt added | reframe_negatives | fit_budget | lint |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in SAMPLE:
        row = by_id[key]
        prompt, model = row["prompt"], row["model"]
        enhanced = enhance_prompt(prompt, model)
        added = "; ".join(c.text.split(": ", 1)[1] for c in enhanced.changes if c.kind == "added") or "—"
        reframed = reframe_negatives(prompt, model=model)
        reframe = "; ".join(_short_change(c.text) for c in reframed.changes) or "—"
        if reframed.negative_prompt:
            reframe += f"; negative terms: {reframed.negative_prompt}"
        fit = fit_budget(enhanced.prompt, model)
        budget = budget_for(model)
        fitted = f"{fit.tokens} tok, {fit.chars} ch ({budget})"
        if fit.dropped:
            fitted = f"dropped {len(fit.dropped)} clause(s); " + fitted
        request = ImageRequest(prompt=prompt, model=model, aspect_ratio=row.get("aspect_ratio"))
        lint = ", ".join(w.code for w in lint_prompt(prompt, request)) or "—"
        cells = [key, model, _clip(prompt), added, reframe, fitted, lint]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def in_full(rows: list[dict[str, Any]]) -> list[str]:
    by_id = {row["id"]: row for row in rows}
    out: list[str] = []
    for key in IN_FULL:
        row = by_id[key]
        done = rewrite_prompt(row["prompt"], row["model"])
        out += [
            f"- **{key}** ({row['model']})",
            f"  - before: {_clip(row['prompt'], 300)}",
            f"  - after: {_clip(done.prompt, 600)}",
        ]
        if done.fit.dropped:
            out.append(f"  - dropped to fit: {len(done.fit.dropped)} clause(s), first: {done.fit.dropped[0]!r}")
    return out


def timings(rows: list[dict[str, Any]]) -> list[str]:
    helpers: dict[str, Callable[[str, str], object]] = {
        "enhance_prompt": lambda p, m: enhance_prompt(p, m),
        "reframe_negatives": lambda p, m: reframe_negatives(p, model=m),
        "fit_budget": lambda p, m: fit_budget(p, m),
        "lint_prompt": lambda p, m: lint_prompt(p, model=m),
        "rewrite_prompt (all three)": lambda p, m: rewrite_prompt(p, m),
    }
    out = ["| helper | mean µs per prompt | slowest prompt µs |", "|---|---:|---:|"]
    for name, helper in helpers.items():
        per_prompt = []
        for row in rows:
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                helper(row["prompt"], row["model"])
                runs.append(time.perf_counter() - start)
            per_prompt.append(min(runs) * 1e6)
        out.append(f"| {name} | {statistics.mean(per_prompt):.0f} | {max(per_prompt):.0f} |")
    return out


def section() -> str:
    rows = load()
    today = datetime.date.today().isoformat()
    machine = f"{platform.machine()}, {platform.system()} {platform.release()}, CPython {platform.python_version()}"
    lines = [
        HEADING,
        "",
        f"**Date:** {today}. **Command:** `.venv/bin/python benchmarks/prompt_rewrites.py --write` ({machine}).",
        f"The evaluation set is `tests/prompts/eval_prompts.toml` ({len(rows)} prompts: fragments, detailed "
        "prompts, negations, orientation words, very long prompts, non-English prompts, text to render, habits "
        "from other tools); `tests/prompts/test_eval_set.py` asserts the same checks on every prompt.",
        "",
        *checks(rows),
        "",
        "What each helper did to a sample (helpers run separately on the original prompt; fit_budget on the "
        "enhanced one; budgets are estimated tokens and characters):",
        "",
        *sample_table(rows),
        "",
        "Whole rewrites (`rewrite_prompt`: reframe negatives, then enhance, then fit the budget):",
        "",
        *in_full(rows),
        "",
        "Time per call over the whole set (best of 5 per prompt; deterministic, no network):",
        "",
        *timings(rows),
        "",
    ]
    return "\n".join(lines)


def write(text: str) -> None:
    current = RESULTS.read_text(encoding="utf-8")
    at = current.find(f"\n{HEADING}\n")
    head = current if at < 0 else current[: at + 1]  # the sections before this one, byte for byte
    if not head.endswith("\n"):
        head += "\n"
    RESULTS.write_text(head + ("" if head.endswith("\n\n") else "\n") + text, encoding="utf-8")


def _short_change(text: str) -> str:
    return re.sub(r": naming a thing tends to draw it; say what is there instead", " removed", text)


def _clip(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="replace the section in benchmarks/RESULTS.md")
    args = parser.parse_args()
    text = section()
    if args.write:
        write(text)
        print(f"wrote {HEADING!r} to {RESULTS}")
    else:
        print(text)


if __name__ == "__main__":
    main()
