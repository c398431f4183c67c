"""The planner as it was before plans were built from indexes and caches: the reference new plans must equal."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

from fluxroute.catalog import Catalog, Offer, Range, license_duty, license_refusal
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.providers.base import Availability
from fluxroute.providers.wire import WIRE_BUILDERS, ResolvedCall
from fluxroute.router.planner import _upscale_wire, accepted_pixels
from fluxroute.router.pricing import billed_megapixels, estimate_cost
from fluxroute.router.sizing import Sized, Target, fit, fit_upscale, target_of
from fluxroute.settings import Settings
from fluxroute.types import Adjustment, Candidate, ImageRequest, Plan, Rejection, Usage

AUTO = "auto"


class Planner:
    """Turns an ImageRequest into a Plan. Pure: same request, catalog and availability -> same plan."""

    def __init__(self, catalog: Catalog, settings: Settings, availability: Mapping[str, Availability]) -> None:
        self.catalog = catalog
        self.settings = settings
        self.availability = dict(availability)
        self._model_ids = [m.id for m in catalog.models]
        self._in_auto = {m.id: m.auto for m in catalog.models}

    def _duty(self, offer_id: str) -> str | None:
        offer = self.catalog.offer(offer_id)
        return license_duty(self.catalog.licenses[offer.license], offer, self.settings)

    def _asks_for(self, requested: str, model: str) -> bool:
        return requested == model or (requested == AUTO and self._in_auto[model])

    def plan(self, request: ImageRequest, input_size: tuple[int, int] | None = None) -> Plan:
        """The plan for `request`. `input_size` is the pixel size of `request.init_image` (see
        fluxroute.router.input_size): offers whose output follows the input image (size.output = "input") are
        sized and priced by it; without it they are estimated at the requested size, and say so."""
        if request.model != AUTO and request.model not in self._model_ids:
            raise InvalidRequest(
                [FieldError("model", request.model, f"allowed: {', '.join([AUTO, *self._model_ids])}")]
            )
        usage: Usage = request.usage or self.settings.usage
        target = target_of(request, self.catalog.presets, input_size)
        candidates: list[Candidate] = []
        unavailable: list[Candidate] = []
        rejections: list[Rejection] = []
        for offer in self.catalog.offers:
            if not self._asks_for(request.model, offer.model):
                continue
            if (offer.upscale is not None) != (request.mode == "upscale"):
                continue
            outcome = self._consider(offer, request, usage, target, input_size)
            if isinstance(outcome, Rejection):
                rejections.append(outcome)
            elif outcome.available:
                candidates.append(outcome)
            else:
                unavailable.append(outcome)
        order = {offer.id: i for i, offer in enumerate(self.catalog.offers)}

        def rank(c: Candidate) -> tuple[float, float, int]:
            first, second = (c.cost_usd, c.latency_s) if request.prefer == "cost" else (c.latency_s, c.cost_usd)
            return (first, second, order[c.offer_id])

        candidates.sort(key=rank)
        unavailable.sort(key=rank)
        return Plan(
            request=request.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            usage=usage,
            target_width=target.width,
            target_height=target.height,
            candidates=candidates,
            unavailable=unavailable,
            rejections=rejections,
            explanation=_explain(request, usage, target, candidates, unavailable, rejections, self._duty),
        )

    def needs_input_size(self, request: ImageRequest) -> bool:
        """Whether an offer that may serve `request` outputs at its input image's size, so that planning it
        needs that size (model, mode and provider pins decide "may"; the rest is left to plan)."""
        if request.init_image is None:
            return False
        return any(
            offer.size.output == "input"
            and self._asks_for(request.model, offer.model)
            and request.mode in offer.modes
            and (request.provider is None or offer.provider == request.provider)
            and (request.providers is None or offer.provider in request.providers)
            and offer.provider not in request.exclude_providers
            for offer in self.catalog.offers
        )

    def _consider(
        self, offer: Offer, request: ImageRequest, usage: Usage, target: Target, input_size: tuple[int, int] | None
    ) -> Candidate | Rejection:
        reasons: list[str] = []
        if request.provider is not None and offer.provider != request.provider:
            reasons.append(f"pinned to provider={request.provider}")
        if request.providers is not None and offer.provider not in request.providers:
            reasons.append(f"provider {offer.provider} not in providers={list(request.providers)}")
        if offer.provider in request.exclude_providers:
            reasons.append(f"provider {offer.provider} excluded")
        refusal = license_refusal(self.catalog.licenses[offer.license], offer, self.settings, usage)
        if refusal is not None:
            reasons.append(refusal)
        if request.mode not in offer.modes:
            reasons.append(f"{' and '.join(offer.modes)} only; request is {request.mode}")
        if request.negative_prompt is not None and not offer.negative_prompt:
            reasons.append("guidance-distilled endpoint ignores negative_prompt (rephrase it positively)")
        if len(request.style_references) > offer.max_style_references:
            reasons.append(
                f"takes at most {offer.max_style_references} style_references, got {len(request.style_references)}"
            )
        if offer.upscale is not None and offer.upscale.method != request.method:
            reasons.append(f"{offer.upscale.method} upscaler; request is {request.method}")
        if request.num_images > offer.max_images:
            what = "one image per job" if offer.max_images == 1 else f"at most {offer.max_images} images per call"
            reasons.append(f"{what}; num_images={request.num_images}")
        if offer.max_prompt_chars is not None and len(request.prompt) > offer.max_prompt_chars:
            reasons.append(f"prompt is {len(request.prompt)} characters; at most {offer.max_prompt_chars}")
        sized = self._size(offer, request, target, input_size)
        if sized.rejection:
            reasons.append(sized.rejection)
        adjustments = list(sized.adjustments)
        steps = _fit_range("steps", request.steps, offer.steps, adjustments, integer=True)
        guidance = _fit_range("guidance", request.guidance, offer.guidance, adjustments)
        strength = (
            _fit_range("strength", request.strength, offer.strength, adjustments)
            if request.init_image is not None
            else None
        )
        latency = _expected_latency(offer, sized.width * sized.height, steps, request)
        if offer.price.usd is None:
            unit = {
                "image": "per image",
                "megapixel_ceil": "per megapixel",
                "gpu_second": "per GPU-second",
                "compute_second": "per compute-second",
            }
            reasons.append(
                f"price not published by {offer.provider}: set [prices] {offer.id} (USD {unit[offer.price.unit]}) "
                "to use it"
            )
            return Rejection(
                offer_id=offer.id, label=offer.label, provider=offer.provider, model=offer.model, reasons=reasons
            )
        cost = estimate_cost(
            offer.price,
            width=sized.width,
            height=sized.height,
            num_images=request.num_images,
            gpu_seconds=latency,
            style_references=bool(request.style_references),
        )
        if request.max_cost_usd is not None and cost > Decimal(str(request.max_cost_usd)):
            reasons.append(f"costs ${cost} > max_cost_usd ${request.max_cost_usd:g}")
        cap = self.settings.budget_per_call_usd
        if cap is not None and cost > cap:
            reasons.append(f"costs ${cost} > per-call budget ${cap} (settings)")
        if reasons:
            return Rejection(
                offer_id=offer.id, label=offer.label, provider=offer.provider, model=offer.model, reasons=reasons
            )
        call = ResolvedCall(
            prompt=request.prompt,
            width=sized.width,
            height=sized.height,
            preset=sized.preset,
            aspect_key=sized.aspect_key,
            num_images=request.num_images,
            steps=None if steps is None else int(steps),
            guidance=guidance,
            seed=request.seed,
            output_format=request.output_format,
            negative_prompt=request.negative_prompt,
            init_image=request.init_image,
            strength=strength,
            style_references=request.style_references,
            mode=request.mode,
            mask_image=request.mask_image,
            loras=request.loras,
            upscale=_upscale_wire(offer, request, target),
        )
        availability = self.availability.get(offer.provider, Availability(False, "provider not registered"))
        return Candidate(
            offer_id=offer.id,
            label=offer.label,
            provider=offer.provider,
            model=offer.model,
            endpoint=offer.endpoint,
            width=sized.width,
            height=sized.height,
            num_images=request.num_images,
            cost_usd=float(cost),
            latency_s=round(latency, 2),
            license=self.catalog.licenses[offer.license].name,
            adjustments=adjustments,
            params=WIRE_BUILDERS[offer.wire](call),
            available=availability.ok,
            unavailable_reason=None if availability.ok else availability.reason,
        )

    def _size(self, offer: Offer, request: ImageRequest, target: Target, input_size: tuple[int, int] | None) -> Sized:
        """The size `offer` renders and bills: the request's (through its size rules), or, for offers whose
        output follows the input image, that image's size through the same rules."""
        if offer.upscale is not None:
            return fit_upscale(offer.upscale, offer.size, target, *accepted_pixels(self.settings))
        if offer.size.output != "input" or request.init_image is None:
            return fit(offer.size, target, self.catalog.presets)
        requested = f"{target.width}x{target.height}"
        if input_size is None:
            sized = fit(offer.size, target, self.catalog.presets)
            reason = "output follows the input image, whose size was not read for this plan; estimated at this size"
            sized.adjustments.insert(
                0, Adjustment(field="size", requested=requested, sent=f"{sized.width}x{sized.height}", reason=reason)
            )
            return sized
        width, height = input_size
        source = Target(width, height, None, None, f"input image {width}x{height}")
        sized = fit(offer.size, source, self.catalog.presets)
        if sized.rejection:
            sized.rejection = f"output follows the input image ({width}x{height}): {sized.rejection}"
            return sized
        reason = f"output follows the input image: {width}x{height}"
        if offer.price.unit == "megapixel_ceil":
            reason += f", billed {billed_megapixels(sized.width, sized.height)} MP per image"
        sized.adjustments.insert(
            0, Adjustment(field="size", requested=requested, sent=f"{sized.width}x{sized.height}", reason=reason)
        )
        return sized


