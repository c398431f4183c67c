"""KreaProvider on Krea's enhance (upscale) endpoints, against the Krea fake: the path each body is posted to,
the input image uploaded first, the output size, and faults after acceptance handled as for image jobs."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from typing import Any

import pytest
from PIL import Image

from fluxroute.errors import JobFailed, ProviderBadRequest, ProviderUnavailable
from fluxroute.providers.krea import KreaProvider, generation_path
from fluxroute.settings import Settings
from fluxroute.types import Candidate
from tests.fakes.krea import KreaFake

INPUT_SIZE = (320, 240)


def input_uri(width: int = INPUT_SIZE[0], height: int = INPUT_SIZE[1]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def enhance_candidate(endpoint: str, width: int = 1280, height: int = 960, **params: Any) -> Candidate:
    """A candidate as the router builds it for the catalog's enhance offers (the bodies of the catalog's
    contract): Topaz gets the output size, krea/enhance a scaling factor."""
    image = input_uri()
    bodies: dict[str, dict[str, Any]] = {
        "enhance/topaz/standard-enhance": {"model": "Standard V2", "output_format": "png"},
        "enhance/topaz/generative-enhance": {"model": "Redefine", "creativity": 3, "output_format": "png"},
        "enhance/topaz/bloom-enhance": {"model": "Reimagine", "creativity": 5, "output_format": "png"},
    }
    if endpoint == "enhance/krea/enhance":
        body: dict[str, Any] = {"image_url": image, "prompt": "crisp detail", "image_scaling_factor": 4.0}
        body["ai_strength"] = 0.4
    else:
        body = {"image_url": image, "width": width, "height": height, **bodies[endpoint]}
    return Candidate(
        offer_id=f"krea-{endpoint.replace('/', '-')}",
        label=f"Krea {endpoint}",
        provider="krea",
        model=endpoint.rpartition("/")[2],
        endpoint=endpoint,
        width=width,
        height=height,
        num_images=1,
        cost_usd=0.08,
        latency_s=1.0,
        license="krea-api",
        params={**body, **params},
    )


@pytest.fixture
def provider_settings(hosted_settings: Settings, krea_fake: KreaFake) -> Settings:
    krea_fake.image_scale = 1.0  # results at their true size: the output size is what is checked
    return hosted_settings


def test_endpoints_naming_their_category_are_posted_under_generate() -> None:
    assert generation_path("enhance/topaz/standard-enhance") == "/generate/enhance/topaz/standard-enhance"
    assert generation_path("enhance/krea/enhance") == "/generate/enhance/krea/enhance"
    assert generation_path("image/bfl/flux-1-dev") == "/generate/image/bfl/flux-1-dev"
    assert generation_path("bfl/flux-1-dev") == "/generate/image/bfl/flux-1-dev"
    assert generation_path("krea/krea-2/medium") == "/generate/image/krea/krea-2/medium"


def test_enhance_jobs_have_no_listing_type_so_a_lost_answer_is_never_adopted(provider_settings: Settings) -> None:
    provider = KreaProvider(provider_settings)
    for endpoint in (
        "enhance/topaz/standard-enhance",
        "enhance/topaz/generative-enhance",
        "enhance/topaz/bloom-enhance",
        "enhance/krea/enhance",
    ):
        assert provider.job_type(enhance_candidate(endpoint)) is None
    flux = enhance_candidate("enhance/topaz/standard-enhance").model_copy(update={"endpoint": "image/bfl/flux-1-dev"})
    assert provider.job_type(flux) == "flux"


@pytest.mark.parametrize(
    ("endpoint", "size", "price"),
    [
        ("enhance/topaz/standard-enhance", (1280, 960), "0.08"),
        ("enhance/topaz/generative-enhance", (1280, 960), "0.16"),
        ("enhance/topaz/bloom-enhance", (1280, 960), "0.16"),
        ("enhance/krea/enhance", (INPUT_SIZE[0] * 4, INPUT_SIZE[1] * 4), "0.05"),
    ],
)
async def test_each_enhance_body_is_uploaded_posted_and_its_output_downloaded(
    provider_settings: Settings, krea_fake: KreaFake, endpoint: str, size: tuple[int, int], price: str
) -> None:
    candidate = enhance_candidate(endpoint)
    provider = KreaProvider(provider_settings)
    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    posts = [(record.route, record.path) for record in krea_fake.request_log if record.method == "POST"]
    assert posts == [("upload_asset", "/assets"), ("create", f"/generate/{endpoint}")]
    sent = krea_fake.job(job_id).input["image_url"]
    assert sent.startswith(f"{krea_fake.base_url}/files/asset-")  # the data: URI went to POST /assets first
    (image,) = result.images
    assert (image.width, image.height) == size and image.content_type == "image/png"
    assert krea_fake.charges == [(job_id, Decimal(price))]


async def test_an_enhance_result_over_max_image_pixels_is_refused_after_billing(
    provider_settings: Settings, krea_fake: KreaFake
) -> None:
    # 8000 x 8000 (64 MP) is well within Topaz's 32000 a side, but over the default 25 MP cap
    candidate = enhance_candidate("enhance/topaz/standard-enhance", width=8000, height=8000)
    provider = KreaProvider(provider_settings)
    try:
        job_id = await provider.submit(candidate)
        with pytest.raises(JobFailed, match="max_image_pixels") as info:
            await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert info.value.billing == "charged" and krea_fake.billed == Decimal("0.08")


@pytest.mark.parametrize("fault", ["http_error", "garble"])
async def test_a_5xx_or_garbled_answer_after_acceptance_leaves_the_job_at_risk(
    provider_settings: Settings, krea_fake: KreaFake, fault: str
) -> None:
    if fault == "http_error":
        krea_fake.faults.http_error(502, {"error": "Bad Gateway"}, route="create", after_accept=True)
    else:
        krea_fake.faults.garble(route="create", after_accept=True)
    candidate = enhance_candidate("enhance/topaz/generative-enhance")
    provider = KreaProvider(provider_settings)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await provider.submit(candidate)
    finally:
        await provider.aclose()
    # fired: only the one fault on the enhance POST, which Krea accepted (the job runs and is billed)
    assert krea_fake.faults.fired == {f"{fault}:create:after": 1}
    assert info.value.billing == "at_risk" and "may have been accepted" in str(info.value)
    assert krea_fake.request_counts["create"] == 1 and len(krea_fake.jobs) == 1  # never posted again


async def test_polls_and_the_download_survive_5xx_and_garbled_answers(
    provider_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.faults.http_error(503, {"error": "busy"}, route="get_job")
    krea_fake.faults.garble(route="get_job")
    krea_fake.faults.http_error(502, route="download")
    candidate = enhance_candidate("enhance/topaz/bloom-enhance", width=640, height=480)
    provider = KreaProvider(provider_settings)
    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    # fired: a 503 and a truncated JSON body on the status polls, a 502 on the result download; all retried
    assert krea_fake.faults.fired == {"http_error:get_job": 1, "garble:get_job": 1, "http_error:download": 1}
    assert (result.images[0].width, result.images[0].height) == (640, 480)
    assert krea_fake.charges == [(job_id, Decimal("0.16"))]


async def test_a_failed_krea_enhance_job_reports_its_error_object_unbilled(
    provider_settings: Settings, krea_fake: KreaFake
) -> None:
    krea_fake.faults.fail_job("upscaler ran out of memory", code="oom")
    candidate = enhance_candidate("enhance/krea/enhance")
    provider = KreaProvider(provider_settings)
    try:
        job_id = await provider.submit(candidate)
        with pytest.raises(JobFailed, match=r"upscaler ran out of memory \(oom\)") as info:
            await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    # fired: the job failure only (Krea's `error {code, message}`, with `result: null`)
    assert krea_fake.faults.fired == {"fail_job:create": 1}
    assert info.value.billing == "unbilled" and krea_fake.billed == 0


async def test_an_input_krea_cannot_read_is_a_clean_refusal(provider_settings: Settings, krea_fake: KreaFake) -> None:
    candidate = enhance_candidate("enhance/krea/enhance", image_url="https://example.com/photo.png")
    provider = KreaProvider(provider_settings)
    try:
        with pytest.raises(ProviderBadRequest, match="could not read image_url") as info:
            await provider.submit(candidate)
    finally:
        await provider.aclose()
    assert info.value.status_code == 422 and info.value.billing == "unbilled"
    assert krea_fake.jobs == []
