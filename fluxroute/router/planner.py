"""Planning: filter every offer (license, size, features, budget, pins, availability), rank the rest, explain."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel

from fluxroute.catalog import Catalog, Offer, Range, license_duty, license_refusal
from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.providers.base import Availability
from fluxroute.providers.wire import WIRE_BUILDERS, ResolvedCall, UpscaleWire
from fluxroute.router.pricing import billed_megapixels, estimate_cost
from fluxroute.router.sizing import Target, fit, fit_upscale, sized_by_caller, target_of
from fluxroute.settings import Settings
from fluxroute.types import Adjustment, Candidate, ImageRequest, Plan, Rejection, Usage, rejection_line

AUTO = "auto"
USAGES: tuple[Usage, ...] = ("commercial", "non-commercial")
_M = TypeVar("_M", bound=BaseModel)


# sizing.fit answers kept per Planner, by (distinct size rule, target); cleared when full
FIT_CACHE_SIZE = 4096
# scopes kept per Planner, by (model, mode, providers allowed, usage): a few per model in practice
SCOPE_CACHE_SIZE = 1024

NOT_REGISTERED = Availability(False, "provider not registered")
# what a plan holds in memory, roughly (tracemalloc over plans of 8 to 800 offers: benchmarks/plan_scale.py
# --memory); rejections counted as built, which they are once anything reads or serialises them
PLAN_BYTES = 6_000
CANDIDATE_BYTES = 700
REJECTION_BYTES = 550
# a price's unit, as the words after "USD" in an explanation
PRICE_UNIT_WORDS = {
    "image": "per image",
    "megapixel_ceil": "per megapixel",
    "gpu_second": "per GPU-second",
    "compute_second": "per compute-second",
}
# in an unpriced offer's reason, where its rejection names the offer id to set
SET_PRICE = "set one in [prices]"
CANDIDATE_FIELDS = frozenset(Candidate.model_fields)
REJECTION_FIELDS = frozenset(Rejection.model_fields)
PLAN_FIELDS = frozenset(Plan.model_fields)


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
    """What one offer makes of a request, apart from its id, label, endpoint and price (offers alike in
    everything else, such as copies of an offer under other ids or prices, share it within a plan): the reasons
    it is refused but its cost, and what it would send and take. `size` is None for an offer refused before
    that was worked out (see Planner._assess)."""

    reasons: list[str]
    size: _Fit | None = None
    steps: float | None = None
    guidance: float | None = None
    strength: float | None = None
    latency: float = 0.0
    adjustments: tuple[Adjustment, ...] = ()


@dataclass(frozen=True, slots=True)
class _Scope:
    """The offers a plan lists (every offer of the requested model, in catalog order) and, among them, the ones
    whose model, mode, provider and license class can match the request, as (alike id, members) groups; the
    others are rejected whatever else the request asks, so their reasons wait until something reads them."""

    offers: tuple[int, ...]
    groups: tuple[tuple[int, tuple[int, ...]], ...]


def _trusted(cls: type[_M], fields: dict[str, object], names: frozenset[str] | set[str] | None = None) -> _M:
    """`cls` from `fields`, every field given and already checked (built here from the validated catalog and
    request): what BaseModel.model_construct makes, at a fraction of its cost, and of validation's. `names`
    (the fields set, every field) is copied per object, as model_copy adds to it."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields) if names is None else set(names))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def plan_bytes(plan: Plan, request: ImageRequest) -> int:
    """About how many bytes `plan` for `request` keeps alive: a fixed part, each candidate and rejection, and
    the request's own text (prompt, image data: URIs), which the plan and a cache key hold."""
    text = len(request.prompt) + len(request.init_image or "") + sum(len(s.url) for s in request.style_references)
    listed = len(plan.candidates) + len(plan.unavailable)
    return PLAN_BYTES + CANDIDATE_BYTES * listed + REJECTION_BYTES * plan.rejected + text