def _fit_range(
    name: str, value: float | None, rule: Range | None, adjustments: list[Adjustment], integer: bool = False
) -> float | None:
    """The value an endpoint receives: its default, the request's value, or a clamp that is recorded."""
    if rule is None:
        if value is not None:
            adjustments.append(
                Adjustment(field=name, requested=value, sent=None, reason="endpoint has no such parameter")
            )
        return None
    if value is None:
        return int(rule.default) if integer else rule.default
    clamped = min(max(value, rule.min), rule.max)
    if integer:
        clamped = int(clamped)
    if clamped != value:
        adjustments.append(
            Adjustment(field=name, requested=value, sent=clamped, reason=f"endpoint allows {rule.min:g}-{rule.max:g}")
        )
    return clamped


def _expected_latency(offer: Offer, pixels: int, steps: float | None, request: ImageRequest) -> float:
    """Seconds, scaled from the offer's 1 MP / default-steps estimate by area, steps, images and CFG."""
    seconds = offer.latency_s * max(pixels / 1e6, 0.25)
    if steps is not None and offer.steps is not None:
        seconds *= steps / offer.steps.default
    if offer.provider != "krea":
        seconds *= request.num_images
    if request.negative_prompt is not None and offer.negative_prompt:
        seconds *= 2  # true CFG: a second transformer pass per step
    return seconds


