"""What the LLM reads about each tool: what it does, when to call it, how to prompt, ranges and prices."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from fluxroute.catalog import Catalog
from fluxroute.prompts import FAMILIES, short_guide


def request_fields(catalog: Catalog) -> dict[str, str]:
    """One line per generate_image argument: its range, its default and which backends honour it (the
    schema's own bounds are the syntax; these are the facts). plan_image_route takes the same arguments."""
    return {
        "prompt": "What to draw, in sentences. fal and local read the first ~400 words (512 T5 tokens).",
        "model": "auto: the cheapest model that fits.",
        "size": f"auto (1:1, 1 MP), WxH, W:H, W:H@MP (16:9@2MP) or a fal preset; up to {largest_mp(catalog):g} "
        "MP; snapped to what the offer takes.",
        "num_images": "1-4; Krea makes one per call.",
        "seed": "null: random.",
        "steps": "null: the model's default. Not sent to Krea 2.",
        "guidance": "null: the model's default. Not sent to Krea 2.",
        "output_format": "png or jpeg.",
        "negative_prompt": "Local routes only. null: none.",
        "init_image": "Start image: https URL, data:image/png|jpeg|webp;base64 URI, or job:<job_id>/<n> (an "
        "earlier result). null: text to image.",
        "strength": "With init_image: 0.01-1, how far to move from it. null: the offer's default.",
        "style_references": "Krea routes only: images (as init_image) with strength 0-1.",
        "usage": "null: the configured default (commercial). " + _USAGE,
        "max_cost_usd": "Skip routes that cost more. null: no limit.",
        "provider": "auto, or pin one.",
        "exclude_providers": "Never these.",
        "prefer": "cost: cheapest; speed: fastest.",
        "idempotency_key": "Same key: never paid twice. null: none.",
        "wait_s": "Then return a job handle.",
        "confirm_spend": "The user approved this cost.",
    }


def largest_mp(catalog: Catalog) -> float:
    """The most megapixels any offer in the catalog renders, to one decimal."""
    sizes = []
    for offer in catalog.offers:
        rule = offer.size
        if rule.aspect_sizes:  # a fixed table: its largest entry
            sizes.append(max(w * h for w, h in rule.aspect_sizes.values()) / 1e6)
            continue
        square = rule.max_side * rule.max_side / 1e6
        sizes.append(min(rule.max_megapixels or square, square))
    return round(max(sizes), 1)


JOB_FIELDS: dict[str, str] = {"wait_s": "Max seconds to wait."}

_USAGE = "Local [dev] weights need usage=non-commercial."


def generate_description(catalog: Catalog) -> str:
    return "\n".join(
        [
            "Generate FLUX-family images on the Krea API, fal.ai or a local GPU, routed by cost, license and "
            "size; returns paths/URLs, provider, cost and why.",
            *_prompting(catalog),
            "Every argument but prompt may be null or left out (its default). " + _USAGE,
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
