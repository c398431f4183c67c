"""Exact cost rules per price unit, in Decimal so estimates and ledgers agree to the micro-dollar."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

from fluxroute.catalog import Price

PIXELS_PER_MEGAPIXEL = 1_000_000
MICRO = Decimal("0.000001")


def billed_megapixels(width: int, height: int) -> int:
    """Megapixels billed for one image: rounded up per image (fal's rule)."""
    return math.ceil(width * height / PIXELS_PER_MEGAPIXEL)


def estimate_cost(
    price: Price,
    *,
    width: int,
    height: int,
    num_images: int,
    gpu_seconds: float = 0.0,
    style_references: bool = False,
) -> Decimal:
    """What one call costs under `price`.

    image: usd x images (the style-reference rate when references are sent);
    megapixel_ceil: ceil(w*h / 1e6) x usd x images; gpu_second and compute_second: usd x expected seconds
    (`gpu_seconds`: the offer's latency estimate).
    """
    usd = price.usd
    if usd is None:
        raise ValueError("an offer without a published price cannot be costed: the planner refuses it until one is set")
    if price.unit == "image":
        rate = price.with_style_references_usd if style_references and price.with_style_references_usd else usd
        return rate * num_images
    if price.unit == "megapixel_ceil":
        return billed_megapixels(width, height) * usd * num_images
    return (usd * Decimal(str(round(gpu_seconds, 3)))).quantize(MICRO)


def compute_time_cost(price: Price, compute_seconds: float) -> Decimal:
    """What a per-compute-second (or per-GPU-second) price bills for the time a provider reported, to the
    micro-dollar, rounded up (the ledger never counts less than was billed)."""
    assert price.unit in ("compute_second", "gpu_second") and price.usd is not None
    return (price.usd * Decimal(str(compute_seconds))).quantize(MICRO, rounding=ROUND_CEILING)
