"""Pixel bombs: a few KB of PNG declaring a huge size. Results are refused by their declared size before any
pixel is decoded (a typed, charged failure; the job settles); inputs are refused with the field named."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import InvalidRequest, JobFailed
from fluxroute.providers.downloads import DECODE_ATTEMPTS
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.images import bomb_png
from tests.fakes.krea import KreaFake

PROMPT = "a lighthouse at dusk"
MB = 1024 * 1024


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), flags=re.MULTILINE)
    assert match is not None
    return int(match[1]) * 1024


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """How far this process's peak resident memory rose above where it stood at the start of the block:
    the kernel's peak is reset first (Linux: /proc/self/clear_refs), so no earlier peak can hide a rise."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident memory")
    before, grown = _status("VmRSS"), []
    yield grown
    grown.append(_status("VmHWM") - before)


@pytest.mark.parametrize("provider", ["krea", "fal"])
async def test_a_result_declaring_144_megapixels_fails_typed_and_the_job_settles(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, provider: str
) -> None:
    bomb = bomb_png(12000, 12000)  # 17.5 KB
    fake = krea_fake if provider == "krea" else fal_fake
    fake.faults.garble(route="download", body=bomb, times=DECODE_ATTEMPTS)  # the CDN would answer it each time
    router = Router(hosted_settings)
    try:
        with peak_growth() as grown, pytest.raises(JobFailed, match=r"declares 12000x12000 pixels, more than") as info:
            await router.generate(ImageRequest(prompt=PROMPT, model="flux-dev", provider=provider))  # type: ignore[arg-type]
    finally:
        await router.aclose()
    print(f"{provider}: {len(bomb)} byte PNG declaring 144 MP as the result; peak memory +{grown[0] / MB:.1f} MB")

    assert info.value.billing == "charged"
    assert fake.request_counts["download"] == 1  # what an image declares, it declares every time: not read again
    [job] = router.store.list_jobs()
    assert job.status == "failed"  # settled, not left running
    assert all(a.status == "failed" for a in router.store.attempts_for(job.id))
    assert router.store.total_charged() == fake.billed > 0
    assert router.store.spend_summary().reserved_today == Decimal(0)
    assert grown[0] < 100 * MB  # a decode takes 144 MB at least (one byte per pixel)


# Measured in a fresh process: inside a test session, memory that Pillow and the allocator already hold from
# earlier tests hides most of a decode's rise (a 144 MB decode once showed as +16 MB), so neither a refusal's
# "little memory" nor the control would mean anything there.
_MEASURE = """
import io, json, sys, warnings
from PIL import Image
from fluxroute.errors import JobFailed
from fluxroute.providers.downloads import decode_image
from tests.fakes.images import bomb_png
from tests.security.test_pixel_bombs import peak_growth

bomb = bomb_png(12000, 12000)
found = {}
with peak_growth() as refused:
    try:
        decode_image(bomb, "https://cdn.example/bomb.png", provider="fal", max_pixels=25_000_000)
    except JobFailed as exc:
        found["refusal"] = str(exc)
with peak_growth() as accepted, warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    image = decode_image(bomb, "https://cdn.example/bomb.png", provider="fal", max_pixels=10**9)
with peak_growth() as decoded, warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with Image.open(io.BytesIO(bomb)) as whole:
        whole.load()
found |= {"bytes": len(bomb), "size": [image.width, image.height]}
found |= {"refused": refused[0], "accepted": accepted[0], "decoded": decoded[0]}
print(json.dumps(found))
"""


def test_decoding_a_pixel_bomb_is_refused_in_little_memory() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident memory")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _MEASURE], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"{found['bytes']} byte PNG declaring 12000x12000: refused with peak memory +{found['refused'] / MB:.1f} MB; "
        f"accepted without the cap: +{found['accepted'] / MB:.1f} MB; "
        f"decoded by Pillow: +{found['decoded'] / MB:.1f} MB"
    )
    assert "declares 12000x12000 pixels" in found["refusal"]
    # with the cap lifted the same bytes are accepted, still in little memory: they are checked, not decoded
    assert found["refused"] < 16 * MB and found["accepted"] < 16 * MB and found["size"] == [12000, 12000]
    # the control: the decode takes 144 MB (one byte a pixel), and the same measurement sees it
    assert found["decoded"] > 100 * MB


async def test_an_input_declaring_more_pixels_than_the_cap_is_refused_before_anything_is_sent(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    settings = hosted_settings.model_copy(update={"max_image_pixels": 1_000_000})
    uri = "data:image/png;base64," + base64.b64encode(bomb_png(2000, 1000)).decode()
    router = Router(settings)
    request = ImageRequest(prompt=PROMPT, provider="krea", init_image=uri, strength=0.5)
    with pytest.raises(InvalidRequest, match=r"init_image: .*declares 2000x1000 pixels, more than max_image_pixels"):
        await router.generate(request)
    assert sum(krea_fake.request_counts.values()) == sum(fal_fake.request_counts.values()) == 0
    assert router.store.list_jobs() == []


def test_the_pixel_cap_leaves_room_over_every_output_in_the_catalog() -> None:
    """Every generation offer's largest output fits four times under the cap; upscalers reach past it by design and
    are refused by the planner, before anything is paid, where their output would be more than the cap
    (tests/router/test_upscale_routing.py)."""
    settings = Settings()
    largest = 0
    for offer in Router(settings).catalog.offers:
        if offer.upscale is not None:
            continue
        size = offer.size
        sides = size.max_side * size.max_side
        areas = [w * h for w, h in size.aspect_sizes.values()]
        if size.max_megapixels is not None:
            areas.append(min(sides, int(size.max_megapixels * 1_000_000)))
        elif size.custom or size.presets:
            areas.append(sides)
        largest = max([largest, *areas])
    assert largest == 2368 * 2368  # Krea's FLUX.1 [dev]: the largest output today
    assert settings.max_image_pixels >= 4 * largest
