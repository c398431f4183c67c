"""The planner's shortcuts (offers indexed by model, mode, provider and license class; offers alike judged once;
fits kept across plans; rejections, explanation and request built when first read) change no plan: every plan
equals, field for field and in JSON, the plan of the straightforward planner kept in reference_planner.py, on
thousands of random requests, a grown catalog with varied offers, several settings and availabilities, with and
without an input image size, whichever part of the plan is read first."""

from __future__ import annotations

import copy
import pickle
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from fluxroute.catalog import Catalog, _builtin_data, load_catalog
from fluxroute.providers.base import Availability
from fluxroute.router.planner import FIT_CACHE_SIZE, Planner
from fluxroute.settings import Settings
from fluxroute.types import GenerationResult, ImageRequest, Plan, rejection_line

from .reference_planner import Planner as ReferencePlanner
from .test_plan_properties import PROPERTY_SETTINGS, requests

HOME = Path("/nonexistent-fluxroute-home")
ALL = {name: Availability(True) for name in ("krea", "fal", "local")}
AVAILABILITIES = [ALL, {"krea": Availability(True), "fal": Availability(False, "no FAL_KEY")}, {}]
SETTINGS = [
    {},
    {"local_commercial_license": True},
    {"budget_per_call_usd": "0.02"},
    {"usage": "non-commercial"},
    {"revenue_under_1m": True},  # license classes: Krea 2 local weights allowed commercially
    {"organization_revenue_usd_ttm": "300000", "remote_reachable": True},  # ... but refused without a checker
]
INPUT_SIZES = [None, None, (2048, 1024), (800, 600), (6000, 5000), (1000, 1000)]


