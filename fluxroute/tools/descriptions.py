"""What the LLM reads about each tool: what it does, when to call it, how to prompt, ranges and prices."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from fluxroute.catalog import Catalog

# How to prompt each family, keyed by catalog model id; one or two lines each.
PROMPTING: dict[str, str] = {
    "flux-krea-dev": "photographic; describe light, lens, texture and composition in natural sentences; guidance ~4.5.",
    "flux-dev": "guidance ~3-3.5; guidance-distilled, so hosted routes ignore negative prompts: "
    "say what you want, positively.",
    "krea-2": "pick aspect_ratio from 1:1, 4:3, 3:2, 16:9, 2.35:1, 4:5, 2:3, 9:16 (1K only); takes style_references.",
}

# Added to the ImageRequest fields in the generate_image schema (types.py carries no descriptions).
REQUEST_FIELDS: dict[str, str] = {
    "prompt": "What to draw, in natural sentences.",
    "model": "auto (cheapest fit), flux-krea-dev, flux-dev or krea-2.",
    "width": "Pixels; give with height.",
    "aspect_ratio": "W:H, e.g. 16:9; size is then megapixels.",
    "negative_prompt": "Local routes only.",
    "init_image": "Start image URL (image-to-image).",
    "strength": "How far to move from init_image.",
    "style_references": "Krea routes only.",
    "max_cost_usd": "Skip routes that cost more.",
    "providers": "Only these providers.",
    "provider": "Pin one provider.",
    "idempotency_key": "Retries with the same key never pay twice.",
    "wait_s": "Then return a job handle.",
    "confirm_spend": "The user approved this cost.",
}

JOB_FIELDS: dict[str, str] = {"wait_s": "Max seconds to wait."}

_USAGE = (
    "usage defaults to commercial; local FLUX.1 [dev] and Krea [dev] weights are non-commercial, so they "
    "run only with usage=non-commercial."
)


def generate_description(catalog: Catalog) -> str:
    return "\n".join(
        [
            "Generate images with FLUX-family models, routed to the Krea API, fal.ai or a local GPU by cost, "
            "license and size. Returns file paths/URLs, provider, cost and why it ran there. Call "
            "plan_image_route first when cost matters or the user mentions a budget, license or provider.",
            *_prompting(catalog),
            "Size: width+height, or aspect_ratio with megapixels, or image_size; default 1:1 at 1 MP. "
            "A route may snap the size (the result says so). num_images 1-4 (Krea: 1). " + _USAGE,
            price_line(catalog),
            "Still running after wait_s (default 45): returns status=running and job_id; call get_image_job. "
            "A costly call may need the user's approval: ask them, then pass confirm_spend=true.",
        ]
    )


def job_description() -> str:
    return (
        "Follow a generate_image job that returned status=running: waits up to wait_s, then returns the "
        "images, or the status and progress so far. The job keeps running meanwhile; it is never paid twice."
    )


def cancel_description() -> str:
    return "Cancel a running generate_image job; its provider job is stopped and nothing more is charged."


def plan_description(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models)
    return (
        "Dry run of generate_image with the same arguments: which offer would run it, why, what it costs, "
        "the fallbacks, and why every other offer was rejected. Spends nothing. Call it first when cost "
        f"matters or the user mentions a budget, license or provider. Models: {names}."
    )


def models_description(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models)
    return (
        f"List the image models ({names}) and every offer serving them: provider, endpoint, price with "
        "unit and date, license, commercial use, and whether it is available here (if not, why). "
        "model filters by id; include_unavailable=false hides offers that cannot run here."
    )


def _prompting(catalog: Catalog) -> list[str]:
    return [f"{m.name} ({m.id}): {PROMPTING[m.id]}" for m in catalog.models if m.id in PROMPTING]


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
