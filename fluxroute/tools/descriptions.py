"""What the LLM reads about each tool: what it does, when to call it, how to prompt, ranges and prices."""

from __future__ import annotations

from decimal import Decimal

from fluxroute.catalog import Catalog
from fluxroute.prompts import FAMILIES, short_guide


def request_fields(catalog: Catalog) -> dict[str, str]:
    """One line per generate_image argument: its range, its default and which backends honour it (the
    schema's own bounds are the syntax; these are the facts). plan_image_route takes the same arguments."""
    return {
        "prompt": "What to draw, in sentences. fal and local read the first ~400 words (512 T5 tokens).",
        "model": "auto: the cheapest full-quality model that fits (never flux-schnell: name it).",
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
        f"license or provider. drafts=n: plan draft_images and its finalize, with both costs. Models: {names}."
    )


def draft_description() -> str:
    return (
        "Cheap first: n variants (seeds seed..seed+n-1) on the cheapest draft route the license allows, with a "
        "numbered contact sheet, per-draft seed/cost/path and the total. Show the sheet, let the user pick a "
        "number, then call finalize_image. plan_image_route with drafts=n gives both costs first."
    )


def finalize_description() -> str:
    return (
        "Full-quality image from draft `index` (1..n) of a draft_images set: same model, size and seed at full "
        "steps where the draft ran on that model (composition usually but not always carries over), else the "
        "draft as init image at strength (0.5). Says which and why."
    )


DRAFT_FIELDS: dict[str, str] = {"n": "How many drafts (1-8).", "confirm_spend": "The user approved this cost."}
FINALIZE_FIELDS: dict[str, str] = {
    "draft_set_id": "From draft_images.",
    "index": "The draft's number on the sheet.",
    "strength": "Image-conditioned finals only. null: 0.5.",
    "confirm_spend": "The user approved this cost.",
}


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
    """Prices from the catalog by provider, models sharing a price said once and a model's prices in one unit
    together: 'fal flux-krea-dev, flux-dev $0.025/MP, krea-2 $0.008/MP; krea ..., krea-2 $0.03/image, $0.06/image'."""
    by_price: dict[tuple[str, str, Decimal], list[str]] = {}
    for offer in catalog.offers:
        models = by_price.setdefault((offer.provider, offer.price.unit, offer.price.usd), [])
        if offer.model not in models:
            models.append(offer.model)
    by_models: dict[str, dict[tuple[str, tuple[str, ...]], list[Decimal]]] = {}
    for (provider, unit, usd), models in by_price.items():
        by_models.setdefault(provider, {}).setdefault((unit, tuple(models)), []).append(usd)
    parts = []
    for provider, groups in by_models.items():
        if all(unit == "gpu_second" and usds == [0] for (unit, _), usds in groups.items()):
            parts.append(f"{provider} free (own GPU)")
            continue
        prices = []
        for (unit, names), usds in groups.items():
            amounts = ", ".join(f"${usd}{_UNIT_SUFFIX[unit]}" for usd in sorted(usds))
            prices.append(f"{', '.join(names)} {amounts}")
        parts.append(f"{provider} {', '.join(prices)}")
    rounding = " (MP rounded up)" if any(o.price.unit == "megapixel_ceil" for o in catalog.offers) else ""
    return "Prices: " + "; ".join(parts) + rounding + "."


_UNIT_SUFFIX = {"image": "/image", "megapixel_ceil": "/MP", "gpu_second": "/GPU-s"}
