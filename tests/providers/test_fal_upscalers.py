"""FalProvider against the fal fake's upscalers (seedvr, clarity, esrgan, aura-sr): one `image` object per result,
`compute_seconds` from the COMPLETED status's metrics, input images placed like any other, faults after acceptance."""

from __future__ import annotations

import base64
import io
import os
from decimal import Decimal

import pytest
from PIL import Image

from fluxroute.errors import ProviderUnavailable
from fluxroute.providers.base import ProviderResult
from fluxroute.providers.fal import FalProvider
from fluxroute.providers.image_inputs import FAL_INLINE_MAX_BYTES
from fluxroute.settings import Settings
from fluxroute.types import Candidate
from tests.fakes.fal import FalFake
from tests.fakes.webhooks import WebhookReceiver


def png_uri(width: int, height: int, *, noise: bool = False) -> str:
    out = io.BytesIO()
    if noise:  # incompressible: a PNG of this many bytes
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    else:
        Image.new("RGB", (width, height), (40, 80, 120)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def bodies(image_url: str) -> dict[str, dict[str, object]]:
    """What the router sends to each upscaler (candidate.params), factor 2 where there is a choice."""
    return {
        "fal-ai/seedvr/upscale/image": {
            "image_url": image_url,
            "upscale_mode": "factor",
            "upscale_factor": 2,
            "output_format": "png",
        },
        "fal-ai/clarity-upscaler": {"image_url": image_url, "upscale_factor": 2, "creativity": 0.35, "prompt": "a fox"},
        "fal-ai/esrgan": {"image_url": image_url, "scale": 2, "model": "RealESRGAN_x4plus", "output_format": "png"},
        "fal-ai/aura-sr": {"image_url": image_url, "upscale_factor": 4},
    }


def upscale(endpoint: str, params: dict[str, object], width: int, height: int) -> Candidate:
    return Candidate(
        offer_id=f"fal:{endpoint}",
        label=endpoint,
        provider="fal",
        model=endpoint.rsplit("/", 1)[-1],
        endpoint=endpoint,
        width=width,
        height=height,
        num_images=1,
        cost_usd=0.01,
        latency_s=5.0,
        license="test",
        params=params,
    )


async def run(
    settings: Settings, candidate: Candidate, *, webhook_url: str | None = None
) -> tuple[str, ProviderResult]:
    provider = FalProvider(settings)
    try:
        job_id = await provider.submit(candidate, webhook_url=webhook_url)
        return job_id, await provider.wait(job_id, candidate, None, timeout_s=20)
    finally:
        await provider.aclose()


@pytest.fixture
def fal_upscales(hosted_settings: Settings, fal_fake: FalFake) -> Settings:
    fal_fake.image_scale = 1.0  # the upscalers' PNGs are cheap at any size: download them whole
    return hosted_settings


@pytest.mark.parametrize(
    ("endpoint", "size"),
    [
        ("fal-ai/seedvr/upscale/image", (640, 480)),
        ("fal-ai/clarity-upscaler", (640, 480)),
        ("fal-ai/esrgan", (640, 480)),
        ("fal-ai/aura-sr", (1280, 960)),
    ],
)
async def test_each_upscaler_body_comes_back_as_one_image_at_the_output_size(
    fal_upscales: Settings, fal_fake: FalFake, endpoint: str, size: tuple[int, int]
) -> None:
    params = bodies(png_uri(320, 240))[endpoint]
    job_id, result = await run(fal_upscales, upscale(endpoint, params, *size))
    (image,) = result.images
    assert (image.width, image.height, image.content_type) == (*size, "image/png")
    job = fal_fake.job(job_id)
    assert job.input["image_url"] == params["image_url"]  # a small data: URI goes inline
    assert {k: job.input[k] for k in params} == params  # the body as the router sent it
    # every upscale reports its compute time; the fake decides it and esrgan is billed by it
    assert result.compute_seconds == fal_fake.reported_inference_time(job_id)
    assert result.seed == (
        job.meta["seed"] if endpoint in ("fal-ai/seedvr/upscale/image", "fal-ai/clarity-upscaler") else None
    )


async def test_esrgan_compute_seconds_is_what_the_fake_reported_and_billed(
    fal_upscales: Settings, fal_fake: FalFake
) -> None:
    fal_fake.upscale_seconds_per_mp = Decimal("2.5")
    params = {**bodies(png_uri(500, 400))["fal-ai/esrgan"], "scale": 4}
    job_id, result = await run(fal_upscales, upscale("fal-ai/esrgan", params, 2000, 1600))
    # 2000x1600 = 3.2 MP x 2.5 s/MP = 8.000 s
    assert result.compute_seconds == fal_fake.reported_inference_time(job_id) == 8.0
    assert fal_fake.billed == Decimal("8.000") * Decimal("0.00111")
    assert (result.images[0].width, result.images[0].height) == (2000, 1600)


async def test_compute_seconds_is_none_when_the_completed_status_has_no_metrics(
    fal_upscales: Settings, fal_fake: FalFake
) -> None:
    fal_fake.faults.drop_metrics()
    job_id, result = await run(
        fal_upscales, upscale("fal-ai/esrgan", bodies(png_uri(64, 64))["fal-ai/esrgan"], 128, 128)
    )
    assert result.images and result.compute_seconds is None
    assert fal_fake.faults.fired == {"drop_metrics:submit": 1}  # the only fault that fired
    assert fal_fake.billed == fal_fake.job(job_id).price > 0  # fal billed it all the same


async def test_a_large_input_is_uploaded_to_fal_storage_and_the_fake_reads_its_size(
    fal_upscales: Settings, fal_fake: FalFake
) -> None:
    uri = png_uri(700, 600, noise=True)
    assert len(base64.b64decode(uri.split(",", 1)[1])) > FAL_INLINE_MAX_BYTES
    params = bodies(uri)["fal-ai/seedvr/upscale/image"]
    job_id, result = await run(fal_upscales, upscale("fal-ai/seedvr/upscale/image", params, 1400, 1200))
    assert fal_fake.request_counts["upload"] == 1
    assert str(fal_fake.job(job_id).input["image_url"]).startswith(fal_fake.base_url + "/files/")
    assert (result.images[0].width, result.images[0].height) == (1400, 1200)


async def test_status_5xx_and_a_garbled_result_after_acceptance_are_retried(
    fal_upscales: Settings, fal_fake: FalFake
) -> None:
    fal_fake.faults.http_error(503, route="status", times=2)
    fal_fake.faults.garble(route="result")
    job_id, result = await run(
        fal_upscales, upscale("fal-ai/esrgan", bodies(png_uri(80, 60))["fal-ai/esrgan"], 160, 120)
    )
    assert (result.images[0].width, result.images[0].height) == (160, 120)
    assert result.compute_seconds == fal_fake.reported_inference_time(job_id)
    # the faults that fired: two 503s on status polls, one garbled result body; then the result was read again
    assert fal_fake.faults.fired == {"http_error:status": 2, "garble:result": 1}
    assert fal_fake.request_counts["result"] == 2 and len(fal_fake.jobs) == 1


async def test_a_dropped_submit_answer_then_a_resumed_wait_still_reports_compute_seconds(
    fal_upscales: Settings, fal_fake: FalFake
) -> None:
    """The submission's answer is lost after fal accepted it (billing at risk, never sent again); a later wait on
    the job id (what crash-resume does, on a fresh provider) still reads the COMPLETED status and its metrics."""
    fal_fake.faults.drop_after_accept()
    candidate = upscale("fal-ai/esrgan", bodies(png_uri(90, 90))["fal-ai/esrgan"], 180, 180)
    provider = FalProvider(fal_upscales)
    try:
        with pytest.raises(ProviderUnavailable) as lost:
            await provider.submit(candidate)
    finally:
        await provider.aclose()
    assert lost.value.billing == "at_risk"
    (job,) = fal_fake.jobs
    resumed = FalProvider(fal_upscales)
    try:
        result = await resumed.wait(job.id, candidate, None, timeout_s=20)
    finally:
        await resumed.aclose()
    assert result.compute_seconds == fal_fake.reported_inference_time(job.id) == 0.011  # 0.0324 MP x 0.35 s/MP
    assert fal_fake.faults.fired == {"drop:submit:after": 1} and fal_fake.request_counts["submit"] == 1


async def test_a_webhook_submission_reports_compute_seconds_too(
    fal_upscales: Settings, fal_fake: FalFake, webhook_receiver: WebhookReceiver
) -> None:
    params = bodies(png_uri(50, 40))["fal-ai/aura-sr"]
    job_id, result = await run(
        fal_upscales, upscale("fal-ai/aura-sr", params, 200, 160), webhook_url=webhook_receiver.url
    )
    assert (await webhook_receiver.wait_for(1, timeout=10)).json()["payload"]["image"]["width"] == 200
    assert result.compute_seconds == fal_fake.reported_inference_time(job_id)
    assert fal_fake.billed == Decimal("0.01")  # aura-sr: the fake's own price (fal publishes none)