class Planner:
    """Turns an ImageRequest into a Plan. Pure: same request, catalog and availability -> same plan.

    Every offer of the requested model is listed, each reason it is refused given; the work is shared and put
    off where it can be. Offers are indexed by (model, mode, provider, license class): a plan judges only the
    offers a request can match, and offers that differ only in id and label once; the others' rejections, the
    explanation and the request as JSON are built when first read (see types.Plan). Each distinct size rule's
    fit for a target is kept across plans (FIT_CACHE_SIZE entries)."""

    def __init__(self, catalog: Catalog, settings: Settings, availability: Mapping[str, Availability]) -> None:
        self.catalog = catalog
        self.settings = settings
        self.availability = dict(availability)
        self._in_auto = {info.id: info.auto for info in catalog.models}
        self._model_ids = [m.id for m in catalog.models]
        # for each offer: the index of the first offer equal to it but for id and label (its cost too is the
        # same), of the first equal to it but for id, label, endpoint and price amounts (everything but its
        # cost is the same), and of its size rule
        alike: dict[str, int] = {}
        kinds: dict[str, int] = {}
        rules: dict[str, int] = {}
        self._alike: list[int] = []
        self._kind: list[int] = []
        self._rule: list[int] = []
        for i, offer in enumerate(catalog.offers):
            self._alike.append(alike.setdefault(offer.model_dump_json(exclude={"id", "label"}), i))
            kind = offer.model_dump_json(exclude={"id", "label", "endpoint", "price"}) + offer.price.unit
            self._kind.append(kinds.setdefault(kind, i))
            self._rule.append(rules.setdefault(offer.size.model_dump_json(), len(rules)))
        # the index: offers by (model, mode, provider, license class: the usages its license allows under the
        # user's declarations), and the content-filter duty of each offer's outputs, by offer id
        self._classes: dict[tuple[str, str, str, tuple[bool, ...]], list[int]] = {}
        self._duties: dict[str, str] = {}
        for i, offer in enumerate(catalog.offers):
            license_ = catalog.licenses[offer.license]
            allows = tuple(license_refusal(license_, offer, settings, usage) is None for usage in USAGES)
            for mode in offer.modes:
                self._classes.setdefault((offer.model, mode, offer.provider, allows), []).append(i)
            duty = license_duty(license_, offer, settings)
            if duty is not None:
                self._duties[offer.id] = duty
        self._providers = sorted({offer.provider for offer in catalog.offers})
        self._accepted_pixels = accepted_pixels(settings)
        self._scopes: dict[tuple[str, str, tuple[str, ...], int], _Scope] = {}
        self._fits: dict[tuple[int, int, int, str | None, str | None, bool], _Fit] = {}
        # what a candidate of an offer shares with every plan: its fields in Candidate's order, the
        # request-dependent ones to be filled in
        self._templates: list[dict[str, object]] = [
            {
                "offer_id": offer.id,
                "label": offer.label,
                "provider": offer.provider,
                "model": offer.model,
                "endpoint": offer.endpoint,
                "width": 0,
                "height": 0,
                "num_images": 0,
                "cost_usd": 0.0,
                "latency_s": 0.0,
                "license": catalog.licenses[offer.license].name,
                "adjustments": None,
                "params": None,
                "available": True,
                "unavailable_reason": None,
            }
            for offer in catalog.offers
        ]

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
        max_cost = None if request.max_cost_usd is None else Decimal(str(request.max_cost_usd))
        scope = self._scope(request, usage)
        offers = self.catalog.offers
        by_cost = request.prefer == "cost"
        ranked: list[tuple[float, float, int, Candidate]] = []
        unranked: list[tuple[float, float, int, Candidate]] = []
        refusals: dict[int, list[str]] = {}  # by alike id: every reason (none: its offers are candidates)
        # by kind (offers alike but for price and endpoint): the assessment, and what its candidates share but
        # their cost (one adjustments list and one params dict: nothing changes them)
        kinds: dict[int, tuple[_Verdict, dict[str, object] | None]] = {}
        templates = self._templates
        for alike, members in scope.groups:
            kind = self._kind[alike]
            assessed, shared = kinds.get(kind) or (None, None)
            if assessed is None:
                assessed = self._assess(alike, offers[alike], request, usage, target, input_size, max_cost)
                kinds[kind] = (assessed, None)
            price, reasons = self._price(assessed, offers[alike], request, max_cost)
            refusals[alike] = reasons
            if reasons:
                continue
            if shared is None:
                sized = assessed.size
                assert sized is not None
                shared = {
                    "width": sized.width,
                    "height": sized.height,
                    "num_images": request.num_images,
                    "latency_s": round(assessed.latency, 2),
                    "adjustments": list(assessed.adjustments),
                    "params": WIRE_BUILDERS[offers[alike].wire](self._call(request, assessed, offers[alike], target)),
                }
                kinds[kind] = (assessed, shared)
            cost, latency = float(price), round(assessed.latency, 2)
            first, second = (cost, latency) if by_cost else (latency, cost)
            availability = self._availability_of(offers[alike])  # offers of one kind may differ in endpoint
            out = ranked if availability.ok else unranked
            for i in members:
                fields = templates[i].copy()  # the fields in Candidate's order: updates keep it
                fields.update(shared)
                fields["available"] = availability.ok
                fields["unavailable_reason"] = None if availability.ok else availability.reason
                fields["cost_usd"] = cost
                out.append((first, second, i, _trusted(Candidate, fields, CANDIDATE_FIELDS)))
        ranked.sort()
        unranked.sort()
        candidates = [entry[3] for entry in ranked]
        unavailable = [entry[3] for entry in unranked]
        draft = _Draft(self, request, usage, target, input_size, max_cost, scope, candidates, unavailable, refusals)
        plan = _trusted(
            Plan,
            {
                "usage": usage,
                "target_width": target.width,
                "target_height": target.height,
                "candidates": candidates,
                "unavailable": unavailable,
            },
            set(PLAN_FIELDS),
        )
        object.__setattr__(plan, "__pydantic_private__", {"_draft": draft})
        return plan

    def _availability_of(self, offer: Offer) -> Availability:
        """Whether `offer` can run here: its own entry ("local:<repo>": that offer's weights) when there is one,
        else its provider's."""
        return self.availability.get(f"{offer.provider}:{offer.endpoint}") or self.availability.get(
            offer.provider, NOT_REGISTERED
        )

    def needs_input_size(self, request: ImageRequest) -> bool:
        """Whether an offer that may serve `request` outputs at its input image's size, so that planning it
        needs that size (model, mode and provider pins decide "may"; the rest is left to plan)."""
        if request.init_image is None:
            return False
        if request.mode == "upscale" or not sized_by_caller(request):
            return True  # an edit without a size of its own comes out at its input's
        return any(
            offer.size.output == "input"
            and self._asks_for(request.model, offer.model)
            and request.mode in offer.modes
            and (request.provider is None or offer.provider == request.provider)
            and (request.providers is None or offer.provider in request.providers)
            and offer.provider not in request.exclude_providers
            for offer in self.catalog.offers
        )

    def _asks_for(self, requested: str, model: str) -> bool:
        """Whether a request for `requested` (a model id or auto) is one for `model`'s offers."""
        return requested == model or (requested == AUTO and self._in_auto[model])

    def _scope(self, request: ImageRequest, usage: Usage) -> _Scope:
        """The offers `request` lists and those it can match (by the index), kept per kind of request."""
        providers = tuple(
            name
            for name in self._providers
            if (request.provider is None or name == request.provider)
            and (request.providers is None or name in request.providers)
            and name not in request.exclude_providers
        )
        key = (request.model, request.mode, providers, USAGES.index(usage))
        scope = self._scopes.get(key)
        if scope is None:
            if len(self._scopes) >= SCOPE_CACHE_SIZE:
                self._scopes.clear()
            model, mode, _, use = key
            matching = sorted(
                i
                for (offer_model, offer_mode, provider, allows), members in self._classes.items()
                if self._asks_for(model, offer_model) and offer_mode == mode and provider in providers and allows[use]
                for i in members
            )
            groups: dict[int, list[int]] = {}
            for i in matching:
                groups.setdefault(self._alike[i], []).append(i)
            # upscalers and generators are listed apart: an upscale lists upscale offers only, and a generation none
            listed = tuple(
                i
                for i, offer in enumerate(self.catalog.offers)
                if self._asks_for(model, offer.model) and (offer.upscale is not None) == (mode == "upscale")
            )
            scope = self._scopes[key] = _Scope(listed, tuple((a, tuple(m)) for a, m in groups.items()))
        return scope

    def _judge(
        self,
        index: int,
        offer: Offer,
        request: ImageRequest,
        usage: Usage,
        target: Target,
        input_size: tuple[int, int] | None,
        max_cost: Decimal | None,
        scoped: bool = True,
    ) -> list[str]:
        """Every reason `offer` cannot serve `request` (none: it can); see _assess and _price."""
        assessed = self._assess(index, offer, request, usage, target, input_size, max_cost, scoped)
        return self._price(assessed, offer, request, max_cost)[1]

    def _assess(
        self,
        index: int,
        offer: Offer,
        request: ImageRequest,
        usage: Usage,
        target: Target,
        input_size: tuple[int, int] | None,
        max_cost: Decimal | None,
        scoped: bool = True,
    ) -> _Verdict:
        """Every reason but its cost that `offer` cannot serve `request`, with the size, values and latency it
        would send and take: the same for every offer of its kind (self._kind), whatever its price. Size and
        the rest are left out for a refused offer when no cap could add a reason (its cost is not needed).
        `scoped`: the offer is known to match the request's provider pins, license and mode (see _scope), whose
        checks are then skipped."""
        reasons: list[str] = [] if scoped else self._scope_reasons(offer, request, usage)
        if request.negative_prompt is not None and not offer.negative_prompt:
            reasons.append("guidance-distilled endpoint ignores negative_prompt (rephrase it positively)")
        if len(request.style_references) > offer.max_style_references:
            reasons.append(
                f"takes at most {offer.max_style_references} style_references, got {len(request.style_references)}"
            )
        if request.loras:
            reasons.extend(_lora_reasons(offer, request))
        if offer.upscale is not None and offer.upscale.method != request.method:
            reasons.append(f"{offer.upscale.method} upscaler; request is {request.method}")
        if request.num_images > offer.max_images:
            what = "one image per job" if offer.max_images == 1 else f"at most {offer.max_images} images per call"
            reasons.append(f"{what}; num_images={request.num_images}")
        if offer.max_prompt_chars is not None and len(request.prompt) > offer.max_prompt_chars:
            reasons.append(f"prompt is {len(request.prompt)} characters; at most {offer.max_prompt_chars}")
        sized = self._size(index, offer, request, target, input_size)
        if sized.rejection:
            reasons.append(sized.rejection)
        if reasons and max_cost is None and self.settings.budget_per_call_usd is None:
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
        return _Verdict(reasons, sized, steps, guidance, strength, latency, tuple(adjustments))

    def _price(
        self, assessed: _Verdict, offer: Offer, request: ImageRequest, max_cost: Decimal | None
    ) -> tuple[Decimal, list[str]]:
        """`offer`'s cost (0 when not needed) and every reason it is refused: `assessed`'s (see _assess), and
        those a cap on its cost adds."""
        if offer.price.usd is None:
            unit = PRICE_UNIT_WORDS[offer.price.unit]
            # alike offers share their judgement: the offer id is put in as each rejection is built (_Draft)
            unpriced = f"price not published by {offer.provider}: {SET_PRICE} (USD {unit}) to use it"
            return Decimal(0), [*assessed.reasons, unpriced]
        sized = assessed.size
        if sized is None:
            return Decimal(0), assessed.reasons  # refused, and no cap could add a reason
        cost = estimate_cost(
            offer.price,
            width=sized.width,
            height=sized.height,
            num_images=request.num_images,
            gpu_seconds=assessed.latency,
            style_references=bool(request.style_references),
        )
        reasons = assessed.reasons
        cap = self.settings.budget_per_call_usd
        if (max_cost is not None and cost > max_cost) or (cap is not None and cost > cap):
            reasons = list(reasons)
            if max_cost is not None and cost > max_cost:
                reasons.append(f"costs ${cost} > max_cost_usd ${request.max_cost_usd:g}")
            if cap is not None and cost > cap:
                reasons.append(f"costs ${cost} > per-call budget ${cap} (settings)")
        return cost, reasons

    def _scope_reasons(self, offer: Offer, request: ImageRequest, usage: Usage) -> list[str]:
        """The reasons the index decides: provider pins, license against usage, mode."""
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
        return reasons

    @staticmethod
    def _call(request: ImageRequest, verdict: _Verdict, offer: Offer, target: Target) -> ResolvedCall:
        """What a candidate of `offer` assessed as `verdict` sends."""
        sized = verdict.size
        assert sized is not None
        return ResolvedCall(
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
            mode=request.mode,
            mask_image=request.mask_image,
            loras=request.loras,
            upscale=_upscale_wire(offer, request, target),
        )

    def _fit(self, index: int, offer: Offer, target: Target) -> _Fit:
        """sizing.fit for `offer`'s size rule and `target`, kept for the next plans."""
        key = (self._rule[index], target.width, target.height, target.ratio_text, target.preset, target.shrinkable)
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
        output follows the input image, that image's size through the same rules; for upscale offers, the
        upscaled size (sizing.fit_upscale)."""
        if offer.upscale is not None:
            upscaled = fit_upscale(offer.upscale, offer.size, target, *self._accepted_pixels)
            return _Fit(upscaled.width, upscaled.height, None, None, (), upscaled.rejection)
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


def accepted_pixels(settings: Settings) -> tuple[int, str]:
    """The most pixels a result may have here, and what sets it: max_image_pixels, or Pillow's decompression-bomb
    limit where that is lower (images above it are refused when read)."""
    from PIL import Image

    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is not None and pillow < settings.max_image_pixels:
        return pillow, "Pillow's decompression-bomb limit: no larger image is decoded here"
    return (
        settings.max_image_pixels,
        "max_image_pixels: the result would be refused; raise FLUXROUTE_MAX_IMAGE_PIXELS",
    )


def _upscale_wire(offer: Offer, request: ImageRequest, target: Target) -> UpscaleWire | None:
    """An upscale offer's rule with this job's values: the factor, and a generative request's creativity (0-1)
    put on the endpoint's own scale (its default when none is given)."""
    rule = offer.upscale
    if rule is None:
        return None
    creativity = None
    if rule.creativity is not None:
        scale = rule.creativity
        creativity = (
            scale.default if request.creativity is None else scale.min + request.creativity * (scale.max - scale.min)
        )
        if rule.integer_creativity:
            creativity = round(creativity)
    return UpscaleWire(
        factor=target.factor or rule.factor.default,
        creativity=creativity,
        send=rule.send,
        factor_field=rule.factor_field,
        creativity_field=rule.creativity_field,
        prompt_field=rule.prompt_field,
        image_field=rule.image_field,
        fixed=tuple(rule.fixed.items()),
    )


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


