"""Resolution: the size a request asks for, and how each offer can (or cannot) deliver it."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from fluxroute.catalog import SizeRule, UpscaleRule
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.types import DEFAULT_UPSCALE_FACTOR, Adjustment, ImageRequest, parse_aspect_ratio

DEFAULT_ASPECT_RATIO = "1:1"
SNAP = 16
# Krea 2 renders only at 1K; requests up to this factor above its table size still fit.
FIXED_SIZE_TOLERANCE = 1.25


@dataclass(frozen=True)
class Target:
    """The size the request asks for, before any offer adapts it."""

    width: int
    height: int
    ratio_text: str | None  # as the caller wrote it, when given as an aspect ratio
    preset: str | None
    derivation: str  # how width x height was obtained, for the explanation
    # taken from an input image: an offer that cannot render that large renders it smaller, at the same shape
    shrinkable: bool = False
    # an upscale's factor: width x height is the input's size times it
    factor: float | None = None

    @property
    def ratio(self) -> float:
        return self.width / self.height

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


@dataclass
class Sized:
    """An offer's answer to a target: the size it sends, how it sends it, and what changed."""

    width: int
    height: int
    preset: str | None = None
    aspect_key: str | None = None
    adjustments: list[Adjustment] = field(default_factory=list)
    rejection: str | None = None


