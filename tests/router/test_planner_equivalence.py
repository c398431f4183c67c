"""The planner's shortcuts (offers alike judged once, fits kept across plans) change no plan: every plan equals,
field for field and in JSON, the plan of the straightforward planner kept in reference_planner.py, on thousands of
random requests, a grown catalog with varied offers, several settings and availabilities, with and without an
input image size."""

from __future__ import annotations

import copy
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
from fluxroute.types import ImageRequest, Plan

from .reference_planner import Planner as ReferencePlanner
from .test_plan_properties import PROPERTY_SETTINGS, requests

HOME = Path("/nonexistent-fluxroute-home")
ALL = {name: Availability(True) for name in ("krea", "fal", "local")}
AVAILABILITIES = [ALL, {"krea": Availability(True), "fal": Availability(False, "no FAL_KEY")}, {}]
SETTINGS = [{}, {"local_commercial_license": True}, {"budget_per_call_usd": "0.02"}, {"usage": "non-commercial"}]
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
        ("model", 0.4, ["auto", "flux-krea-dev", "flux-dev", "krea-2"]),
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
