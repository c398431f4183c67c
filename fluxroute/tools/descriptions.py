"""What the LLM reads about each tool: what it does, when to call it, how to prompt, ranges and prices."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from fluxroute.catalog import Catalog
from fluxroute.prompts import FAMILIES, short_guide

# Added to the ImageRequest fields in the generate_image schema (types.py carries no descriptions).
REQUEST_FIELDS: dict[str, str] = {
    "prompt": "What to draw, in natural sentences.",
    "model": "auto (cheapest fit) or a model id above.",
    "aspect_ratio": "W:H, e.g. 16:9 (with megapixels).",
    "negative_prompt": "Local routes only.",
    "init_image": "Start image URL.",
    "strength": "How far to move from init_image.",
    "style_references": "Krea routes only.",
    "max_cost_usd": "Skip routes that cost more.",
    "provider": "Pin one provider.",
    "idempotency_key": "Same key: never paid twice.",
    "wait_s": "Then return a job handle.",
    "confirm_spend": "The user approved this cost.",
}

JOB_FIELDS: dict[str, str] = {"wait_s": "Max seconds to wait."}

_USAGE = "Local [dev] weights need usage=non-commercial."


def generate_description(catalog: Catalog) -> str:
    return "\n".join(
        [
            "Generate FLUX-family images on the Krea API, fal.ai or a local GPU, routed by cost, license and "
            "size; returns paths/URLs, provider, cost and why.",
            *_prompting(catalog),
            "Size: width+height, aspect_ratio (+megapixels) or image_size; default 1:1 at 1 MP; may be "
            "snapped. num_images 1-4 (Krea: 1). " + _USAGE,
            price_line(catalog),
            "After wait_s (45) a running job returns status=running and job_id: call get_image_job. Needs "
            "approval? Ask the user, then set confirm_spend=true.",
        ]
    )


def job_description() -> str:
    return (
        "Wait up to wait_s for a generate_image job that returned status=running: its images, or its progress "
        "so far. The job runs on meanwhile and is never paid twice."
    )


def cancel_description() -> str:
    return "Cancel a generate_image job; the result says if its provider may still charge it."


def plan_description(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models)
    return (
        "Dry run of generate_image, same arguments: the offer that would run it, why, its cost, the fallbacks "
        f"and why every other offer was rejected. Spends nothing; use it first if the user mentions budget, "
        f"license or provider. Models: {names}."
    )


def models_description(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models)
    return (
        f"List the image models ({names}) and their offers: provider, price (unit, date), license, "
        "commercial use, and whether it can run here (if not, why)."
    )


def _prompting(catalog: Catalog) -> list[str]:
    """Each family's guide in short (fluxroute.prompts), for families the prompt library knows."""
    return [f"{m.name} ({m.id}): {short_guide(m.id)}" for m in catalog.models if m.id in FAMILIES]


def price_line(catalog: Catalog) -> str:
    """Prices from the catalog, offers sharing a provider and price said once: 'fal $0.025/MP...'."""
    groups: dict[tuple[str, str, Decimal], list[str]] = {}
    for offer in catalog.offers:
        groups.setdefault((offer.provider, offer.price.unit, offer.price.usd), []).append(offer.label)
    per_provider = Counter(provider for provider, _, _ in groups)
    parts = []
    for (provider, unit, usd), labels in groups.items():
        who = provider if per_provider[provider] == 1 else ", ".join(labels)
        if unit == "gpu_second" and usd == 0:
            parts.append(f"{who} free (own GPU)")
        else:
            parts.append(f"{who} ${usd}{_UNIT_SUFFIX[unit]}")
    return "Prices: " + "; ".join(parts) + "."


_UNIT_SUFFIX = {"image": "/image", "megapixel_ceil": "/MP, rounded up", "gpu_second": "/GPU-s"}
