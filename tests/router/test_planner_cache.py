"""The Router's plan cache is bounded by the bytes its plans hold (planner.plan_bytes), not by their number:
a flood of plans over a large catalog stays under the bound, and the estimate follows what plans really hold."""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path

import pytest

import fluxroute.router
from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.router.planner import plan_bytes
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest

from .test_planner_equivalence import grown_offers, random_request

HOME = Path("/nonexistent-fluxroute-home")
ALL = {name: Availability(True) for name in ("krea", "fal", "local")}


def grown_router(offers: int) -> Router:
    return Router(Settings(home=HOME, offers=grown_offers(random.Random(offers), offers)), availability=ALL)


def test_a_flood_of_big_plans_keeps_the_cache_under_its_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    bound = 2_000_000
    monkeypatch.setattr(fluxroute.router, "PLAN_CACHE_BYTES", bound)
    router = grown_router(400)
    rng = random.Random(5)
    sizes = []
    for n in range(300):
        request = ImageRequest(prompt=f"a fox, take {n}", num_images=rng.randint(1, 4))
        plan = router.plan(request)
        sizes.append(plan_bytes(plan, request))
        plan.model_dump()  # built in full, as a caller may
        kept = router._plans
        assert router._plans_bytes == sum(size for _, size in kept.values()) <= bound
        assert router.plan(request) is plan  # the newest plan is kept
    assert min(sizes) > 100_000  # each plan lists 400 offers
    assert len(router._plans) < 20


def test_a_huge_request_is_counted_by_its_text_and_a_plan_larger_than_the_cache_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fluxroute.router, "PLAN_CACHE_BYTES", 1_000_000)
    router = grown_router(8)
    small = ImageRequest(prompt="a fox")
    router.plan(small)
    huge = ImageRequest(prompt="a fox", init_image="data:image/png;base64," + "A" * 2_000_000)
    plan = router.plan(huge)
    assert plan_bytes(plan, huge) > 2_000_000
    assert router.plan(huge) is not plan  # planned again: never kept
    assert list(router._plans) == [(small, None)]


def test_small_plans_are_kept_by_the_thousand() -> None:
    """The cache used to keep 256 plans; plans over the built-in catalog are small, and more of them fit."""
    router = Router(Settings(home=HOME), availability=ALL)
    for n in range(1000):
        router.plan(ImageRequest(prompt=f"a fox, take {n}"))
    # about a thousand: each offer the catalog gains adds a rejection to every plan of model auto
    assert len(router._plans) >= 900
    assert router._plans_bytes <= fluxroute.router.PLAN_CACHE_BYTES


@pytest.mark.parametrize("offers", [8, 200])
def test_the_size_estimate_follows_what_built_plans_hold(offers: int) -> None:
    """plan_bytes is within a factor of two of the memory plans built in full keep (tracemalloc)."""
    router = grown_router(offers)
    rng = random.Random(offers)
    requests = [random_request(rng) for _ in range(60)]
    for request in requests[:10]:  # size rules' fits and scopes, kept across plans, made first
        router.planner.plan(request).model_dump()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plans = [router.planner.plan(request) for request in requests]
        for plan in plans:
            plan.model_dump()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = sum(plan_bytes(plan, request) for plan, request in zip(plans, requests, strict=True))
    assert held / 2 <= estimate <= held * 2
