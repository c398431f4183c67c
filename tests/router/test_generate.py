"""Router.generate against the fakes: fallback without double charge, budgets, idempotency, cancel, outputs."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import AllProvidersFailed, BudgetExceeded, JobFailed, NoRouteError, PaymentAtRisk
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


async def generate(settings: Settings, **fields: object):  # type: ignore[no-untyped-def]
    router = Router(settings)
    try:
        return router, await router.generate(ImageRequest.parse({"prompt": "a lighthouse at dusk", **fields}))
    finally:
        await router.aclose()


async def test_cheapest_offer_generates_and_is_billed_once(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    router, result = await generate(hosted_settings, model="flux-dev", seed=42)
    assert result.provider == "krea" and result.cost_usd == 0.007
    assert krea_fake.billed == Decimal("0.007")
    assert router.store.total_charged() == Decimal("0.007")
    image = result.images[0]
    assert image.path is not None and Path(image.path).is_file()
    assert read_parameters(Path(image.path))["seed"] == 42
    assert sorted(p.name for p in Path(image.path).parent.iterdir()) == [Path(image.path).name]  # no preview file
    stored = router.store.get_job(result.job_id)
    assert stored.status == "succeeded" and stored.result is not None


async def test_provider_failure_falls_back_to_the_next_candidate(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    krea_fake.faults.http_error(503, {"error": "down"}, route="create")
    router, result = await generate(hosted_settings, model="flux-dev")
    assert result.provider == "fal"
    attempts = router.store.attempts_for(result.job_id)
    assert [(a.provider, a.status) for a in attempts] == [("krea", "failed"), ("fal", "succeeded")]
    assert router.store.total_charged() == krea_fake.billed + fal_fake.billed == Decimal("0.025")


async def test_failed_job_falls_back_and_only_the_success_is_charged(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    krea_fake.faults.fail_job("worker crashed")
    router, result = await generate(hosted_settings, model="flux-dev")
    assert result.provider == "fal"
    assert router.store.total_charged() == fal_fake.billed and krea_fake.billed == 0


async def test_all_candidates_failing_raise_one_error_with_each_failure(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    krea_fake.faults.fail_job("krea broke")
    # a server error: fal never bills those, so the failure is proven unbilled like Krea's
    fal_fake.faults.fail_job("fal broke", status_code=500, error_type="runner_server_error")
    with pytest.raises(AllProvidersFailed) as info:
        await generate(hosted_settings, model="flux-dev")
    assert [type(f) for f in info.value.failures] == [JobFailed, JobFailed]
    assert "krea broke" in str(info.value) and "fal broke" in str(info.value)


async def test_lost_krea_answer_is_found_in_the_job_listing_and_paid_once(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    dropped = krea_fake.faults.drop_after_accept()
    router, result = await generate(hosted_settings, model="flux-dev")
    # two listings of every type, then one of the job's own type (`types=flux`) to pick it out
    assert dropped.hits == 1 and krea_fake.request_counts["list_jobs"] == 3
    assert result.provider == "krea" and len(krea_fake.jobs) == 1 and len(fal_fake.jobs) == 0
    attempt = router.store.attempts_for(result.job_id)[0]
    assert attempt.provider_job_id == krea_fake.jobs[0].id and (attempt.detail or {})["adopted_from_listing"]
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.007")


async def test_a_lost_krea_answer_adopts_its_own_job_never_one_of_another_type(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    foreign = krea_fake.add_foreign_job("k1")  # made in Krea's web app inside the submission's window
    dropped = krea_fake.faults.drop_after_accept()
    router, result = await generate(hosted_settings, model="flux-dev")
    [ours] = [job for job in krea_fake.jobs if job.id != foreign.id]
    assert dropped.hits == 1 and result.provider == "krea" and fal_fake.jobs == []
    [attempt] = router.store.attempts_for(result.job_id)
    assert attempt.provider_job_id == ours.id != foreign.id and (attempt.detail or {})["adopted_from_listing"]
    assert router.store.total_charged() == ours.price == Decimal("0.007")


async def test_a_foreign_job_alone_in_the_window_is_never_adopted_and_nobody_else_is_paid(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    foreign = krea_fake.add_foreign_job("externalImage")
    refused = krea_fake.faults.http_error(503, {"error": "overloaded"}, route="create")
    router = Router(hosted_settings)
    try:
        with pytest.raises(PaymentAtRisk, match="may still be billed") as info:
            await router.generate(ImageRequest(prompt="a lighthouse at dusk", model="flux-dev"))
        # resume reconciles again: still not adopted, still at risk
        assert await router.resume_in_flight() == []
        assert [a.provider_job_id for a in router.store.attempts_for(info.value.job_id)] == [None]
    finally:
        await router.aclose()
    assert refused.hits == 1 and [job.id for job in krea_fake.jobs] == [foreign.id] and fal_fake.jobs == []
    assert all(a.provider_job_id != foreign.id for a in router.store.attempts_for(info.value.job_id))
    assert router.store.known_provider_jobs("krea", [foreign.id]) == set()
    assert router.store.spend_summary().at_risk_today == Decimal("0.007")


async def test_krea_5xx_to_the_submission_with_no_job_listed_falls_back_unbilled(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    refused = krea_fake.faults.http_error(503, {"error": "overloaded"}, route="create")
    router, result = await generate(hosted_settings, model="flux-dev")
    assert refused.hits == 1 and krea_fake.request_counts["list_jobs"] == 2  # two listings prove it
    assert result.provider == "fal" and krea_fake.jobs == []
    assert router.store.total_charged() == fal_fake.billed + krea_fake.billed == Decimal("0.025")


async def test_lost_fal_answer_stops_with_the_amount_at_risk_instead_of_paying_twice(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    dropped = fal_fake.faults.drop_after_accept()
    router = Router(hosted_settings)
    try:
        with pytest.raises(PaymentAtRisk, match="may still be billed") as info:
            await router.generate(ImageRequest(prompt="a lighthouse at dusk", model="flux-dev", provider="fal"))
    finally:
        await router.aclose()
    assert dropped.hits == 1 and len(fal_fake.jobs) == 1 and krea_fake.jobs == []
    [(attempt, amount)] = router.store.at_risk(info.value.job_id)
    assert attempt.status == "submitting" and amount == Decimal("0.025")
    assert router.store.spend_summary().at_risk_today == Decimal("0.025")
    assert router.store.get_job(info.value.job_id).status == "failed"


async def test_daily_budget_refuses_before_any_provider_is_called(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    settings = hosted_settings.model_copy(update={"budget_daily_usd": Decimal("0.01")})
    await generate(settings, model="flux-dev")  # $0.007
    with pytest.raises(BudgetExceeded):
        await generate(settings, model="flux-dev")  # another $0.007 would cross $0.01
    assert len(krea_fake.jobs) == 1 and len(fal_fake.jobs) == 0


async def test_same_idempotency_key_never_pays_twice(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    _, first = await generate(hosted_settings, model="flux-dev", idempotency_key="order-17")
    _, second = await generate(hosted_settings, model="flux-dev", idempotency_key="order-17")
    assert first.job_id == second.job_id and first.images == second.images
    assert len(krea_fake.jobs) == 1 and krea_fake.billed == Decimal("0.007")


async def test_caller_cancel_cancels_the_provider_job_unbilled(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.manual = True
    router = Router(hosted_settings)
    task = asyncio.create_task(router.generate(ImageRequest(prompt="a cat", model="flux-dev")))
    while not krea_fake.jobs:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await router.aclose()
    assert krea_fake.jobs[0].status == "cancelled" and krea_fake.billed == 0
    job = router.store.list_jobs()[0]
    assert job.status == "cancelled" and router.store.total_charged() == 0


async def test_no_route_creates_no_job(hosted_settings: Settings) -> None:
    router = Router(hosted_settings)
    with pytest.raises(NoRouteError, match=r"6\.0 MP exceeds 4 MP"):
        await router.generate(ImageRequest(prompt="a cat", width=3000, height=2000))
    assert router.store.list_jobs() == []


async def test_out_dir_holds_every_file(hosted_settings: Settings, tmp_path: Path) -> None:
    router = Router(hosted_settings)
    out = tmp_path / "renders"
    try:
        result = await router.generate(ImageRequest(prompt="../../escape attempt", model="flux-dev"), out_dir=out)
    finally:
        await router.aclose()
    for image in result.images:
        assert image.path is not None and Path(image.path).parent == out.resolve()


async def test_timed_out_job_is_cancelled_unbilled_and_the_next_candidate_runs(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    krea_fake.manual = True  # the Krea job never finishes on its own
    settings = hosted_settings.model_copy(update={"provider_timeout_s": 0.3})
    router, result = await generate(settings, model="flux-dev")
    assert result.provider == "fal"
    assert krea_fake.jobs[0].status == "cancelled" and krea_fake.billed == 0
    attempts = router.store.attempts_for(result.job_id)
    assert attempts[0].status == "failed" and "ProviderTimeout" in (attempts[0].error or "")
    assert router.store.total_charged() == fal_fake.billed