def grown_offers(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Copies of the built-in offers under new ids: half identical but for id and label, half changed in price,
    limits or size rules (so both shared and own judgements are compared)."""
    builtin = _builtin_data()["offers"]
    out = []
    for i in range(count):
        offer = copy.deepcopy(builtin[i % len(builtin)])
        offer["id"] = f"{offer['id']}-v{i}"
        offer["label"] = f"{offer['label']} #{i}"
        if i % 2:
            if "usd" in offer["price"]:  # an unpublished price stays unpublished
                offer["price"]["usd"] = str(Decimal(offer["price"]["usd"]) * Decimal(rng.choice(["0.5", "1.5", "3"])))
            offer["max_images"] = rng.randint(1, 4)
            if rng.random() < 0.4:
                offer["max_prompt_chars"] = rng.choice([20, 60, 500])
            if rng.random() < 0.3:
                offer["negative_prompt"] = not offer.get("negative_prompt", False)
            size = offer["size"]
            if size.get("custom") and rng.random() < 0.5:
                size["multiple"] = rng.choice([8, 16, 32, 64])
                size["max_side"] = rng.choice([1536, 2048, 4096])
            if size.get("custom") and rng.random() < 0.3:
                size["max_megapixels"] = rng.choice([1.0, 2.0, 8.0])
        out.append(offer)
    return out


def random_request(rng: random.Random) -> ImageRequest:
    fields: dict[str, Any] = {"prompt": rng.choice(["a fox", "a lighthouse at dusk, " * rng.randint(1, 8)])}
    size = rng.random()
    if size < 0.25:
        fields["aspect_ratio"] = rng.choice(["1:1", "16:9", "9:16", "4:3", "2.35:1", "4:5", "21:9"])
        if rng.random() < 0.5:
            fields["megapixels"] = rng.choice([0.25, 0.5, 1.0, 2.0, 4.5])
    elif size < 0.55:
        fields["width"], fields["height"] = rng.choice(
            [(1024, 1024), (1000, 750), (1920, 1080), (3000, 2000), (64, 64), (4096, 4096), (777, 1333)]
        )
    elif size < 0.7:
        fields["image_size"] = rng.choice(["square_hd", "square", "landscape_16_9", "portrait_4_3"])
    for name, chance, values in (
        ("model", 0.4, ["auto", "flux-krea-dev", "flux-dev", "krea-2", "flux-schnell"]),
        ("usage", 0.3, ["commercial", "non-commercial"]),
        ("max_cost_usd", 0.3, [0, 0.01, 0.03, 0.05, 0.1]),
        ("provider", 0.15, ["krea", "fal", "local"]),
        ("providers", 0.1, [["fal"], ["krea", "local"], ["fal", "krea", "local"]]),
        ("exclude_providers", 0.1, [["local"], ["fal", "krea"]]),
        ("num_images", 0.2, [1, 2, 3, 4]),
        ("steps", 0.2, [1, 10, 28, 50, 100]),
        ("guidance", 0.2, [0.0, 3.5, 7.0, 24.0]),
        ("seed", 0.2, [0, 42, 2**32 - 1]),
        ("prefer", 0.3, ["cost", "speed"]),
        ("negative_prompt", 0.1, ["blurry"]),
        ("output_format", 0.1, ["jpeg"]),
        ("style_references", 0.1, [[{"url": "https://example.com/s.png"}], [{"url": "https://example.com/s.png"}] * 2]),
    ):
        if rng.random() < chance:
            fields[name] = rng.choice(values)
    if rng.random() < 0.25:
        fields["init_image"] = "https://example.com/start.png"
        if rng.random() < 0.5:
            fields["strength"] = rng.choice([0.01, 0.5, 1.0])
    return ImageRequest.parse(fields)


def assert_same(new: Plan, old: Plan) -> None:
    assert new.model_dump_json() == old.model_dump_json()
    assert new.model_dump() == old.model_dump()
    assert new.model_fields_set == old.model_fields_set
    for group in ("candidates", "unavailable", "rejections"):
        assert [c.model_fields_set for c in getattr(new, group)] == [c.model_fields_set for c in getattr(old, group)]


def planners(catalog: Catalog, settings: Settings, availability: dict[str, Availability]) -> tuple[Planner, Any]:
    return Planner(catalog, settings, availability), ReferencePlanner(catalog, settings, availability)


@pytest.mark.parametrize("case", range(len(SETTINGS) * len(AVAILABILITIES)))
def test_plans_equal_the_reference_planner_on_random_requests(case: int) -> None:
    rng = random.Random(case)
    settings = Settings(home=HOME, offers=grown_offers(rng, 120), **SETTINGS[case % len(SETTINGS)])
    catalog = load_catalog(settings)
    new, old = planners(catalog, settings, AVAILABILITIES[case // len(SETTINGS)])
    for _ in range(250):
        request = random_request(rng)
        size = rng.choice(INPUT_SIZES)
        expected = old.plan(request, size)
        assert_same(new.plan(request, size), expected)
        assert_same(new.plan(request, size), expected)  # again, from the kept fits


def repriced_offers(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Copies of the built-in offers that differ from them only in id, label, endpoint and price (the planner
    assesses such offers once, and prices each)."""
    builtin = _builtin_data()["offers"]
    out = []
    for i in range(count):
        offer = copy.deepcopy(builtin[i % len(builtin)])
        offer["id"], offer["label"] = f"{offer['id']}-p{i}", f"{offer['label']} p{i}"
        offer["endpoint"] = f"{offer['endpoint']}-p{i % 3}"
        factor = Decimal(rng.choice(["0.1", "0.5", "1", "2", "7"]))
        if "usd" in offer["price"]:
            offer["price"]["usd"] = str(Decimal(offer["price"]["usd"]) * factor)
        if offer["price"].get("with_style_references_usd") is not None:
            offer["price"]["with_style_references_usd"] = str(Decimal(offer["price"]["usd"]) * 2)
        out.append(offer)
    return out


@pytest.mark.parametrize("case", range(len(SETTINGS)))
def test_plans_equal_the_reference_planner_when_offers_differ_only_in_price(case: int) -> None:
    rng = random.Random(100 + case)
    settings = Settings(home=HOME, offers=repriced_offers(rng, 80), **SETTINGS[case])
    new, old = planners(load_catalog(settings), settings, ALL)
    assert len(set(new._kind)) < len(set(new._alike))  # offers of one kind, with prices of their own
    for _ in range(200):
        request = random_request(rng)
        size = rng.choice(INPUT_SIZES)
        assert_same(new.plan(request, size), old.plan(request, size))


GROWN = Settings(home=HOME, offers=grown_offers(random.Random(1), 40))
GROWN_PLANNERS = planners(load_catalog(GROWN), GROWN, ALL)


@PROPERTY_SETTINGS
@given(requests)
def test_plans_equal_the_reference_planner_on_the_property_requests(request: ImageRequest) -> None:
    new, old = GROWN_PLANNERS
    for size in (None, (1600, 900)):
        assert_same(new.plan(request, size), old.plan(request, size))


def test_the_fit_cache_stays_bounded_and_plans_stay_equal() -> None:
    settings = Settings(home=HOME)
    new, old = planners(load_catalog(settings), settings, ALL)
    rng = random.Random(3)
    for _ in range(FIT_CACHE_SIZE // 4 + 50):  # more distinct sizes than the cache holds
        request = ImageRequest(prompt="a fox", width=rng.randrange(64, 4000), height=rng.randrange(64, 4000))
        assert_same(new.plan(request), old.plan(request))
    assert len(new._fits) <= FIT_CACHE_SIZE


def _read_first(plan: Plan, how: str) -> None:
    """Touch `plan` in one of the ways that build its deferred fields (or some of them)."""
    if how == "rejections":
        assert isinstance(plan.rejections, list)
    elif how == "explanation":
        assert isinstance(plan.explanation, str)
    elif how == "request":
        assert isinstance(plan.request, dict)
    elif how == "explain":
        plan.explain(3)
    elif how == "listed":
        plan.listed_rejections(2)
    elif how == "priced_out":
        assert isinstance(plan.priced_out, bool)
    elif how == "repr":
        assert "rejections=" in repr(plan)
    elif how == "iter":
        assert [name for name, _ in plan] == list(Plan.model_fields)


READS = ["dump", "rejections", "explanation", "request", "explain", "listed", "priced_out", "repr", "iter"]


@pytest.mark.parametrize("how", READS)
def test_a_plan_reads_the_same_whichever_part_is_read_first(how: str) -> None:
    """Rejections, explanation and request are built when first needed: reading any part first, or only a
    shortened explanation, changes nothing in the plan."""
    rng = random.Random(READS.index(how))
    new, old = GROWN_PLANNERS
    for _ in range(60):
        request = random_request(rng)
        size = rng.choice(INPUT_SIZES)
        plan = new.plan(request, size)
        _read_first(plan, how)
        assert_same(plan, old.plan(request, size))


def test_copies_pickles_and_comparisons_see_the_whole_plan() -> None:
    new, old = GROWN_PLANNERS
    rng = random.Random(11)
    for _ in range(30):
        request = random_request(rng)
        expected = old.plan(request)
        assert new.plan(request) == expected
        assert expected == new.plan(request)
        for made in (
            copy.copy(new.plan(request)),
            copy.deepcopy(new.plan(request)),
            new.plan(request).model_copy(),
            new.plan(request).model_copy(deep=True),
            pickle.loads(pickle.dumps(new.plan(request))),
            GenerationResult.model_validate_json(result_with(new.plan(request)).model_dump_json()).plan,
        ):
            assert_same(made, expected)
        assert result_with(new.plan(request)).model_dump() == result_with(expected).model_dump()


def result_with(plan: Plan) -> GenerationResult:
    return GenerationResult(job_id="j", images=[], provider="krea", model="m", offer_id="o", cost_usd=0, plan=plan)


@pytest.mark.parametrize("limit", [0, 1, 3, 20])
def test_a_shortened_explanation_lists_the_first_rejections_and_counts_the_rest(limit: int) -> None:
    """Plan.explain(n) is the explanation with its rejection lines cut to n and a count of the others: the same
    text from a plan not yet built, a plan built in full, and the plan read back from JSON."""
    new, _ = GROWN_PLANNERS
    rng = random.Random(limit)
    for _ in range(80):
        request = random_request(rng)
        fresh = new.plan(request)
        short = fresh.explain(limit)
        listed = [r.model_dump() for r in fresh.listed_rejections(limit)]
        built = new.plan(request)
        full = built.explanation
        assert fresh.rejected == built.rejected == len(built.rejections)
        assert listed == [r.model_dump() for r in built.rejections[:limit]]
        assert built.explain(limit) == short
        assert Plan.model_validate_json(built.model_dump_json()).explain(limit) == short
        assert fresh.explain(None) == full
        lines = [rejection_line(r) for r in built.rejections]
        head = full[: len(full) - len("".join(lines))]
        if len(lines) <= limit:
            assert short == full
        else:
            more = len(lines) - limit
            noun = "offer" if more == 1 else "offers"
            assert short == head + "".join(lines[:limit]) + f"\n… and {more} more {noun} rejected"


def test_an_explanation_not_laid_out_by_the_planner_is_shown_whole() -> None:
    new, _ = GROWN_PLANNERS
    plan = Plan.model_validate_json(new.plan(ImageRequest(prompt="a fox", provider="fal")).model_dump_json())
    edited = plan.model_copy(update={"explanation": "chosen by hand"})
    assert plan.rejected > 1
    assert edited.explain(1) == "chosen by hand"
