"""Planning: filter every offer (license, size, features, budget, pins, availability), rank the rest, explain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel

from fluxroute.catalog import Catalog, Offer, Range
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.providers.base import Availability
from fluxroute.providers.wire import WIRE_BUILDERS, ResolvedCall
from fluxroute.router.pricing import billed_megapixels, estimate_cost
from fluxroute.router.sizing import Target, fit, target_of
from fluxroute.settings import Settings
from fluxroute.types import Adjustment, Candidate, ImageRequest, Plan, Rejection, Usage

AUTO = "auto"
_M = TypeVar("_M", bound=BaseModel)


# sizing.fit answers kept per Planner, by (distinct size rule, target); cleared when full
FIT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Fit:
    """An offer's size for one target (sizing.Sized, frozen so that plans can share it)."""

    width: int
    height: int
    preset: str | None
    aspect_key: str | None
    adjustments: tuple[Adjustment, ...]
    rejection: str | None


@dataclass(slots=True)
class _Verdict:
    """What one offer makes of a request, apart from its id and label (offers alike in everything else, such
    as copies of an offer under other ids, share it within a plan)."""

    reasons: list[str]
    size: _Fit | None = None
    steps: float | None = None
    guidance: float | None = None
    strength: float | None = None
    latency: float = 0.0
    cost: Decimal = Decimal(0)
    adjustments: tuple[Adjustment, ...] = ()
    call: ResolvedCall | None = None  # what a candidate sends, made for the first offer that uses it


