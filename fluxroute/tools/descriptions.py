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
        "style_references": "Krea routes only: images whose style to follow.",
        "style_references.url": "As init_image.",
        "style_references.strength": "0 (none) to 1 (strongest).",
        "loras": "LoRAs: krea:<style id> (Krea) or weights by https URL or HF repo owner/name (fal). []: none.",
        "loras.ref": "krea:<id>, https URL or owner/name.",
        "loras.scale": "-2 to 2 (1: as trained).",
        "usage": "null: the configured default (commercial). " + _USAGE,
        "max_cost_usd": "Skip routes that cost more. null: no limit.",
        "provider": "auto, or pin one.",
        "exclude_providers": "Never these.",
        "prefer": "cost: cheapest; speed: fastest.",
        "idempotency_key": _IDEMPOTENCY,
        "wait_s": "Then return a job handle.",
        "confirm_spend": _CONFIRM,
    }


# draft_images arguments that mean what they mean for generate_image (described once, in request_fields)
_DRAFT_SHARED = ("prompt", "model", "size", "seed", "usage", "max_cost_usd", "provider", "idempotency_key")


def _fields(catalog: Catalog, own: dict[str, str], shared: tuple[str, ...]) -> dict[str, str]:
    """A tool's argument lines: its own, then generate_image's for the arguments that mean the same, then consent."""
    lines = request_fields(catalog)
    return {**own, **{name: lines[name] for name in shared}, "confirm_spend": _CONFIRM}


def draft_fields(catalog: Catalog) -> dict[str, str]:
    """One line per draft_images argument."""
    return _fields(catalog, {"n": "How many drafts (1-8)."}, _DRAFT_SHARED)


def edit_fields(catalog: Catalog) -> dict[str, str]:
    """One line per edit_image argument."""
    own = {
        "image": "The image: https URL, data:image URI, or job:<job_id>/<n> (an earlier result).",
        "prompt": "With a strength: the result, described. Without: an instruction ('make the sky stormy').",
        "task": "auto: mask -> inpaint, strength -> image-to-image, else instruction-edit (Kontext).",
        "mask": "Inpaint: same size, white = change, black = keep. As image. null: none.",
        "strength": "Image-to-image/inpaint: 0.01-1, how far to move. null: the offer's default.",
    }
    return _fields(catalog, own, _EDIT_SHARED)


def vary_fields(catalog: Catalog) -> dict[str, str]:
    """One line per vary_image argument."""
    own = {
        "image": "As edit_image's image.",
        "n": "How many variations (1-4).",
        "prompt": "What to keep or change (Krea). null: none.",
    }
    return _fields(catalog, own, _VARY_SHARED)


def upscale_fields(catalog: Catalog) -> dict[str, str]:
    """One line per upscale_image argument."""
    own = {
        "image": "As edit_image's image.",
        "factor": "1-32, how much larger. null: 2 (or size).",
        "size": "auto, or WxH: the largest output within it.",
        "method": "faithful: invents nothing. generative: adds detail.",
        "creativity": "Generative: 0-1, how much to invent. null: the offer's default.",
        "prompt": "Generative: what the image shows.",
        "model": "auto: the cheapest upscaler that fits.",
    }
    return _fields(catalog, own, _UPSCALE_SHARED)


def upscale_description() -> str:
    return (
        "Make an image larger (the final step before download): faithful (ESRGAN, SeedVR, Topaz) or generative "
        "(Clarity, Topaz Redefine, Krea Enhance), routed by cost, license and the output size each offer "
        "reaches; the plan says why."
    )


def models_for(catalog: Catalog, mode: str) -> list[str]:
    """The ids of the models some offer serves in `mode`, in catalog order."""
    served = {offer.model for offer in catalog.offers if mode in offer.modes}
    return [model.id for model in catalog.models if model.id in served]


_UPSCALE_SHARED = ("usage", "max_cost_usd", "provider", "idempotency_key", "wait_s")
_EDIT_SHARED = (
    "style_references",
    "style_references.url",
    "style_references.strength",
    "model",
    "num_images",
    "seed",
    "output_format",
    "loras",
    "loras.ref",
    "loras.scale",
    "usage",
    "max_cost_usd",
    "provider",
    "idempotency_key",
    "wait_s",
)
_VARY_SHARED = ("model", "size", "seed", "usage", "max_cost_usd", "provider", "idempotency_key", "wait_s")


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