def _explain(
    request: ImageRequest,
    usage: Usage,
    target: Target,
    candidates: list[Candidate],
    unavailable: list[Candidate],
    rejections: list[Rejection],
    duty: Callable[[str], str | None],
) -> str:
    lines = [f"size: {target.derivation}; usage={usage}; prefer={request.prefer}"]
    if candidates:
        best = candidates[0]
        why = "cheapest" if request.prefer == "cost" else "fastest"
        lines.append(
            f"chose {best.label} ({best.model}) at ${best.cost_usd:g} for {best.width}x{best.height}: "
            f"{why} of {len(candidates)} usable offer(s)"
        )
        lines.extend(f"  adjusted {adj}" for adj in best.adjustments)
        if (stated := duty(best.offer_id)) is not None:
            lines.append(f"  license duty: {stated}")
        lines.extend(f"  fallback {c.label} at ${c.cost_usd:g}{_resized(c)}" for c in candidates[1:])
    else:
        lines.append("no configured offer can serve this request")
    if unavailable:
        best = unavailable[0]
        prefix = "would also fit" if candidates else "with it configured,"
        lines.append(
            f"{prefix} {best.label} at ${best.cost_usd:g}{_resized(best)} (not available: {best.unavailable_reason})"
        )
        if not candidates:
            lines.extend(f"  adjusted {adj}" for adj in best.adjustments)
        lines.extend(
            f"  also fits {c.label} at ${c.cost_usd:g}{_resized(c)} ({c.unavailable_reason})" for c in unavailable[1:]
        )
    lines.extend(f"rejected {r.label}: {'; '.join(r.reasons)}" for r in rejections)
    return "\n".join(lines)


def _resized(candidate: Candidate) -> str:
    """' for WxH (why)' when the offer renders another size than asked (snapped, or following the input image)."""
    size = next((a for a in candidate.adjustments if a.field == "size"), None)
    return "" if size is None else f" for {candidate.width}x{candidate.height} ({size.reason})"