def _trusted(cls: type[_M], fields: dict[str, object]) -> _M:
    """`cls` from `fields`, every field given and already checked (built here from the validated catalog and
    request): what BaseModel.model_construct makes, at a fraction of its cost, and of validation's."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


class Planner:
    """Turns an ImageRequest into a Plan. Pure: same request, catalog and availability -> same plan.

    Every offer of the requested model is judged, each reason it is refused listed; the work is shared where it
    can be: offers that differ only in id and label are judged once per plan, and each distinct size rule's fit
    for a target is kept across plans (FIT_CACHE_SIZE entries)."""

    def __init__(self, catalog: Catalog, settings: Settings, availability: Mapping[str, Availability]) -> None:
        self.catalog = catalog
        self.settings = settings
        self.availability = dict(availability)
        self._model_ids = [m.id for m in catalog.models]
        self._order = {offer.id: i for i, offer in enumerate(catalog.offers)}
        # for each offer: the index of the first offer equal to it but for id and label, and of its size rule
        alike: dict[str, int] = {}
        rules: dict[str, int] = {}
        self._alike: list[int] = []
        self._rule: list[int] = []
        for i, offer in enumerate(catalog.offers):
            self._alike.append(alike.setdefault(offer.model_dump_json(exclude={"id", "label"}), i))
            self._rule.append(rules.setdefault(offer.size.model_dump_json(), len(rules)))
        self._fits: dict[tuple[int, int, int, str | None, str | None], _Fit] = {}

    def plan(self, request: ImageRequest, input_size: tuple[int, int] | None = None) -> Plan:
        """The plan for `request`. `input_size` is the pixel size of `request.init_image` (see
        fluxroute.router.input_size): offers whose output follows the input image (size.output = "input") are
        sized and priced by it; without it they are estimated at the requested size, and say so."""
        if request.model != AUTO and request.model not in self._model_ids:
            raise InvalidRequest(
                [FieldError("model", request.model, f"allowed: {', '.join([AUTO, *self._model_ids])}")]
            )
        usage: Usage = request.usage or self.settings.usage
        target = target_of(request, self.catalog.presets)
        max_cost = None if request.max_cost_usd is None else Decimal(str(request.max_cost_usd))
        candidates: list[Candidate] = []
        unavailable: list[Candidate] = []
        rejections: list[Rejection] = []
        verdicts: dict[int, _Verdict] = {}
        for i, offer in enumerate(self.catalog.offers):
            if request.model not in (AUTO, offer.model):
                continue
            verdict = verdicts.get(self._alike[i])
            if verdict is None:
                verdict = verdicts[self._alike[i]] = self._judge(i, offer, request, usage, target, input_size, max_cost)
            if verdict.reasons:
                fields = {"offer_id": offer.id, "label": offer.label, "provider": offer.provider, "model": offer.model}
                rejections.append(_trusted(Rejection, {**fields, "reasons": list(verdict.reasons)}))
                continue
            candidate = self._candidate(offer, request, verdict)
            (candidates if candidate.available else unavailable).append(candidate)
        order = self._order

        def rank(c: Candidate) -> tuple[float, float, int]:
            first, second = (c.cost_usd, c.latency_s) if request.prefer == "cost" else (c.latency_s, c.cost_usd)
            return (first, second, order[c.offer_id])

        candidates.sort(key=rank)
        unavailable.sort(key=rank)
        return _trusted(
            Plan,
            {
                "request": request.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
                "usage": usage,
                "target_width": target.width,
                "target_height": target.height,
                "candidates": candidates,
                "unavailable": unavailable,
                "rejections": rejections,
                "explanation": _explain(request, usage, target, candidates, unavailable, rejections),
            },
        )

    def needs_input_size(self, request: ImageRequest) -> bool:
        """Whether an offer that may serve `request` outputs at its input image's size, so that planning it
        needs that size (model, mode and provider pins decide "may"; the rest is left to plan)."""
        if request.init_image is None:
            return False
        return any(
            offer.size.output == "input"
            and request.model in (AUTO, offer.model)
            and request.mode in offer.modes
            and (request.provider is None or offer.provider == request.provider)
            and (request.providers is None or offer.provider in request.providers)
            and offer.provider not in request.exclude_providers
            for offer in self.catalog.offers
        )

    def _judge(
        self,
        index: int,
        offer: Offer,
        request: ImageRequest,
        usage: Usage,
        target: Target,
        input_size: tuple[int, int] | None,
        max_cost: Decimal | None,
    ) -> _Verdict:
        """Every reason `offer` cannot serve `request` (none: it can), with the size, values, latency and cost
        it would send and charge. Cost is worked out for a refused offer only when a cap could add a reason."""
        reasons: list[str] = []
        if request.provider is not None and offer.provider != request.provider:
            reasons.append(f"pinned to provider={request.provider}")
        if request.providers is not None and offer.provider not in request.providers:
            reasons.append(f"provider {offer.provider} not in providers={list(request.providers)}")
        if offer.provider in request.exclude_providers:
            reasons.append(f"provider {offer.provider} excluded")
        license_ = self.catalog.licenses[offer.license]
        own_license = offer.provider == "local" and self.settings.local_commercial_license
        if usage == "commercial" and not license_.commercial and not own_license:
            reasons.append(f"{license_.name} and usage=commercial")
        if request.mode not in offer.modes:
            reasons.append(f"{' and '.join(offer.modes)} only; request is {request.mode}")
        if request.negative_prompt is not None and not offer.negative_prompt:
            reasons.append("guidance-distilled endpoint ignores negative_prompt (rephrase it positively)")
        if len(request.style_references) > offer.max_style_references:
            reasons.append(
                f"takes at most {offer.max_style_references} style_references, got {len(request.style_references)}"
            )
        if request.num_images > offer.max_images:
            what = "one image per job" if offer.max_images == 1 else f"at most {offer.max_images} images per call"
            reasons.append(f"{what}; num_images={request.num_images}")
        if offer.max_prompt_chars is not None and len(request.prompt) > offer.max_prompt_chars:
            reasons.append(f"prompt is {len(request.prompt)} characters; at most {offer.max_prompt_chars}")
        sized = self._size(index, offer, request, target, input_size)
        if sized.rejection:
            reasons.append(sized.rejection)
        cap = self.settings.budget_per_call_usd
        if reasons and max_cost is None and cap is None:
            return _Verdict(reasons)  # no cap can add a reason: its cost is not needed
        adjustments = list(sized.adjustments)
        steps = _fit_range("steps", request.steps, offer.steps, adjustments, integer=True)
        guidance = _fit_range("guidance", request.guidance, offer.guidance, adjustments)
        strength = (
            _fit_range("strength", request.strength, offer.strength, adjustments)
            if request.init_image is not None
            else None
        )
        latency = _expected_latency(offer, sized.width * sized.height, steps, request)
        cost = estimate_cost(
            offer.price,
            width=sized.width,
            height=sized.height,
            num_images=request.num_images,
            gpu_seconds=latency,
            style_references=bool(request.style_references),
        )
        if max_cost is not None and cost > max_cost:
            reasons.append(f"costs ${cost} > max_cost_usd ${request.max_cost_usd:g}")
        if cap is not None and cost > cap:
            reasons.append(f"costs ${cost} > per-call budget ${cap} (settings)")
        return _Verdict(reasons, sized, steps, guidance, strength, latency, cost, tuple(adjustments))

    def _candidate(self, offer: Offer, request: ImageRequest, verdict: _Verdict) -> Candidate:
        sized = verdict.size
        assert sized is not None
        if verdict.call is None:
            verdict.call = ResolvedCall(
                prompt=request.prompt,
                width=sized.width,
                height=sized.height,
                preset=sized.preset,
                aspect_key=sized.aspect_key,
                num_images=request.num_images,
                steps=None if verdict.steps is None else int(verdict.steps),
                guidance=verdict.guidance,
                seed=request.seed,
                output_format=request.output_format,
                negative_prompt=request.negative_prompt,
                init_image=request.init_image,
                strength=verdict.strength,
                style_references=request.style_references,
            )
        availability = self.availability.get(offer.provider, Availability(False, "provider not registered"))
        return _trusted(
            Candidate,
            {
                "offer_id": offer.id,
                "label": offer.label,
                "provider": offer.provider,
                "model": offer.model,
                "endpoint": offer.endpoint,
                "width": sized.width,
                "height": sized.height,
                "num_images": request.num_images,
                "cost_usd": float(verdict.cost),
                "latency_s": round(verdict.latency, 2),
                "license": self.catalog.licenses[offer.license].name,
                "adjustments": list(verdict.adjustments),
                "params": WIRE_BUILDERS[offer.wire](verdict.call),
                "available": availability.ok,
                "unavailable_reason": None if availability.ok else availability.reason,
            },
        )

    def _fit(self, index: int, offer: Offer, target: Target) -> _Fit:
        """sizing.fit for `offer`'s size rule and `target`, kept for the next plans."""
        key = (self._rule[index], target.width, target.height, target.ratio_text, target.preset)
        fitted = self._fits.get(key)
        if fitted is None:
            if len(self._fits) >= FIT_CACHE_SIZE:
                self._fits.clear()
            sized = fit(offer.size, target, self.catalog.presets)
            fitted = self._fits[key] = _Fit(
                sized.width, sized.height, sized.preset, sized.aspect_key, tuple(sized.adjustments), sized.rejection
            )
        return fitted

    def _size(
        self, index: int, offer: Offer, request: ImageRequest, target: Target, input_size: tuple[int, int] | None
    ) -> _Fit:
        """The size `offer` renders and bills: the request's (through its size rules), or, for offers whose
        output follows the input image, that image's size through the same rules."""
        if offer.size.output != "input" or request.init_image is None:
            return self._fit(index, offer, target)
        requested = f"{target.width}x{target.height}"
        if input_size is None:
            sized = self._fit(index, offer, target)
            reason = "output follows the input image, whose size was not read for this plan; estimated at this size"
            adjustment = Adjustment(
                field="size", requested=requested, sent=f"{sized.width}x{sized.height}", reason=reason
            )
            return replace(sized, adjustments=(adjustment, *sized.adjustments))
        width, height = input_size
        source = Target(width, height, None, None, f"input image {width}x{height}")
        sized = self._fit(index, offer, source)
        if sized.rejection:
            return replace(sized, rejection=f"output follows the input image ({width}x{height}): {sized.rejection}")
        reason = f"output follows the input image: {width}x{height}"
        if offer.price.unit == "megapixel_ceil":
            reason += f", billed {billed_megapixels(sized.width, sized.height)} MP per image"
        adjustment = Adjustment(field="size", requested=requested, sent=f"{sized.width}x{sized.height}", reason=reason)
        return replace(sized, adjustments=(adjustment, *sized.adjustments))


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
