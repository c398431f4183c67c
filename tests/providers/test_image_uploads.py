"""How a stored image reaches each provider (fluxroute/providers/image_inputs.py), through Router.generate and the
fakes: Krea gets an asset uploaded with POST /assets, fal a small image inline and a large one through its storage
upload; an upload that fails stops before the generation POST, unbilled and not sent again blindly."""

from __future__ import annotations

import base64
import io
import os
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import AllProvidersFailed, ProviderError
from fluxroute.providers.image_inputs import FAL_INLINE_MAX_BYTES
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

PROMPT = "the same lighthouse at night"


def noise_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: it does not compress, so its size in bytes is about 3 x width x height."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, AllProvidersFailed):
        return "\n".join(str(f) for f in exc.failures)
    return str(exc)


async def first_result(router: Router, provider: str) -> tuple[str, bytes]:
    """An earlier generation through the fake: its job id and the bytes of its saved image."""
    result = await router.generate(ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": provider}))
    return result.job_id, Path(str(result.images[0].path)).read_bytes()


def nothing_at_risk(router: Router) -> None:
    assert router.store.at_risk() == []
    assert router.store.spend_summary().reserved_today == 0


async def test_krea_gets_a_stored_image_as_an_uploaded_asset(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    router = Router(hosted_settings)
    try:
        job_id, saved = await first_result(router, "krea")
        result = await router.generate(
            ImageRequest.parse({"prompt": PROMPT, "provider": "krea", "init_image": f"job:{job_id}/0", "strength": 0.6})
        )
    finally:
        await router.aclose()
    [asset] = krea_fake.assets.values()
    assert asset["size_bytes"] == len(saved) and asset["mime_type"] == "image/png"
    assert krea_fake.files.get(asset["image_url"].rpartition("/")[2]) == (saved, "image/png")  # our file, unchanged
    _, second = krea_fake.jobs
    assert second.input["image_url"] == asset["image_url"] and second.input["strength"] == 0.6
    assert krea_fake.request_counts["upload_asset"] == 1 and krea_fake.request_counts["create"] == 2
    assert result.provider == "krea"
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.014")  # the upload was not billed
    nothing_at_risk(router)


async def test_fal_gets_a_small_stored_image_inline(hosted_settings: Settings, fal_fake: FalFake) -> None:
    router = Router(hosted_settings)
    try:
        job_id, saved = await first_result(router, "fal")
        assert len(saved) <= FAL_INLINE_MAX_BYTES
        await router.generate(
            ImageRequest.parse({"prompt": PROMPT, "provider": "fal", "init_image": f"job:{job_id}/0", "strength": 0.6})
        )
    finally:
        await router.aclose()
    sent = fal_fake.jobs[-1].input["image_url"]
    assert sent.startswith("data:image/") and base64.b64decode(sent.partition(",")[2]) == saved
    assert fal_fake.request_counts["upload_token"] == 0 and fal_fake.request_counts["upload"] == 0
    assert router.store.total_charged() == fal_fake.billed > 0
    nothing_at_risk(router)


async def test_fal_gets_a_large_image_through_its_storage_upload(hosted_settings: Settings, fal_fake: FalFake) -> None:
    data = noise_png(640, 640)
    assert len(data) > FAL_INLINE_MAX_BYTES
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    router = Router(hosted_settings)
    try:
        await router.generate(
            ImageRequest.parse({"prompt": PROMPT, "provider": "fal", "init_image": uri, "strength": 0.6})
        )
    finally:
        await router.aclose()
    sent = fal_fake.jobs[-1].input["image_url"]
    assert sent.startswith(fal_fake.base_url + "/files/")
    assert fal_fake.files.get(sent.rpartition("/")[2]) == (data, "image/png")
    assert fal_fake.request_counts["upload_token"] == 1 and fal_fake.request_counts["upload"] == 1
    assert fal_fake.jobs[-1].meta["size"] == (640, 640)  # the fake read the uploaded image
    assert router.store.total_charged() == fal_fake.billed > 0
    nothing_at_risk(router)


@pytest.mark.parametrize(
    ("arm", "fired", "says"),
    [
        (lambda f: f.faults.http_error(500, {"error": "storage down"}, route="upload_asset"), "http_error", "500"),
        (lambda f: f.faults.http_error(413, {"error": "too large"}, route="upload_asset"), "http_error", "413"),
        (lambda f: f.faults.garble(route="upload_asset", body=b'{"id": "'), "garble", "garbled answer"),
        (lambda f: f.faults.drop(route="upload_asset"), "drop", "not sent again"),
    ],
    ids=["500", "413", "garbled-json", "dropped"],
)
async def test_a_failed_krea_upload_stops_before_the_generation_unbilled(
    hosted_settings: Settings, krea_fake: KreaFake, arm: object, fired: str, says: str
) -> None:
    router = Router(hosted_settings)
    try:
        job_id, _ = await first_result(router, "krea")
        assert callable(arm)
        arm(krea_fake)
        with pytest.raises((AllProvidersFailed, ProviderError)) as failed:
            await router.generate(
                ImageRequest.parse(
                    {"prompt": PROMPT, "provider": "krea", "init_image": f"job:{job_id}/0", "strength": 0.6}
                )
            )
    finally:
        await router.aclose()
    text = failure_text(failed.value)
    assert "uploading the input image (Krea POST /assets) failed" in text and says in text
    # the fault fired once, on the one upload request: none of these is sent again
    assert krea_fake.faults.fired == {f"{fired}:upload_asset": 1}
    assert krea_fake.request_counts["upload_asset"] == 1
    assert krea_fake.request_counts["create"] == 1 and len(krea_fake.jobs) == 1  # only the first generation
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.007")
    nothing_at_risk(router)


async def test_a_krea_upload_refused_with_429_is_sent_again_after_retry_after(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    router = Router(hosted_settings)
    try:
        job_id, _ = await first_result(router, "krea")
        krea_fake.faults.http_error(429, {"error": "slow down"}, {"Retry-After": "0"}, route="upload_asset")
        await router.generate(
            ImageRequest.parse({"prompt": PROMPT, "provider": "krea", "init_image": f"job:{job_id}/0", "strength": 0.6})
        )
    finally:
        await router.aclose()
    assert krea_fake.faults.fired == {"http_error:upload_asset": 1}
    assert krea_fake.request_counts["upload_asset"] == 2 and len(krea_fake.assets) == 1
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.014")


async def test_a_failed_fal_storage_upload_stops_before_the_generation_unbilled(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    fal_fake.faults.http_error(500, {"detail": "storage down"}, route="upload")
    uri = "data:image/png;base64," + base64.b64encode(noise_png(640, 640)).decode()
    router = Router(hosted_settings)
    try:
        with pytest.raises((AllProvidersFailed, ProviderError)) as failed:
            await router.generate(
                ImageRequest.parse({"prompt": PROMPT, "provider": "fal", "init_image": uri, "strength": 0.6})
            )
    finally:
        await router.aclose()
    assert "uploading the input image (fal storage upload) failed" in failure_text(failed.value)
    # fal-client does not repeat a plain 500 (it repeats 408/409/429 and ingress errors), nor does fluxroute
    assert fal_fake.faults.fired == {"http_error:upload": 1} and fal_fake.request_counts["upload"] == 1
    assert fal_fake.request_counts["submit"] == 0 and fal_fake.jobs == []
    assert router.store.total_charged() == 0 and fal_fake.billed == 0
    nothing_at_risk(router)


async def test_one_stored_image_used_twice_is_uploaded_to_krea_once(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    router = Router(hosted_settings)
    try:
        job_id, _ = await first_result(router, "krea")
        reference = f"job:{job_id}/0"
        await router.generate(
            ImageRequest.parse(
                {
                    "prompt": PROMPT,
                    "provider": "krea",
                    "init_image": reference,
                    "strength": 0.6,
                    "style_references": [{"url": reference, "strength": 0.5}],
                }
            )
        )
    finally:
        await router.aclose()
    [asset] = krea_fake.assets.values()
    sent = krea_fake.jobs[-1].input
    assert sent["image_url"] == asset["image_url"] == sent["image_style_references"][0]["url"]
    assert krea_fake.request_counts["upload_asset"] == 1
