"""RayFleetProvider and read_fleet against the fleet fake: the job lifecycle, each fault after acceptance and the
billing it leaves, cancel, timeouts, and the fleet's report."""

from __future__ import annotations

import asyncio
import io
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from fluxroute.errors import (
    Cancelled,
    JobFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from fluxroute.providers.base import Progress
from fluxroute.providers.ray_fleet import FleetReport, RayFleetProvider, read_fleet
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import Candidate, ImageRequest
from tests.fakes.fleet import FleetFake

DEV = "black-forest-labs/FLUX.1-dev"


def settings_for(tmp_path: Path, url: str | None) -> Settings:
    return Settings(home=tmp_path / "home", ray_url=url, retry_backoff_s=0.01, provider_timeout_s=20)


@pytest.fixture
def settings(tmp_path: Path, fleet_fake: FleetFake) -> Settings:
    return settings_for(tmp_path, fleet_fake.base_url)


@pytest.fixture
async def provider(settings: Settings) -> AsyncIterator[RayFleetProvider]:
    ray = RayFleetProvider(settings)
    yield ray
    await ray.aclose()


def candidate_for(settings: Settings, **fields: object) -> Candidate:
    """A ray candidate as the router plans it (the fleet's report says which weights its replicas hold)."""
    request = {"prompt": "a lighthouse at dusk", "provider": "ray", "model": "flux-dev", "usage": "non-commercial"}
    plan = Router(settings).plan(ImageRequest.parse({"width": 512, "height": 384, **request, **fields}))
    assert plan.chosen is not None, plan.explanation
    return plan.chosen


class Recorder:
    """A progress callback that keeps every event and can wake a test at a given step."""

    def __init__(self, wake_at_step: int | None = None) -> None:
        self.events: list[Progress] = []
        self.wake_at_step = wake_at_step
        self.reached = asyncio.Event()

    async def __call__(self, event: Progress) -> None:
        self.events.append(event)
        if self.wake_at_step is not None and event.step == self.wake_at_step:
            self.reached.set()


def closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the job lifecycle ------------------------------------------------------------------------------------------


async def test_job_queues_runs_and_its_images_decode_with_what_the_replica_reported(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    candidate = candidate_for(settings, num_images=2, seed=7)
    record = Recorder()
    job_id = await provider.submit(candidate)
    result = await provider.wait(job_id, candidate, record, timeout_s=10)

    assert result.provider_job_id == job_id
    assert [(i.width, i.height, i.content_type) for i in result.images] == [(512, 384, "image/png")] * 2
    assert Image.open(io.BytesIO(result.images[0].data)).size == (512, 384)
    assert (result.seed, result.seeds) == (7, [7, 8])
    assert result.compute_seconds == fleet_fake.steps * fleet_fake.gpu_seconds_per_step
    assert result.worker is not None and result.worker == fleet_fake.job(job_id).replica
    assert result.review and "unfiltered" in result.review
    assert {e.provider for e in record.events} == {"ray"}
    steps = [(e.step, e.total_steps) for e in record.events if e.step is not None]
    assert steps == [(s, fleet_fake.steps) for s in range(1, fleet_fake.steps + 1)]
    assert fleet_fake.fired == Counter()  # no fault armed, none fired
    polls = [r for r in fleet_fake.request_log if r.route == "status"]
    assert all("wait=" in r.query for r in polls)  # long polls, not a busy poll


async def test_fleet_counts_the_finished_job(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    candidate = candidate_for(settings)
    await provider.wait(await provider.submit(candidate), candidate, None, timeout_s=10)
    report = read_fleet(settings)
    assert isinstance(report, FleetReport)
    assert report.jobs == {"succeeded": 1}


def test_construction_without_a_fleet_url_is_unbilled_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable) as info:
        RayFleetProvider(settings_for(tmp_path, None))
    assert info.value.billing == "unbilled"


# --- submission -----------------------------------------------------------------------------------------------


async def test_the_fake_answers_a_repeated_key_with_the_same_job(
    settings: Settings,
    fleet_fake: FleetFake,
) -> None:
    body = {"key": "k" * 32, "candidate": candidate_for(settings).model_dump(mode="json")}
    async with httpx.AsyncClient(base_url=fleet_fake.base_url) as client:
        first = await client.post("/v1/jobs", json=body)
        again = await client.post("/v1/jobs", json=body)
        other = await client.post("/v1/jobs", json={**body, "key": "x" * 32})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert len(fleet_fake.jobs) == 2


@pytest.mark.parametrize(
    ("arm", "fired"),
    [
        (lambda fake: fake.faults.drop_after_accept(), "drop:submit:after"),
        (lambda fake: fake.faults.garble(route="submit", after_accept=True), "garble:submit:after"),
        (lambda fake: fake.faults.http_error(503, route="submit", after_accept=True), "http_error:submit:after"),
        (lambda fake: fake.faults.drop(route="submit"), "drop:submit"),
    ],
    ids=["answer-dropped", "answer-garbled", "answer-503", "dropped-before-handling"],
)
async def test_a_lost_submit_answer_is_sent_again_with_the_same_key_and_makes_one_job(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
    arm: Callable[[FleetFake], object],
    fired: str,
) -> None:
    arm(fleet_fake)
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    result = await provider.wait(job_id, candidate, None, timeout_s=10)
    assert fleet_fake.fired == Counter({fired: 1})
    assert fleet_fake.request_counts["submit"] == 2
    assert [job.id for job in fleet_fake.jobs.values()] == [job_id]  # one job, whichever attempt made it
    assert len(result.images) == 1


async def test_a_submit_answer_lost_every_time_is_at_risk_and_made_one_job(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.faults.drop_after_accept(times=3)
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(candidate_for(settings))
    assert info.value.billing == "at_risk"
    assert fleet_fake.fired == Counter({"drop:submit:after": 3})
    assert len(fleet_fake.jobs) == 1  # three attempts, one key, one job (it runs: the router must look for it)


async def test_a_fleet_never_reached_is_unbilled_unavailable(tmp_path: Path, settings: Settings) -> None:
    provider = RayFleetProvider(settings_for(tmp_path, closed_port_url()))
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await provider.submit(candidate_for(settings))
    finally:
        await provider.aclose()
    assert info.value.billing == "unbilled"
    assert info.value.retryable


@pytest.mark.parametrize(("status", "kind"), [(413, ProviderBadRequest), (422, ProviderBadRequest), (429, RateLimited)])
async def test_a_refused_submission_is_unbilled_and_not_sent_again(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
    status: int,
    kind: type[ProviderError],
) -> None:
    fleet_fake.faults.http_error(status, {"detail": f"injected {status}"}, route="submit")
    with pytest.raises(kind) as info:
        await provider.submit(candidate_for(settings))
    assert info.value.billing == "unbilled"
    assert f"injected {status}" in str(info.value)
    assert fleet_fake.fired == Counter({"http_error:submit": 1})
    assert fleet_fake.request_counts["submit"] == 1
    assert fleet_fake.jobs == {}


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
async def test_a_submission_the_fleet_finds_invalid_is_refused_unbilled(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    candidate = candidate_for(settings)
    broken = candidate.model_copy(update={"width": "wide"})  # the fleet validates the candidate it is sent
    with pytest.raises(ProviderBadRequest, match="not a valid fluxroute candidate") as info:
        await provider.submit(broken)
    assert info.value.billing == "unbilled"
    assert fleet_fake.fired == Counter()  # a real refusal, no fault
    assert fleet_fake.jobs == {}


# --- following an accepted job ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arm", "fired"),
    [
        (lambda fake: fake.faults.http_error(503, route="status", times=2), {"http_error:status": 2}),
        (lambda fake: fake.faults.http_error(502, route="status", ingress=True), {"http_error:status": 1}),
        (lambda fake: fake.faults.garble(route="status", times=2), {"garble:status": 2}),
        (lambda fake: fake.faults.garble(route="status", body=b"<html>oops</html>"), {"garble:status": 1}),
        (lambda fake: fake.faults.drop(route="status"), {"drop:status": 1}),
        (lambda fake: fake.redeploying(3), {"serve_404:status": 3}),
        (lambda fake: fake.faults.http_error(500, route="result"), {"http_error:result": 1}),
        (lambda fake: fake.faults.garble(route="result"), {"garble:result": 1}),
        (lambda fake: fake.faults.drop(route="result"), {"drop:result": 1}),
        (lambda fake: fake.redeploying(2, route="result"), {"serve_404:result": 2}),
    ],
    ids=[
        "status-503",
        "status-502-ingress-page",
        "status-garbled",
        "status-html",
        "status-dropped",
        "status-serve-404-redeploying",
        "result-500",
        "result-garbled",
        "result-dropped",
        "result-serve-404-redeploying",
    ],
)
async def test_what_passes_while_following_a_job_is_retried_until_the_images_come(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
    arm: Callable[[FleetFake], object],
    fired: dict[str, int],
) -> None:
    arm(fleet_fake)
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    result = await provider.wait(job_id, candidate, None, timeout_s=10)
    assert fleet_fake.fired == Counter(fired)
    assert len(result.images) == 1 and result.compute_seconds is not None


async def test_a_429_on_status_is_retried_after_its_retry_after(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.faults.http_error(429, {"detail": "slow down"}, {"Retry-After": "1"}, route="status")
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    result = await provider.wait(job_id, candidate, None, timeout_s=10)
    assert fleet_fake.fired == Counter({"http_error:status": 1})
    polls = [r for r in fleet_fake.request_log if r.route == "status"]
    refused = next(i for i, r in enumerate(polls) if r.fault == "http_error")
    assert polls[refused + 1].at - polls[refused].at >= 1.0  # Retry-After honoured, not the 0.01 s backoff
    assert len(result.images) == 1


async def test_an_expired_result_is_charged(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.expire_result()
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    with pytest.raises(JobFailed, match="expired") as info:
        await provider.wait(job_id, candidate, None, timeout_s=10)
    assert fleet_fake.fired == Counter({"expire_result:submit": 1})
    assert (info.value.billing, info.value.status_code, info.value.retryable) == ("charged", 410, False)
    assert info.value.provider_job_id == job_id
    assert fleet_fake.job(job_id).expired
    # charged by the GPU-seconds the fleet reported for it, not the plan's estimate
    assert info.value.compute_seconds == fleet_fake.job(job_id).gpu_seconds == 2.0


async def test_an_expired_result_is_charged_in_the_ledger_at_the_reported_gpu_seconds(
    settings: Settings, fleet_fake: FleetFake
) -> None:
    from decimal import Decimal

    from fluxroute.errors import FluxrouteError

    priced = settings.model_copy(update={"prices": {"ray-flux-dev": Decimal("0.0007")}, "usage": "non-commercial"})
    router = Router(priced)
    fleet_fake.expire_result()
    try:
        fox = {"prompt": "a fox", "provider": "ray", "model": "flux-dev", "width": 512, "height": 384}
        with pytest.raises(FluxrouteError, match="expired"):
            await router.generate(ImageRequest.parse(fox))
    finally:
        await router.aclose()
    assert fleet_fake.fired == Counter({"expire_result:submit": 1})
    (job,) = fleet_fake.jobs.values()
    assert job.gpu_seconds == 2.0
    assert router.store.total_charged() == Decimal("0.0007") * 2  # what the fleet reported, not the estimate


async def test_a_job_the_fleet_lost_is_unbilled_and_retryable(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.lose_job()
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    with pytest.raises(JobFailed, match="no job") as info:
        await provider.wait(job_id, candidate, None, timeout_s=10)
    assert fleet_fake.fired == Counter({"lose_job:submit": 1})
    assert (info.value.billing, info.value.status_code, info.value.retryable) == ("unbilled", 404, True)


async def test_a_job_forgotten_by_a_restarted_ingress_is_unbilled(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.paused = True
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    await asyncio.to_thread(fleet_fake.restart_ingress)
    with pytest.raises(JobFailed) as info:
        await provider.wait(job_id, candidate, None, timeout_s=10)
    assert (info.value.billing, info.value.status_code) == ("unbilled", 404)
    assert fleet_fake.fired == Counter()  # no fault: the board itself is gone


@pytest.mark.parametrize(
    ("kind", "retryable", "error"),
    [("job_failed", False, JobFailed), ("unavailable", True, ProviderUnavailable), ("lost", True, JobFailed)],
)
async def test_a_failed_job_is_unbilled_with_its_error_kind(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
    kind: str,
    retryable: bool,
    error: type[ProviderError],
) -> None:
    fleet_fake.fail_job(kind, f"injected {kind}", retryable=retryable, at_step=2)
    candidate = candidate_for(settings)
    record = Recorder()
    job_id = await provider.submit(candidate)
    with pytest.raises(error, match=f"injected {kind}") as info:
        await provider.wait(job_id, candidate, record, timeout_s=10)
    assert type(info.value) is error
    assert fleet_fake.fired == Counter({"fail_job:submit": 1})
    assert (info.value.billing, info.value.retryable) == ("unbilled", retryable)
    assert info.value.provider_job_id == job_id
    assert [e.step for e in record.events if e.step is not None] == [1, 2]  # it ran two steps, then failed


# --- cancel ----------------------------------------------------------------------------------------------------


async def test_cancelling_a_queued_job_stops_it_before_it_starts_unbilled(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.paused = True  # no replica takes it
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    assert await provider.cancel(job_id, candidate) == "cancelled"
    with pytest.raises(Cancelled) as info:
        await provider.wait(job_id, candidate, None, timeout_s=10)
    assert (info.value.billing, info.value.retryable) == ("unbilled", False)
    job = fleet_fake.job(job_id)
    assert (job.cancelled_while, job.replica, job.events) == ("queued", None, [])
    assert await provider.cancel(job_id, candidate) == "already_ended"
    assert fleet_fake.fired == Counter()


async def test_cancelling_a_running_job_stops_it_before_its_next_step_unbilled(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.hold_at_step = 2
    candidate = candidate_for(settings)
    record = Recorder(wake_at_step=2)
    job_id = await provider.submit(candidate)
    following = asyncio.create_task(provider.wait(job_id, candidate, record, timeout_s=10))
    async with asyncio.timeout(5):
        await record.reached.wait()
    assert await provider.cancel(job_id, candidate) == "cancelled"
    with pytest.raises(Cancelled) as info:
        await following
    assert (info.value.billing, info.value.retryable) == ("unbilled", False)
    job = fleet_fake.job(job_id)
    assert job.cancelled_while == "running" and job.replica is not None
    assert [e["step"] for e in job.events] == [1, 2]
    assert job.gpu_seconds is None and job.result is None


async def test_cancel_of_a_job_the_fleet_does_not_know_is_refused(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    assert await provider.cancel("ray-unknown", candidate_for(settings)) == "refused"


async def test_cancel_whose_answer_is_garbled_is_refused(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.paused = True
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    fleet_fake.faults.garble(route="cancel", after_accept=True)
    assert await provider.cancel(job_id, candidate) == "refused"  # the job is cancelled, the answer lost
    assert fleet_fake.fired == Counter({"garble:cancel:after": 1})
    with pytest.raises(Cancelled):  # following it settles the matter: it bills nothing
        await provider.wait(job_id, candidate, None, timeout_s=10)


# --- timeouts ---------------------------------------------------------------------------------------------------


async def test_a_job_still_queued_at_its_deadline_times_out(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.paused = True
    candidate = candidate_for(settings)
    record = Recorder()
    job_id = await provider.submit(candidate)
    with pytest.raises(ProviderTimeout, match="still queued") as info:
        await provider.wait(job_id, candidate, record, timeout_s=0.3)
    assert info.value.provider_job_id == job_id
    assert info.value.billing != "unbilled"  # accepted and still queued: it may yet run
    assert [e.status for e in record.events] == ["IN_QUEUE"]
    assert fleet_fake.request_counts["status"] <= 3  # long polls, not a busy loop
    assert fleet_fake.fired == Counter()


async def test_a_fleet_that_keeps_failing_times_out_with_the_last_failure(
    settings: Settings,
    provider: RayFleetProvider,
    fleet_fake: FleetFake,
) -> None:
    candidate = candidate_for(settings)
    job_id = await provider.submit(candidate)
    fleet_fake.faults.http_error(503, {"detail": "injected 503"}, route="status", times=10_000)
    with pytest.raises(ProviderTimeout, match="kept failing") as info:
        await provider.wait(job_id, candidate, None, timeout_s=0.3)
    assert isinstance(info.value.__cause__, ProviderUnavailable)
    assert info.value.provider_job_id == job_id
    assert fleet_fake.fired["http_error:status"] >= 2


# --- the fleet's report --------------------------------------------------------------------------------------------


def test_read_fleet_without_a_url_says_how_to_set_one(tmp_path: Path) -> None:
    report = read_fleet(settings_for(tmp_path, None))
    assert isinstance(report, str) and "FLUXROUTE_RAY_URL" in report


def test_read_fleet_of_an_unreachable_fleet_says_so(tmp_path: Path) -> None:
    report = read_fleet(settings_for(tmp_path, closed_port_url()))
    assert isinstance(report, str) and "cannot be reached" in report


def test_read_fleet_of_a_failing_fleet_names_the_status(settings: Settings, fleet_fake: FleetFake) -> None:
    fleet_fake.faults.http_error(503, route="fleet")
    report = read_fleet(settings)
    assert isinstance(report, str) and "HTTP 503" in report
    assert fleet_fake.fired == Counter({"http_error:fleet": 1})


def test_read_fleet_of_a_fleet_not_deployed_names_the_status(settings: Settings, fleet_fake: FleetFake) -> None:
    fleet_fake.redeploying(1, route="fleet")
    report = read_fleet(settings)
    assert isinstance(report, str) and "HTTP 404" in report
    assert fleet_fake.fired == Counter({"serve_404:fleet": 1})


@pytest.mark.parametrize(
    "body",
    [
        b'{"replicas": ',
        b'{"app": "fluxroute", "replicas": {}, "weights": {}, "jobs": {}}',
        b"[]",
        b'{"app": "fluxroute", "replicas": [], "weights": {"x": "many"}, "jobs": {}}',
    ],
    ids=["truncated", "replicas-not-a-list", "json-array", "weights-count-not-a-number"],
)
def test_read_fleet_of_a_garbled_report_says_why_instead_of_raising(
    settings: Settings,
    fleet_fake: FleetFake,
    body: bytes,
) -> None:
    fleet_fake.faults.garble(route="fleet", body=body)
    report = read_fleet(settings)
    assert isinstance(report, str), report
    assert fleet_fake.fired == Counter({"garble:fleet": 1})


def test_read_fleet_reports_replicas_weights_and_jobs(settings: Settings, fleet_fake: FleetFake) -> None:
    report = read_fleet(settings)
    assert isinstance(report, FleetReport)
    assert report.url == fleet_fake.base_url
    assert len(report.replicas) == fleet_fake.replica_count == 2
    assert report.weights[DEV] == 2
    assert report.jobs == {}


def test_availability_says_how_many_replicas_hold_the_weights(settings: Settings, fleet_fake: FleetFake) -> None:
    fleet_fake.replica_count = 3
    report = read_fleet(settings)
    assert isinstance(report, FleetReport)
    held = report.availability(DEV)
    assert held.ok and "3 of 3" in held.reason
    missing = report.availability("krea/Krea-2-Raw")
    assert not missing.ok and "krea/Krea-2-Raw" in missing.reason


def test_availability_of_a_fleet_without_replicas_says_it_may_be_starting(
    settings: Settings,
    fleet_fake: FleetFake,
) -> None:
    fleet_fake.replica_count = 0
    report = read_fleet(settings)
    assert isinstance(report, FleetReport) and report.replicas == []
    answer = report.availability(DEV)
    assert not answer.ok and "no replica yet" in answer.reason


def test_availability_counts_only_the_replicas_that_hold_the_weights(tmp_path: Path) -> None:
    report = FleetReport("http://fleet", [{"replica": "a"}, {"replica": "b"}], {DEV: 1}, {})
    assert report.availability(DEV).reason == "1 of 2 fleet replicas hold it"