@functools.lru_cache(maxsize=1024)  # requests repeat a few ratios and sizes; each answer costs ~5 µs
def size_for_ratio(ratio: float, megapixels: float, multiple: int = SNAP) -> tuple[int, int]:
    """The largest multiple-of-16 size close to `ratio` whose area does not exceed `megapixels`."""
    budget = megapixels * 1e6
    best: tuple[float, int, int, int] | None = None
    h_top = max(multiple, int(math.sqrt(budget / ratio) // multiple * multiple))
    for h in range(h_top, max(multiple, h_top - 4 * multiple) - 1, -multiple):
        w = max(multiple, round(h * ratio / multiple) * multiple)
        while w * h > budget and w > multiple:
            w -= multiple
        score = (abs(math.log((w / h) / ratio)), -(w * h), w, h)
        if best is None or score < best:
            best = score
    assert best is not None
    return best[2], best[3]


def sized_by_caller(request: ImageRequest) -> bool:
    """Whether the request names a size (width/height, a preset or an aspect ratio)."""
    return request.width is not None or request.image_size is not None or request.aspect_ratio is not None


def target_of(
    request: ImageRequest, presets: dict[str, tuple[int, int]], input_size: tuple[int, int] | None = None
) -> Target:
    """The size a request asks for: as given, or, for a request with an input image and no size of its own, the
    input image's (`input_size`, when known), else its aspect ratio (default 1:1) at its megapixels. An upscale's
    is its input's size times its factor (see upscale_target)."""
    if request.mode == "upscale":
        return upscale_target(request, input_size)
    if input_size is not None and request.init_image is not None and not sized_by_caller(request):
        width, height = input_size
        return Target(width, height, None, None, f"the input image's size, {width}x{height}", shrinkable=True)
    if request.width is not None and request.height is not None:
        return Target(request.width, request.height, None, None, f"{request.width}x{request.height} as given")
    if request.image_size is not None:
        w, h = presets[request.image_size]
        return Target(w, h, None, request.image_size, f"preset {request.image_size} = {w}x{h}")
    ratio_text = request.aspect_ratio or DEFAULT_ASPECT_RATIO
    w, h = size_for_ratio(parse_aspect_ratio(ratio_text), request.megapixels)
    given = "" if request.aspect_ratio else " (default)"
    mp = f"{request.megapixels:g} MP"
    derivation = f"aspect_ratio {ratio_text}{given} at {mp} -> {w}x{h} (multiples of 16, area <= {mp})"
    return Target(w, h, ratio_text, None, derivation)


# an upscale planned without its input's size read is estimated as if the input were this size
ASSUMED_INPUT_SIZE = (1024, 1024)


def upscale_target(request: ImageRequest, input_size: tuple[int, int] | None) -> Target:
    """An upscale's output: the input's size times upscale_factor (default x2), or the largest size of the input's
    shape within the width x height asked for.

    Raises:
        InvalidRequest: width/height smaller than the input (an upscale makes images larger).
    """
    width, height = input_size or ASSUMED_INPUT_SIZE
    source = f"the input image's {width}x{height}" if input_size else f"an input assumed {width}x{height} (not read)"
    if request.width is not None and request.height is not None:
        factor = min(request.width / width, request.height / height)
        if factor < 1:
            raise InvalidRequest(
                [
                    FieldError(
                        "width, height",
                        f"{request.width}x{request.height}",
                        f"an output larger than the input image ({width}x{height}); an upscale does not shrink",
                    )
                ]
            )
        how = f"to fit {request.width}x{request.height}"
    else:
        factor = request.upscale_factor or DEFAULT_UPSCALE_FACTOR
        how = "" if request.upscale_factor else " (default)"
    out_w, out_h = round(width * factor), round(height * factor)
    derivation = f"{source} x{factor:g}{how} -> {out_w}x{out_h}"
    return Target(out_w, out_h, None, None, derivation, factor=factor)


def fit_upscale(rule: UpscaleRule, size: SizeRule, target: Target, max_pixels: int, limit: str) -> Sized:
    """Whether an upscale offer renders `target` (an upscale_target): its factor range, and its output limits and
    the largest result this machine accepts (`max_pixels`, which `limit` names and says how to raise)."""
    factor, width, height = target.factor or DEFAULT_UPSCALE_FACTOR, target.width, target.height
    low, high = rule.factor.min, rule.factor.max
    problems = []
    if low == high and factor != low:
        problems.append(f"x{low:g} only; request is x{factor:g}")
    elif not low <= factor <= high:
        problems.append(f"factor {low:g}-{high:g}; request is x{factor:g}")
    if max(width, height) > size.max_side:
        problems.append(f"output {width}x{height} is over its largest side, {size.max_side} px")
    if size.max_megapixels is not None and width * height / 1e6 > size.max_megapixels:
        problems.append(f"output {width * height / 1e6:.1f} MP exceeds {size.max_megapixels:g} MP")
    if width * height > max_pixels:
        problems.append(f"output {width}x{height} is more than {max_pixels:,} pixels ({limit})")
    return Sized(width, height, rejection="; ".join(problems) or None)


def fit(rule: SizeRule, target: Target, presets: dict[str, tuple[int, int]]) -> Sized:
    """How an offer with `rule` delivers `target`, or why it cannot."""
    if rule.aspect_sizes:
        return _fit_fixed(rule, target)
    if target.preset and rule.presets:
        return Sized(target.width, target.height, preset=target.preset)
    if rule.presets:
        for name, (pw, ph) in presets.items():
            if (pw, ph) == (target.width, target.height):
                return Sized(pw, ph, preset=name)
    if not rule.custom:
        return Sized(target.width, target.height, rejection=f"{target.width}x{target.height} is not one of its presets")
    width, height, adjustments = target.width, target.height, []
    if target.shrinkable:
        width, height = _within_limits(rule, width, height)
        if (width, height) != (target.width, target.height):
            way = "up" if width > target.width else "down"
            reason = f"the input image's size, scaled {way} to what the offer renders"
            adjustments.append(_resized(target, width, height, reason))
    if rule.multiple > 1 and (width % rule.multiple or height % rule.multiple):
        width, height = _snap(width, rule.multiple), _snap(height, rule.multiple)
        adjustments.append(_resized(target, width, height, f"snapped to multiples of {rule.multiple}"))
    problems = []
    for name, side in (("width", width), ("height", height)):
        if not rule.min_side <= side <= rule.max_side:
            problems.append(f"{name} {side} outside {rule.min_side}-{rule.max_side} px")
    if rule.max_megapixels is not None and width * height / 1e6 > rule.max_megapixels:
        problems.append(f"{width * height / 1e6:.1f} MP exceeds {rule.max_megapixels:g} MP")
    if problems:
        return Sized(width, height, rejection="; ".join(problems))
    return Sized(width, height, adjustments=adjustments)


def _resized(target: Target, width: int, height: int, reason: str) -> Adjustment:
    requested = f"{target.width}x{target.height}"
    return Adjustment(field="size", requested=requested, sent=f"{width}x{height}", reason=reason)


def _within_limits(rule: SizeRule, width: int, height: int) -> tuple[int, int]:
    """width x height at the same shape, scaled down to the rule's longest side and area, or up to its shortest
    side (whole multiples of its step: down when shrinking, up when growing, so the limit holds)."""
    scale = min(1.0, rule.max_side / max(width, height))
    if rule.max_megapixels is not None:
        scale = min(scale, math.sqrt(rule.max_megapixels * 1e6 / (width * height)))
    if min(width, height) < rule.min_side:
        scale = rule.min_side / min(width, height)
    if scale == 1.0:
        return width, height
    step = max(rule.multiple, 1)
    rounded = math.ceil if scale > 1 else math.floor
    return max(rule.min_side, rounded(width * scale / step) * step), max(
        rule.min_side, rounded(height * scale / step) * step
    )


def _snap(side: int, multiple: int) -> int:
    """Nearest multiple, halves rounded up (so 1000 -> 1008, not banker's 992)."""
    return max(multiple, (side + multiple // 2) // multiple * multiple)


def _fit_fixed(rule: SizeRule, target: Target) -> Sized:
    """Offers with a fixed table of aspect ratios (Krea 2): the nearest ratio, at its one size."""
    if target.ratio_text in rule.aspect_sizes:
        key = target.ratio_text
    else:
        key = min(
            rule.aspect_sizes,
            key=lambda k: abs(math.log(parse_aspect_ratio(k) / target.ratio)),
        )
    width, height = rule.aspect_sizes[key]
    if target.width * target.height > FIXED_SIZE_TOLERANCE * width * height:
        return Sized(
            width,
            height,
            aspect_key=key,
            rejection=f"{target.megapixels:.1f} MP requested; renders {key} at {width}x{height} "
            f"({width * height / 1e6:.1f} MP) only",
        )
    adjustments = []
    requested = target.ratio_text or f"{target.width}x{target.height}"
    if key != target.ratio_text:
        adjustments.append(
            Adjustment(field="aspect_ratio", requested=requested, sent=key, reason="nearest supported aspect ratio")
        )
    if (width, height) != (target.width, target.height):
        adjustments.append(
            Adjustment(
                field="size",
                requested=f"{target.width}x{target.height}",
                sent=f"{width}x{height}",
                reason=f"renders {key} at 1K only",
            )
        )
    return Sized(width, height, aspect_key=key, adjustments=adjustments)
