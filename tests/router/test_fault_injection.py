"""200 generations through Router.generate with ~20% injected faults across both fakes: every call ends in a
result or a typed error, no result is lost, and the spend ledger equals exactly what the fakes billed."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path

from fluxroute.errors import FluxrouteError
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

CALLS = 200
CONCURRENCY = 16


def arm_faults(rng: random.Random, krea: KreaFake, fal: FalFake) -> int:
    """About one fault per five calls, of every kind that can happen before or after acceptance."""
    armed = 0
    kinds = [
        lambda: krea.faults.http_error(503, {"error": "overloaded"}, route="create"),
        lambda: krea.faults.http_error(500, {"error": "internal"}, route="create"),
        lambda: krea.faults.http_error(429, {"error": "concurrent jobs"}, {"Retry-After": "0"}, route="create"),
        lambda: krea.faults.http_error(502, {"error": "bad gateway"}, route="get_job"),
        lambda: krea.faults.drop(route="get_job"),
        lambda: krea.faults.delay(0.3, route="get_job"),
        lambda: krea.faults.fail_job("sampler failed"),
        lambda: fal.faults.http_error(500, {"detail": "internal"}, route="submit"),
        lambda: fal.faults.http_error(503, "<html>nginx</html>", route="submit", ingress=True),
        lambda: fal.faults.http_error(429, {"detail": "rate limited"}, route="submit"),
        lambda: fal.faults.drop(route="status"),
        lambda: fal.faults.fail_job("CUDA out of memory"),
    ]
    for _ in range(CALLS // 5):
        rng.choice(kinds)()
        armed += 1
    return armed


async def test_two_hundred_generations_with_faults_lose_nothing_and_bill_exactly(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    rng = random.Random(20261121)
    krea_fake.image_scale = fal_fake.image_scale = 1 / 32
    armed = arm_faults(rng, krea_fake, fal_fake)
    router = Router(hosted_settings)
    models = ["flux-dev", "flux-dev", "flux-krea-dev", "krea-2"]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> GenerationResult | FluxrouteError:
        request = ImageRequest(prompt=f"test image {i}", model=rng.choice(models), seed=i)
        async with gate:
            try:
                return await router.generate(request)
            except FluxrouteError as exc:
                return exc

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(CALLS)))
    finally:
        await router.aclose()

    results = [o for o in outcomes if isinstance(o, GenerationResult)]
    errors = [o for o in outcomes if isinstance(o, FluxrouteError)]
    assert len(results) + len(errors) == CALLS
    assert armed == CALLS // 5
    assert len(results) >= CALLS * 0.8, [str(e) for e in errors][:5]
    for result in results:
        assert all(image.path and Path(image.path).is_file() for image in result.images)
    # every job the fakes completed (and billed) reached the caller and the ledger
    billed_jobs = {job.id for job in [*krea_fake.jobs, *fal_fake.jobs] if job.billed > 0}
    attempts = [a for job in router.store.list_jobs(limit=1000) for a in router.store.attempts_for(job.id)]
    assert billed_jobs == {a.provider_job_id for a in attempts if a.status == "succeeded"}
    assert router.store.total_charged() == krea_fake.billed + fal_fake.billed
    assert sum(Decimal(str(r.cost_usd)) for r in results) == krea_fake.billed + fal_fake.billed
    assert krea_fake.faults.pending() == [] and fal_fake.faults.pending() == [], "every armed fault fired"
    statuses = {job.status for job in router.store.list_jobs(limit=1000)}
    assert statuses <= {"succeeded", "failed"}
