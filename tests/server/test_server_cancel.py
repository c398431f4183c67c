"""Cancel on a live job, as a person and an MCP client do it: `fluxroute jobs cancel` and `cancel_image_job`.

Krea cancels only while a job is `queued` or `processing` (its docs); fal, asked to cancel an IN_PROGRESS request,
only signals the runner, which may finish and bill it (the fal fake's `honor_cancel_in_progress` is False). In
both cases the answer must tell the truth (it may still be charged), keep the amount at risk, and charge it
when the job completes: the ledger ends equal to what the provider billed, and no other provider is paid."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from mcp import types

from fluxroute.cli import main
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.jobs import Job
from tests.fakes.krea import KreaFake
from tests.fakes.service import FakeService
from tests.server.conftest import Connect

KREA = {"provider": "krea", "model": "flux-dev"}
FAL = {"provider": "fal", "model": "flux-krea-dev"}


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def started(fake: FakeService, status: str) -> Job:
    """The fake's one job, moved forward (it is `manual`) to `status`."""
    await until(lambda: len(fake.jobs) == 1)
    (job,) = fake.jobs
    while fake.job(job.id).status != status:
        fake.advance(job.id)
    return job


@pytest.fixture
def cli_env(hosted_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment on the same home and fakes as `hosted_settings`."""
    assert hosted_settings.krea_api_token is not None and hosted_settings.fal_key is not None
    monkeypatch.setenv("FLUXROUTE_HOME", str(hosted_settings.home))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    monkeypatch.setenv("KREA_API_TOKEN", hosted_settings.krea_api_token.get_secret_value())
    monkeypatch.setenv("FLUXROUTE_KREA_BASE_URL", hosted_settings.krea_base_url)
    monkeypatch.setenv("FAL_KEY", hosted_settings.fal_key.get_secret_value())
    monkeypatch.setenv("FLUXROUTE_FAL_BASE_URL", hosted_settings.fal_base_url)
    return hosted_settings


KREA_REFUSED = "would not cancel it in its current state"
CASES = [
    # (provider, the live status cancel finds, what the provider answers, the amount)
    pytest.param("krea", "scheduled", KREA_REFUSED, Decimal("0.007"), id="krea-scheduled"),
    pytest.param("krea", "sampling", KREA_REFUSED, Decimal("0.007"), id="krea-sampling"),
    pytest.param("fal", "IN_PROGRESS", "was asked to cancel it while it may be running", Decimal("0.025"), id="fal"),
]


@pytest.mark.parametrize(("provider", "status", "answer", "price"), CASES)
async def test_jobs_cancel_on_a_running_job_keeps_it_at_risk_then_charges_what_was_billed(
    cli_env: Settings,
    krea_fake: KreaFake,
    fal_fake: FalFake,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    status: str,
    answer: str,
    price: Decimal,
) -> None:
    fake: FakeService = krea_fake if provider == "krea" else fal_fake
    other: FakeService = fal_fake if provider == "krea" else krea_fake
    fake.manual = True
    router = Router(cli_env)
    try:
        request = ImageRequest.parse({"prompt": "a lighthouse", **(KREA if provider == "krea" else FAL)})
        generating = asyncio.create_task(router.generate(request))
        job = await started(fake, status)
        await until(lambda: router.store.list_jobs(limit=1) and router.in_flight_jobs() == [] and _in_flight(router))
        [record] = router.store.list_jobs(limit=1)
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["jobs", "cancel", record.id])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert answer in out and ("may still finish and be charged" in out or "charged if it completes" in out), out
        assert f"${price} stays at risk" in out, out
        assert "not charged" not in out
        assert fake.job(job.id).status == status  # the provider did not cancel it
        assert router.store.spend_summary().at_risk_today == price  # kept, not released
        assert not generating.done()
        fake.complete(job.id)
        result = await asyncio.wait_for(generating, 20)
    finally:
        await router.aclose()
    assert result.provider == provider and result.cost_usd == float(price)
    assert router.store.total_charged() == fake.billed == price and other.jobs == []
    assert router.store.spend_summary().at_risk_today == 0
    capsys.readouterr()
    assert main(["spend", "--json"]) == 0
    assert f'"spent_total": "{price}"' in capsys.readouterr().out


def _in_flight(router: Router) -> bool:
    jobs = router.store.list_jobs(limit=1)
    return any(a.status == "in_flight" for job in jobs for a in router.store.attempts_for(job.id))


@pytest.mark.parametrize(("provider", "status", "answer", "price"), CASES)
async def test_cancel_image_job_on_a_running_job_says_it_may_be_charged_keeps_it_at_risk_then_charges_it(
    connect: Connect,
    settings: Settings,
    krea_fake: KreaFake,
    fal_fake: FalFake,
    provider: str,
    status: str,
    answer: str,
    price: Decimal,
) -> None:
    fake: FakeService = krea_fake if provider == "krea" else fal_fake
    other: FakeService = fal_fake if provider == "krea" else krea_fake
    fake.manual = True
    args = KREA if provider == "krea" else FAL
    async with connect() as client:
        first = await client.call_tool("generate_image", {"prompt": "a fox", **args, "wait_s": 0.2})
        assert first.structured_content is not None, text_of(first)
        job_id = first.structured_content["job_id"]
        job = await started(fake, status)
        cancelled = await client.call_tool("cancel_image_job", {"job_id": job_id})
        resource = await client.read_resource("fluxroute://jobs")

    view = cancelled.structured_content
    assert view is not None, text_of(cancelled)
    said = f"{view.get('error')} {text_of(cancelled)}"
    assert "may still be charged" in said and "not charged" not in said.replace("may still be charged", ""), said
    assert fake.job(job.id).status == status and fake.billed == 0
    assert isinstance(resource.contents[0], types.TextResourceContents)
    assert f'"at_risk_usd": "{price}"' in resource.contents[0].text  # kept at risk, shown as such

    fake.complete(job.id)  # the runner finished after all: billed
    router = Router(settings)
    try:
        assert router.store.spend_summary().at_risk_today == price
        outcomes = await router.resume_in_flight()
    finally:
        await router.aclose()
    assert [getattr(o, "cost_usd", o) for o in outcomes] == [float(price)]
    assert router.store.total_charged() == fake.billed == price and other.jobs == []
    assert router.store.spend_summary().at_risk_today == 0