_IDEMPOTENCY = "Same key: never paid twice. null: none."
_CONFIRM = "The user approved this cost."
_JOB_ID = "From a generate_image result."

JOB_FIELDS: dict[str, str] = {"job_id": _JOB_ID, "wait_s": "Max seconds to wait."}
CANCEL_FIELDS: dict[str, str] = {"job_id": _JOB_ID}

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
    names = ", ".join(m.name for m in catalog.models if m.id in text_to_image_models(catalog))
    return (
        "Dry run of generate_image, same arguments: the offer that would run it, why, its cost, the fallbacks "
        f"and why every other offer was rejected. Spends nothing; use it first if the user mentions budget, "
        f"license or provider. Models: {names}."
    )


def draft_description() -> str:
    return (
        "Cheap first: n variants (seeds seed..seed+n-1) on the cheapest draft route the license allows, with a "
        "numbered contact sheet, per-draft seed/cost/path and the total. Show the sheet, let the user pick a "
        "number, then call finalize_image. plan_image_route with drafts=n gives both costs first."
    )


def edit_description() -> str:
    return (
        "Edit an image: an instruction edit (FLUX.1 Kontext), image-to-image by a prompt and strength, or inpaint "
        "under a mask; routed by cost and license like generate_image, the plan says which. Chain results by "
        "job:<job_id>/<n>. Phrasing: the fluxroute://guides/flux-kontext-dev resource."
    )


def vary_description() -> str:
    return (
        "n new images like the given one (FLUX.1 Redux on fal, image prompts on Krea), routed by cost and license. "
        "Use it for 'more like this'; edit_image to change something specific."
    )


def finalize_description() -> str:
    return (
        "Full-quality image from draft `index` (1..n) of a draft_images set: same model, size and seed at full "
        "steps where the draft ran on that model (composition usually but not always carries over), else the "
        "draft as init image at strength (0.5). Says which and why."
    )


PLAN_FIELDS: dict[str, str] = {"drafts": "n: plan draft_images (n drafts) and its finalize, with both costs."}
FINALIZE_FIELDS: dict[str, str] = {
    "draft_set_id": "From draft_images.",
    "index": "The draft's number on the sheet.",
    "strength": "Image-conditioned finals only. null: 0.5.",
    "upscale": "Then upscale the final by this factor (faithful). null: no.",
    "idempotency_key": _IDEMPOTENCY,
    "confirm_spend": _CONFIRM,
}


def models_description(catalog: Catalog) -> str:
    names = ", ".join(m.name for m in catalog.models if m.id in text_to_image_models(catalog))
    return (
        f"List the image models ({names}; upscalers too) and their offers: provider, price (unit, date), license, "
        "commercial use, and whether it can run here (if not, why)."
    )


def text_to_image_models(catalog: Catalog) -> list[str]:
    """The models some offer makes images of from a prompt alone (not FLUX.1 Kontext, an editing model)."""
    return models_for(catalog, "text-to-image")


def _prompting(catalog: Catalog) -> list[str]:
    """Each text-to-image family's guide in short (fluxroute.prompts), for families the prompt library knows."""
    drawn = text_to_image_models(catalog)
    return [f"{m.name} ({m.id}): {short_guide(m.id)}" for m in catalog.models if m.id in FAMILIES and m.id in drawn]


def price_line(catalog: Catalog) -> str:
    """Prices from the catalog by provider, models sharing a price said once and a model's prices in one unit
    together: 'fal flux-krea-dev, flux-dev $0.025/MP, krea-2 $0.008/MP; krea ..., krea-2 $0.03/image, $0.06/image'."""
    by_price: dict[tuple[str, str, Decimal], list[str]] = {}
    for offer in catalog.offers:
        if offer.price.usd is None or "text-to-image" not in offer.modes:
            continue  # generate_image's prices: published ones, of offers that make an image from a prompt
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


_UNIT_SUFFIX = {"image": "/image", "megapixel_ceil": "/MP", "gpu_second": "/GPU-s", "compute_second": "/compute-s"}
