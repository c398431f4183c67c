"""Image fetches through the address guard: URL forms, public addresses (or trusted hosts), byte and pixel caps."""

from __future__ import annotations

import io
import warnings

import httpx
import pytest
from PIL import Image

from fluxroute.errors import JobFailed, UnsafeURL
from fluxroute.providers.downloads import decode_image, read_bounded
from fluxroute.providers.krea import KreaProvider
from fluxroute.providers.url_guard import AddressPolicy, check_url, guarded_client, url_problem
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.images import bomb_png
from tests.fakes.krea import KreaFake

TIMEOUT = httpx.Timeout(10.0)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http(s)"),
        ("ftp://example.com/a.png", "only http(s)"),
        ("javascript:alert(1)", "only http(s)"),
        ("http://", "has no host"),
        ("https://user:pass@example.com/a.png", "credentials"),
        ("https://token@example.com/a.png", "credentials"),
        ("http://example.com\\@127.0.0.1/a.png", "backslash"),
        ("http://example.com/a b.png", "whitespace"),
        ("http://example.com:99999/a.png", "not a well-formed URL"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused_by_their_form(url: str, why: str) -> None:
    problem = url_problem(url)
    assert problem is not None and why in problem


def test_a_plain_https_url_has_no_problem() -> None:
    assert url_problem("https://v3.fal.media/files/a.png?x=1") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://localhost:8080/a.png",
        "http://10.0.0.5/a.png",
        "http://192.168.1.1/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://0x7f000001/a.png",
    ],
)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        await check_url(url, AddressPolicy())
    await check_url(url, AddressPolicy(allow_private=True))  # what allow_private_urls = true lets through


async def image_url_on(krea_fake: KreaFake, settings: Settings) -> str:
    """A real image served by the fake on 127.0.0.1 (the result of one generation)."""
    candidate = Router(settings).plan(ImageRequest(prompt="a cat", model="flux-dev", provider="krea")).chosen
    assert candidate is not None
    provider = KreaProvider(settings)
    try:
        job_id = await provider.submit(candidate)
        result = await provider.wait(job_id, candidate, None, timeout_s=10)
    finally:
        await provider.aclose()
    assert result.images[0].url is not None and result.images[0].url.startswith(krea_fake.base_url)
    return result.images[0].url


async def test_loopback_fetch_is_refused_by_default_and_allowed_by_config(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    downloads_before = krea_fake.request_counts["download"]
    async with guarded_client(AddressPolicy(), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeURL, match="non-public address"):
            await read_bounded(client, url, 10_000_000)
    assert krea_fake.request_counts["download"] == downloads_before  # refused before connecting
    async with guarded_client(AddressPolicy(allow_private=True), timeout=TIMEOUT) as client:
        data = await read_bounded(client, url, 10_000_000)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(UnsafeURL, match="byte limit"):
            await read_bounded(client, url, 100)


async def test_a_trusted_host_is_that_host_and_port_only(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    port = httpx.URL(url).port
    assert port is not None
    policy = AddressPolicy.for_results(hosted_settings)  # krea_base_url's host:port is trusted
    assert ("127.0.0.1", port) in policy.trusted
    async with guarded_client(policy, timeout=TIMEOUT) as client:
        assert (await read_bounded(client, url, 10_000_000))[:4] == b"\x89PNG"
        for other in (url.replace("127.0.0.1", "localhost"), url.replace(f":{port}", f":{port + 1}")):
            with pytest.raises(UnsafeURL, match="non-public address"):
                await read_bounded(client, other, 10_000_000)


async def test_redirects_from_a_trusted_host_are_checked_again(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    krea_fake.faults.redirect("http://169.254.169.254/latest/meta-data", route="download")
    async with guarded_client(AddressPolicy.for_results(hosted_settings), timeout=TIMEOUT) as client:
        with pytest.raises(
            UnsafeURL,
            match=r"redirected to http://169\.254\.169\.254/latest/meta-data: 169\.254\.169\.254 a non-public",
        ):
            await read_bounded(client, url, 10_000_000)


async def test_too_many_redirects_are_refused(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    url = await image_url_on(krea_fake, hosted_settings)
    krea_fake.faults.redirect(url, route="download", times=10)  # to itself, again and again
    async with guarded_client(AddressPolicy.for_results(hosted_settings), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeURL, match="more than 5 redirects"):
            await read_bounded(client, url, 10_000_000)


def test_an_image_declaring_more_pixels_than_the_cap_is_not_decoded() -> None:
    data = bomb_png(6000, 5000)  # 30 MP in a few KB
    with pytest.raises(JobFailed, match=r"declares 6000x5000 pixels, more than max_image_pixels") as info:
        decode_image(data, "https://cdn.example/r.png", provider="fal", max_pixels=25_000_000)
    assert info.value.billing == "charged"
    image = decode_image(data, "https://cdn.example/r.png", provider="fal", max_pixels=30_000_000)
    assert (image.width, image.height) == (6000, 5000)


def test_pillows_own_bomb_check_ends_in_the_typed_error() -> None:
    over_pillows_limit = bomb_png(10000, 9000)  # 90 MP: Pillow warns; where warnings are errors, it raises
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(JobFailed, match="DecompressionBombWarning"):
            decode_image(over_pillows_limit, None, provider="fal", max_pixels=10**9)
    with pytest.raises(JobFailed, match="DecompressionBombError"):  # over twice the limit it always raises
        decode_image(bomb_png(20000, 20000), None, provider="fal", max_pixels=10**9)


def test_an_image_within_the_cap_decodes() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 32), "red").save(out, "PNG")
    image = decode_image(out.getvalue(), None, provider="krea", max_pixels=64 * 32)
    assert (image.width, image.height, image.content_type) == (64, 32, "image/png")
