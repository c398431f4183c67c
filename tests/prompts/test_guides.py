"""The guides: one per family, each with a short form that fits a tool description, each stating the
catalog's facts (guidance defaults, Krea 2's aspect ratios, the prompt limit)."""

from __future__ import annotations

import pytest

from fluxroute.catalog import load_catalog
from fluxroute.prompts import FAMILIES, guide, guide_prompt, short_guide
from fluxroute.prompts.guides import PROMPT_WORDS

CATALOG = load_catalog()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_a_guide_opening_with_its_short_form(family: str) -> None:
    text = guide(family)
    assert text.startswith("# Prompting ")
    assert text.split("\n## ")[1].startswith("In short\n")
    short = short_guide(family)
    assert 40 <= len(short) <= 200
    assert "\n" not in short


@pytest.mark.parametrize("family", ["flux-krea-dev", "flux-dev"])
def test_flux_guides_state_every_route_guidance_default_and_the_distillation(family: str) -> None:
    text = " ".join(guide(family).split())
    for offer in CATALOG.offers:
        if offer.model == family and offer.guidance is not None:
            assert f"{offer.guidance.default:g}" in text, offer.id
    assert "guidance-distilled" in text
    assert "true CFG" in text and "twice the compute" in text
    assert "77 tokens" in text and "512" in text


def test_the_krea_2_guide_lists_every_aspect_ratio_the_catalog_has() -> None:
    text = guide("krea-2")
    ratios = {r for o in CATALOG.offers if o.model == "krea-2" for r in o.size.aspect_sizes}
    assert ratios and all(r in text for r in ratios)
    assert all(r in short_guide("krea-2") for r in ratios)
    assert "1,800" in text and "creativity" in text.lower()


def test_the_flux_dev_guide_states_krea_s_character_limit() -> None:
    limit = next(o.max_prompt_chars for o in CATALOG.offers if o.max_prompt_chars)
    assert f"{limit:,}" in guide("flux-dev") and f"{limit:,}" in short_guide("flux-dev")


def test_the_mcp_prompt_asks_for_one_prompt_by_the_guide() -> None:
    text = guide_prompt("flux-krea-dev", "a lighthouse at dusk", style="35mm film", aspect_ratio="2:3")
    assert text.startswith("Write one image prompt for FLUX.1 Krea [dev] (flux-krea-dev) showing: a lighthouse at dusk")
    assert "Style: 35mm film." in text
    assert "2:3" in text
    assert f"at most {PROMPT_WORDS} words" in text
    assert guide("flux-krea-dev").strip() in text
    plain = guide_prompt("krea-2", "a fox")
    assert "Style:" not in plain and "compose for that shape" not in plain


def test_an_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="flux-krea-dev"):
        guide("midjourney")
    with pytest.raises(ValueError):
        guide_prompt("sdxl", "a cat")
