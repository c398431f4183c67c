"""KreaProvider (httpx) against the Krea fake: the job lifecycle, every documented failure, cancel, progress."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from fluxroute.errors import (
    AuthError,
    Cancelled,
    InsufficientCredits,
    JobFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from fluxroute.providers.base import Progress
from fluxroute.providers.krea import KreaProvider, map_error
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import Candidate, ImageRequest
from tests.fakes.krea import KreaFake


def candidate_for(settings: Settings, **fields: object) -> Candidate:
    plan = Router(settings).plan(ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": "krea", **fields}))
    assert plan.chosen is not None, plan.explanation
    return plan.chosen


async def test_job_runs_through_its_statuses_and_images_download(hosted_settings: Settings) -> None:
    candidate = candidate_for(hosted_settings, model="flux-dev", width=1024, height=768)
    provider = KreaProvider(hosted_settings)
    events: list[Progress] = []

    async def record(event: Progress) -> None:
        events.append(event)

    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, record, timeout_s=10)
    finally:
        await provider.aclose()
    statuses = [e.status for e in events]
    assert statuses[-1] == "completed"
    order = ["backlogged", "queued", "scheduled", "processing", "sampling", "completed"]
    assert [s for s in order if s in statuses] == [s for s in statuses if s in order]
    assert len(result.images) == 1 and result.images[0].content_type == "image/png"
    assert result.provider_job_id == job_id


async def test_krea_2_uses_its_aspect_ratio_enum(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    candidate = candidate_for(hosted_settings, model="krea-2", aspect_ratio="2.35:1")
    provider = KreaProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate)
        await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert krea_fake.job(job_id).input["aspect_ratio"] == "2.35:1"
    assert krea_fake.billed == Decimal("0.03")


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, ProviderBadRequest, False),
        (401, AuthError, False),
        (402, InsufficientCredits, False),
        (403, AuthError, False),
        (404, ProviderBadRequest, False),
        (429, RateLimited, True),
        (500, ProviderUnavailable, True),
        (502, ProviderUnavailable, True),
        (503, ProviderUnavailable, True),
    ],
)
async def test_every_status_class_maps_to_the_error_tree(
    hosted_settings: Settings, krea_fake: KreaFake, status: int, kind: type[ProviderError], retryable: bool
) -> None:
    krea_fake.faults.http_error(status, {"error": f"injected {status}"}, route="create", times=3)
    provider = KreaProvider(hosted_settings)
    try:
        with pytest.raises(kind) as info:
            await provider.submit(candidate_for(hosted_settings, model="flux-dev"))
    finally:
        await provider.aclose()
    assert info.value.retryable is retryable
    assert f"injected {status}" in str(info.value)
    assert krea_fake.billed == 0


async def test_unknown_field_is_refused_by_the_strict_schema(hosted_settings: Settings) -> None:
    candidate = candidate_for(hosted_settings, model="flux-dev")
    bad = candidate.model_copy(update={"params": {**candidate.params, "num_images": 2}})
    provider = KreaProvider(hosted_settings)
    try:
        with pytest.raises(ProviderBadRequest, match="num_images"):
            await provider.submit(bad)
    finally:
        await provider.aclose()


async def test_wrong_token_is_an_auth_error_without_echoing_it(hosted_settings: Settings) -> None:
    settings = Settings.model_validate({**hosted_settings.model_dump(), "krea_api_token": "wrong-token-value"})
    provider = KreaProvider(settings)
    try:
        with pytest.raises(AuthError) as info:
            await provider.submit(candidate_for(hosted_settings, model="flux-dev"))
    finally:
        await provider.aclose()
    assert "wrong-token-value" not in str(info.value)


async def test_out_of_balance_is_insufficient_credits(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.balance = Decimal("0.001")
    provider = KreaProvider(hosted_settings)
    try:
        with pytest.raises(InsufficientCredits):
            await provider.submit(candidate_for(hosted_settings, model="flux-dev"))
    finally:
        await provider.aclose()


async def test_429_before_acceptance_is_retried_once_it_clears(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.faults.http_error(429, {"error": "concurrent"}, {"Retry-After": "0"}, route="create", times=1)
    provider = KreaProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate_for(hosted_settings, model="flux-dev"))
    finally:
        await provider.aclose()
    assert krea_fake.request_counts["create"] == 2
    assert len(krea_fake.jobs) == 1 and krea_fake.jobs[0].id == job_id


async def test_dropped_answer_after_acceptance_is_never_resubmitted(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.faults.drop_after_accept()
    provider = KreaProvider(hosted_settings)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await provider.submit(candidate_for(hosted_settings, model="flux-dev"))
    finally:
        await provider.aclose()
    assert info.value.billing == "at_risk"
    assert krea_fake.request_counts["create"] == 1 and len(krea_fake.jobs) == 1


async def test_failed_job_surfaces_result_error(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.faults.fail_job("sampler exploded")
    candidate = candidate_for(hosted_settings, model="flux-dev")
    provider = KreaProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate)
        with pytest.raises(JobFailed, match="sampler exploded"):
            await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert krea_fake.billed == 0


async def test_status_polls_survive_transient_errors(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.faults.http_error(503, {"error": "busy"}, route="get_job", times=1)
    krea_fake.faults.drop(route="get_job", times=1)
    candidate = candidate_for(hosted_settings, model="flux-dev")
    provider = KreaProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert result.images


async def test_cancel_stops_the_job_and_nothing_is_billed(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.manual = True
    candidate = candidate_for(hosted_settings, model="flux-dev")
    provider = KreaProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate)
        waiting = asyncio.create_task(provider.wait(job_id, candidate, None, timeout_s=10))
        await provider.cancel(job_id, candidate)
        with pytest.raises(Cancelled):
            await waiting
    finally:
        await provider.aclose()
    assert krea_fake.job(job_id).status == "cancelled"
    assert krea_fake.billed == 0


async def test_unknown_job_is_retried_until_its_deadline_then_times_out_with_the_404(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    # a 404 right after acceptance can be the job not visible yet: never a reason to drop a job that may bill
    candidate = candidate_for(hosted_settings, model="flux-dev")
    provider = KreaProvider(hosted_settings)
    try:
        with pytest.raises(ProviderTimeout, match="404"):
            await provider.wait("00000000-0000-0000-0000-000000000000", candidate, None, timeout_s=0.5)
        assert krea_fake.request_counts["get_job"] > 2
    finally:
        await provider.aclose()


def test_map_error_reads_retry_after() -> None:
    import httpx

    response = httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "3"})
    error = map_error(response)
    assert isinstance(error, RateLimited) and error.retry_after == 3.0
