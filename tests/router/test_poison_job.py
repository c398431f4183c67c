"""A poison job: an unexpected exception every time the job is followed. After MAX_RESUME_FAILURES it is given up,
marked failed with its reason, and its budget settled by the provider's own state (charged if billed, else
released), so the ledger equals what the provider billed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fluxroute.errors import PaymentAtRisk, ProviderError
from fluxroute.providers.downloads import ResultDownloads
from fluxroute.providers.krea import KreaProvider
from fluxroute.router import Router
from fluxroute.router.execute import MAX_RESUME_FAILURES
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


async def poison(router: Router) -> tuple[str, ProviderError]:
    """Generate once and resume until the job is given up; each run of it ends in the same exception."""
    with pytest.raises(PaymentAtRisk, match="may still be billed") as info:
        await router.generate(ImageRequest(prompt="a lighthouse at dusk", model="flux-dev", provider="krea"))
    job_id = info.value.job_id
    assert job_id is not None
    for _ in range(MAX_RESUME_FAILURES - 2):
        with pytest.raises(PaymentAtRisk):
            await router.resume_job(job_id)
        assert router.store.spend_summary().at_risk_today == Decimal("0.007")
    with pytest.raises(ProviderError) as last:
        await router.resume_job(job_id)
    assert not isinstance(last.value, PaymentAtRisk)
    return job_id, last.value


async def test_a_billed_poison_job_is_given_up_failed_and_charged(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(ResultDownloads, "image", broken)  # the job completes (billed); saving it always fails
    router = Router(hosted_settings)
    try:
        job_id, error = await poison(router)
        job = router.store.get_job(job_id)
        [attempt] = router.store.attempts_for(job_id)
    finally:
        await router.aclose()
    assert error.billing == "charged" and "gave up after 3 failures" in str(error)
    assert job.status == "failed" and "decoder bug" in (job.error or "") and "charged" in (job.error or "")
    assert attempt.status == "failed" and (attempt.detail or {})["resume_failures"] == MAX_RESUME_FAILURES
    assert krea_fake.billed == router.store.total_charged() == Decimal("0.007") and fal_fake.jobs == []
    summary = router.store.spend_summary()
    assert summary.at_risk_today == 0 and summary.reserved_today == 0
    assert router.in_flight_jobs() == []


async def test_an_unbilled_poison_job_is_given_up_failed_and_released(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("status parser bug")

    krea_fake.faults.fail_job("worker crashed")  # Krea's docs: failed jobs are not billed
    monkeypatch.setattr(KreaProvider, "_finish", broken)
    router = Router(hosted_settings)
    try:
        job_id, error = await poison(router)
        job = router.store.get_job(job_id)
    finally:
        await router.aclose()
    assert error.billing == "unbilled" and "not billed: released" in str(error)
    assert job.status == "failed" and "status parser bug" in (job.error or "")
    assert krea_fake.billed == router.store.total_charged() == 0 and fal_fake.jobs == []
    summary = router.store.spend_summary()
    assert summary.at_risk_today == 0 and summary.reserved_today == 0
    assert router.in_flight_jobs() == []