class _Draft:
    """What a plan builds when first read (types.PlanDraft): its rejections, with the reasons of offers the
    index left unjudged worked out then, its explanation and its request as JSON. Rejections are built in
    order, as far as asked, and kept: the first ones a tool lists are the plan's own when it is built in full."""

    __slots__ = (
        "_built",
        "_candidates",
        "_head",
        "_input_size",
        "_lock",
        "_max_cost",
        "_next",
        "_planner",
        "_refusals",
        "_request",
        "_scope",
        "_target",
        "_unavailable",
        "_usage",
        "rejected",
    )

    def __init__(
        self,
        planner: Planner,
        request: ImageRequest,
        usage: Usage,
        target: Target,
        input_size: tuple[int, int] | None,
        max_cost: Decimal | None,
        scope: _Scope,
        candidates: list[Candidate],
        unavailable: list[Candidate],
        refusals: dict[int, list[str]],
    ) -> None:
        self._planner = planner
        self._request = request
        self._usage = usage
        self._target = target
        self._input_size = input_size
        self._max_cost = max_cost
        self._scope = scope
        self._candidates = candidates
        self._unavailable = unavailable
        self._refusals = refusals  # by alike id, for the offers judged while planning
        self._head: str | None = None
        self._built: list[Rejection] = []
        self._next = 0  # where in scope.offers building rejections goes on
        self._lock = threading.Lock()
        self.rejected = len(scope.offers) - len(candidates) - len(unavailable)

    def fields(self) -> dict[str, object]:
        rejections = self.rejections(self.rejected)
        return {
            "request": self._request.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
            "rejections": rejections,
            "explanation": self.head() + "".join(rejection_line(r) for r in rejections),
        }

    def head(self) -> str:
        if self._head is None:
            self._head = _explain(
                self._request, self._usage, self._target, self._candidates, self._unavailable, self._planner._duties
            )
        return self._head

    def rejections(self, limit: int) -> list[Rejection]:
        with self._lock:
            built, offers = self._built, self._scope.offers
            if len(built) < limit and self._next < len(offers):
                planner = self._planner
                catalog, alike, refusals = planner.catalog.offers, planner._alike, self._refusals
                position = self._next
                while position < len(offers) and len(built) < limit:
                    i = offers[position]
                    position += 1
                    reasons = refusals.get(alike[i])
                    if reasons is None:  # left out by the index: judged now, with every check
                        reasons = refusals[alike[i]] = planner._judge(
                            alike[i],
                            catalog[alike[i]],
                            self._request,
                            self._usage,
                            self._target,
                            self._input_size,
                            self._max_cost,
                            scoped=False,
                        )
                    if reasons:
                        offer = catalog[i]
                        fields: dict[str, object] = {
                            "offer_id": offer.id,
                            "label": offer.label,
                            "provider": offer.provider,
                            "model": offer.model,
                            "reasons": [r.replace(SET_PRICE, f"set [prices] {offer.id}") for r in reasons],
                        }
                        built.append(_trusted(Rejection, fields, REJECTION_FIELDS))
                self._next = position
            return built[:limit]


