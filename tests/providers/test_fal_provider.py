"""FalProvider (fal-client AsyncClient) against the fal queue fake: lifecycle, logs, errors, cancel, NSFW, webhooks."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import httpx
import pytest

from fluxroute.errors import (
    AuthError,
    Cancelled,
    JobFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    WebhookRejected,
)
from fluxroute.providers.base import Progress
from fluxroute.providers.fal import FalProvider
from fluxroute.providers.webhooks import FalWebhookVerifier
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import Candidate, ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.webhooks import WebhookReceiver


def candidate_for(settings: Settings, **fields: object) -> Candidate:
    request = ImageRequest.parse({"prompt": "a red fox in fresh snow", "provider": "fal", **fields})
    plan = Router(settings).plan(request)
    assert plan.chosen is not None, plan.explanation
    return plan.chosen


async def run(settings: Settings, candidate: Candidate, progress=None):  # type: ignore[no-untyped-def]
    provider = FalProvider(settings)
    try:
        job_id = await provider.submit(candidate)
        return job_id, await provider.wait(job_id, candidate, progress, timeout_s=10)
    finally:
        await provider.aclose()


async def test_queue_progress_logs_and_result_in_order(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.queue_ahead = 2
    fal_fake.timings = {"IN_QUEUE": 0.3, "IN_PROGRESS": 0.8}
    events: list[Progress] = []

    async def record(event: Progress) -> None:
        events.append(event)

    candidate = candidate_for(hosted_settings, model="flux-krea-dev", num_images=2, image_size="landscape_4_3")
    job_id, result = await run(hosted_settings, candidate, record)
    statuses = [e.status for e in events]
    first_progress = statuses.index("IN_PROGRESS")
    assert set(statuses[:first_progress]) == {"IN_QUEUE"}
    assert statuses[-1] == "COMPLETED"
    positions = [e.queue_position for e in events if e.queue_position is not None]
    assert positions == sorted(positions, reverse=True)
    assert any(e.message and "step" in e.message.lower() for e in events), [e.message for e in events]
    # no event repeats the one before it, COMPLETED comes last and once, and the fields agree with the words
    assert all(a != b for a, b in itertools.pairwise(events))
    assert statuses.count("COMPLETED") == 1
    for event in events:
        assert event.queue_position is None or str(event.queue_position) not in event.message
        if event.message and "step" in event.message.lower():
            assert event.step is not None and f"{event.step}/{event.total_steps}" in event.message, event
    steps = [e.step for e in events if e.step is not None]
    assert steps and steps == sorted(steps)
    assert len(result.images) == 2
    assert fal_fake.billed == Decimal("0.05")  # ceil(0.79 MP) = 1 MP x $0.025 x 2 images
    assert fal_fake.job(job_id).input["image_size"] == "landscape_4_3"


async def test_validation_error_comes_back_field_by_field(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.validate_at_submit = True
    candidate = candidate_for(hosted_settings, model="flux-krea-dev")
    bad = candidate.model_copy(update={"params": {**candidate.params, "num_inference_steps": 99}})
    provider = FalProvider(hosted_settings)
    try:
        with pytest.raises(ProviderBadRequest) as info:
            await provider.submit(bad)
    finally:
        await provider.aclose()
    assert info.value.status_code == 422
    assert "num_inference_steps" in str(info.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthError), (403, AuthError), (404, ProviderBadRequest), (500, ProviderUnavailable)],
)
async def test_http_errors_map_to_the_error_tree(
    hosted_settings: Settings, fal_fake: FalFake, status: int, kind: type[ProviderError]
) -> None:
    fal_fake.faults.http_error(status, {"detail": f"injected {status}"}, route="submit")
    provider = FalProvider(hosted_settings)
    try:
        with pytest.raises(kind, match=f"injected {status}"):
            await provider.submit(candidate_for(hosted_settings, model="flux-krea-dev"))
    finally:
        await provider.aclose()
    assert fal_fake.billed == 0


async def test_persistent_rate_limit_is_rate_limited(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.faults.http_error(429, {"detail": "too many"}, {"Retry-After": "0"}, route="submit", times=3)
    provider = FalProvider(hosted_settings)
    try:
        with pytest.raises(RateLimited):
            await provider.submit(candidate_for(hosted_settings, model="flux-krea-dev"))
    finally:
        await provider.aclose()
    assert len(fal_fake.jobs) == 0


async def test_a_429_that_clears_is_retried(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.faults.http_error(429, {"detail": "too many"}, {"Retry-After": "0"}, route="submit", times=1)
    _, result = await run(hosted_settings, candidate_for(hosted_settings, model="flux-krea-dev"))
    assert result.images and len(fal_fake.jobs) == 1


async def test_dropped_answer_after_acceptance_is_never_resubmitted(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    fal_fake.faults.drop_after_accept()
    provider = FalProvider(hosted_settings)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await provider.submit(candidate_for(hosted_settings, model="flux-krea-dev"))
    finally:
        await provider.aclose()
    assert info.value.billing == "at_risk"
    assert fal_fake.request_counts["submit"] == 1 and len(fal_fake.jobs) == 1


async def test_status_polls_go_through_fal_client_and_the_result_is_fetched_once(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    async def follow(event: Progress) -> None:
        pass

    await run(hosted_settings, candidate_for(hosted_settings, model="flux-krea-dev"), follow)
    statuses = [r for r in fal_fake.request_log if r.route == "status"]
    # fal-client's request handle asks for logs as Python spells it ("true"); fal-client's result() would
    # poll the status once more, so the output is one plain GET
    assert statuses and all(r.query == "logs=true" for r in statuses)
    assert fal_fake.request_counts["result"] == 1
    assert all(r.headers["authorization"] == f"Key {fal_fake.key}" for r in statuses)


async def test_logs_are_asked_for_only_when_someone_follows_the_progress(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    _, result = await run(hosted_settings, candidate_for(hosted_settings, model="flux-krea-dev"))
    statuses = [r for r in fal_fake.request_log if r.route == "status"]
    assert result.images and statuses and all(r.query == "logs=false" for r in statuses)
    assert fal_fake.request_counts["result"] == 1  # the result once COMPLETED is seen: no status poll more


async def test_failed_request_is_job_failed_and_unbilled(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.faults.fail_job("CUDA out of memory")
    with pytest.raises(JobFailed, match="CUDA out of memory"):
        await run(hosted_settings, candidate_for(hosted_settings, model="flux-krea-dev"))
    assert fal_fake.billed == 0


async def test_nsfw_concepts_flag_the_image(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.nsfw_prompts = ["fox"]
    _, result = await run(hosted_settings, candidate_for(hosted_settings, model="flux-krea-dev"))
    assert [image.flagged for image in result.images] == [True]


async def test_cancel_while_running(hosted_settings: Settings, fal_fake: FalFake) -> None:
    fal_fake.manual = True
    candidate = candidate_for(hosted_settings, model="flux-krea-dev")
    provider = FalProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate)
        waiting = asyncio.create_task(provider.wait(job_id, candidate, None, timeout_s=10))
        assert await provider.cancel(job_id, candidate) == "requested"  # CANCELLATION_REQUESTED
        with pytest.raises(Cancelled) as cancelled:
            await waiting
        assert cancelled.value.billing == "unbilled"  # it never left the queue
        assert await provider.cancel(job_id, candidate) == "already_ended"  # ALREADY_COMPLETED
    finally:
        await provider.aclose()
    assert fal_fake.billed == 0


async def test_signed_webhook_is_accepted_and_a_forged_one_refused(
    hosted_settings: Settings, fal_fake: FalFake, webhook_receiver: WebhookReceiver
) -> None:
    candidate = candidate_for(hosted_settings, model="flux-krea-dev")
    provider = FalProvider(hosted_settings)
    try:
        job_id = await provider.submit(candidate, webhook_url=webhook_receiver.url)
    finally:
        await provider.aclose()
    delivery = await webhook_receiver.wait_for(1, timeout=10)
    async with httpx.AsyncClient() as client:
        verifier = FalWebhookVerifier(client, jwks_url=fal_fake.jwks_url)
        payload = await verifier.verify(delivery.headers, delivery.body)
        assert payload["request_id"] == job_id and payload["status"] == "OK"
        forged = delivery.body.replace(b'"OK"', b'"ERROR"')
        with pytest.raises(WebhookRejected, match="signature"):
            await verifier.verify(delivery.headers, forged)
        stale = {**delivery.headers, "x-fal-webhook-timestamp": "1000"}
        with pytest.raises(WebhookRejected, match="timestamp"):
            await verifier.verify(stale, delivery.body)


async def test_the_result_is_read_once_right_after_the_status_that_said_completed(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    """One status request sees COMPLETED; the result is then fetched from the response URL directly (fal-client's
    own `result()` would ask for the status again first)."""
    fal_fake.timings = {"IN_QUEUE": 0.05, "IN_PROGRESS": 0.2}
    job_id, result = await run(hosted_settings, candidate_for(hosted_settings, model="flux-dev"))
    finished = fal_fake.job(job_id).finished_at
    assert finished is not None and result.images
    log = [r for r in fal_fake.request_log if r.route in ("status", "result")]
    after = [r.route for r in log if r.at >= finished]
    assert after == ["status", "result"], after
    assert fal_fake.request_counts["result"] == 1
