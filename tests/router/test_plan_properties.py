"""Properties of every plan: license, resolution, budget and pins hold; cost rules are exact; ranking is optimal."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxroute.catalog import Offer
from fluxroute.router import Router
from fluxroute.types import PROVIDER_NAMES, Candidate, ImageRequest

from .conftest import make_router

ROUTER = make_router(Path("/nonexistent-fluxroute-home"))
RATIOS = ["1:1", "4:3", "3:2", "16:9", "2.35:1", "4:5", "2:3", "9:16", "21:9", "5:4", "1.91:1"]
PRESETS = ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]

sizes = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"width": st.integers(64, 4000), "height": st.integers(64, 4000)}),
    st.fixed_dictionaries(
        {"aspect_ratio": st.sampled_from(RATIOS), "megapixels": st.floats(0.1, 6.0, allow_nan=False)}
    ),
    st.fixed_dictionaries({"image_size": st.sampled_from(PRESETS)}),
)
optional = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["auto", "flux-krea-dev", "flux-dev", "krea-2"]),
        "num_images": st.integers(1, 4),
        "steps": st.integers(1, 100),
        "guidance": st.floats(0, 24, allow_nan=False),
        "seed": st.integers(0, 2**32 - 1),
        "usage": st.sampled_from(["commercial", "non-commercial"]),
        "max_cost_usd": st.sampled_from([0, 0.005, 0.01, 0.03, 0.05, 0.1, 0.5]),
        "provider": st.sampled_from(PROVIDER_NAMES),
        "exclude_providers": st.lists(st.sampled_from(PROVIDER_NAMES), max_size=2, unique=True),
        "providers": st.lists(st.sampled_from(PROVIDER_NAMES), min_size=1, max_size=3, unique=True),
        "prefer": st.sampled_from(["cost", "speed"]),
        "negative_prompt": st.just("blurry"),
        "init_image": st.just("https://example.com/start.png"),
        "style_references": st.lists(st.fixed_dictionaries({"url": st.just("https://example.com/s.png")}), max_size=2),
    },
)
requests = st.builds(
    lambda size, rest: ImageRequest.parse({"prompt": "a red fox in fresh snow", **size, **rest}), sizes, optional
)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def independent_cost(offer: Offer, c: Candidate, request: ImageRequest) -> Decimal:
    price = offer.price
    if price.unit == "megapixel_ceil":
        return math.ceil(c.width * c.height / 1_000_000) * price.usd * c.num_images
    if price.unit == "image":
        if request.style_references and price.with_style_references_usd is not None:
            return price.with_style_references_usd * c.num_images
        return price.usd * c.num_images
    return Decimal(0)  # gpu_second at the default price of $0


@PROPERTY_SETTINGS
@given(requests)
def test_chosen_offer_never_breaks_license_resolution_budget_or_pins(request: ImageRequest) -> None:
    p = ROUTER.plan(request)
    for c in p.candidates:
        offer = ROUTER.catalog.offer(c.offer_id)
        license_ = ROUTER.catalog.licenses[offer.license]
        if p.usage == "commercial":  # nothing declared in ROUTER's settings: only licenses that always allow it
            assert license_.commercial == "always", c
        rule = offer.size
        if rule.aspect_sizes:
            assert (c.width, c.height) in rule.aspect_sizes.values()
        else:
            assert rule.min_side <= c.width <= rule.max_side and rule.min_side <= c.height <= rule.max_side
            assert c.width % rule.multiple == 0 and c.height % rule.multiple == 0
            if rule.max_megapixels is not None:
                assert c.width * c.height / 1e6 <= rule.max_megapixels
        if request.max_cost_usd is not None:
            assert c.cost_usd <= request.max_cost_usd
        if request.provider is not None:
            assert c.provider == request.provider
        if request.providers is not None:
            assert c.provider in request.providers
        assert c.provider not in request.exclude_providers
        assert c.num_images <= offer.max_images
        assert request.mode in offer.modes


@PROPERTY_SETTINGS
@given(requests)
def test_cost_rules_are_exact(request: ImageRequest) -> None:
    for c in ROUTER.plan(request).candidates:
        offer = ROUTER.catalog.offer(c.offer_id)
        assert Decimal(str(c.cost_usd)) == independent_cost(offer, c, request)


@PROPERTY_SETTINGS
@given(requests)
def test_with_prefer_cost_no_feasible_offer_is_cheaper(request: ImageRequest) -> None:
    p = ROUTER.plan(request.model_copy(update={"prefer": "cost"}))
    if p.chosen is None:
        return
    # every offer the request allows (auto: the models the catalog lets auto pick), pinned on its own, that fits
    # the same request costs at least as much
    in_auto = {info.id for info in ROUTER.catalog.models if info.auto}
    for offer in ROUTER.catalog.offers:
        asked = request.model == offer.model or (request.model == "auto" and offer.model in in_auto)
        if not asked or request.provider not in (None, offer.provider):
            continue
        alone = ROUTER.plan(request.model_copy(update={"model": offer.model, "provider": offer.provider}))
        for c in alone.candidates:
            assert c.cost_usd >= p.chosen.cost_usd


@PROPERTY_SETTINGS
@given(requests)
def test_relaxing_a_constraint_never_makes_the_best_plan_dearer(request: ImageRequest) -> None:
    strict = ROUTER.plan(request.model_copy(update={"prefer": "cost"}))
    relaxed = ROUTER.plan(request.model_copy(update={"prefer": "cost", "max_cost_usd": None, "exclude_providers": ()}))
    if strict.chosen is not None:
        assert relaxed.chosen is not None and relaxed.chosen.cost_usd <= strict.chosen.cost_usd


@PROPERTY_SETTINGS
@given(requests)
def test_planning_is_deterministic(request: ImageRequest) -> None:
    other = make_router(Path("/nonexistent-fluxroute-home"))
    assert ROUTER.plan(request).model_dump() == other.plan(request).model_dump()


@PROPERTY_SETTINGS
@given(requests)
def test_every_size_or_parameter_change_is_explicit(request: ImageRequest) -> None:
    p = ROUTER.plan(request)
    for c in [*p.candidates, *p.unavailable]:
        fields = {a.field for a in c.adjustments}
        target_given = request.width is not None or request.image_size is not None
        if target_given and (c.width, c.height) != (p.target_width, p.target_height):
            assert "size" in fields, c
        offer = ROUTER.catalog.offer(c.offer_id)
        if request.steps is not None and (
            offer.steps is None or not offer.steps.min <= request.steps <= offer.steps.max
        ):
            assert "steps" in fields, c


def test_router_instances_share_nothing(tmp_path: Path) -> None:
    a, b = make_router(tmp_path), make_router(tmp_path, usage="non-commercial")
    request = ImageRequest(prompt="x", model="flux-dev")
    assert isinstance(a, Router)
    assert a.plan(request).usage == "commercial" and b.plan(request).usage == "non-commercial"