def _explain(
    request: ImageRequest,
    usage: Usage,
    target: Target,
    candidates: list[Candidate],
    unavailable: list[Candidate],
    duties: Mapping[str, str],
) -> str:
    """The explanation up to its rejection lines (types.rejection_line, one per rejection, follow it); `duties`:
    the license duty of an offer's outputs, by offer id, stated for the chosen offer."""
    lines = [f"size: {target.derivation}; usage={usage}; prefer={request.prefer}"]
    if candidates:
        best = candidates[0]
        why = "cheapest" if request.prefer == "cost" else "fastest"
        lines.append(
            f"chose {best.label} ({best.model}) at ${best.cost_usd:g} for {best.width}x{best.height}: "
            f"{why} of {len(candidates)} usable offer(s)"
        )
        lines.extend(f"  adjusted {adj}" for adj in best.adjustments)
        if best.offer_id in duties:
            lines.append(f"  license duty: {duties[best.offer_id]}")
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
    return "\n".join(lines)


def _resized(candidate: Candidate) -> str:
    """' for WxH (why)' when the offer renders another size than asked (snapped, or following the input image)."""
    size = next((a for a in candidate.adjustments if a.field == "size"), None)
    return "" if size is None else f" for {candidate.width}x{candidate.height} ({size.reason})"


def _lora_reasons(offer: Offer, request: ImageRequest) -> list[str]:
    """Why `offer` cannot apply the request's LoRAs (none: it can)."""
    if offer.lora is None:
        return ["takes no LoRA"]
    reasons = []
    if len(request.loras) > offer.max_loras:
        reasons.append(f"takes at most {offer.max_loras} LoRAs, got {len(request.loras)}")
    if offer.lora == "krea-style" and not all(lora.krea_style for lora in request.loras):
        reasons.append("takes Krea styles (krea:<id>) only, not LoRA weights by URL or repo")
    if offer.lora in ("weights", "offline") and any(lora.krea_style for lora in request.loras):
        reasons.append("takes LoRA weights by URL or repo, not Krea styles")
    if offer.lora == "offline" and any(lora.ref.startswith("https://") for lora in request.loras):
        reasons.append("loads LoRAs found on this machine only (local_loras, the Hugging Face cache), not by URL")
    return reasons
