"""Caller-supplied image URLs: http(s) to public addresses only (unless allowed), size-capped."""

from __future__ import annotations

import httpx
import pytest

from fluxroute.errors import UnsafeURL
from fluxroute.providers.downloads import check_input_url, fetch_input_image
from fluxroute.providers.krea import KreaProvider
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "http://127.0.0.1/a.png",
        "http://localhost:8080/a.png",
        "http://10.0.0.5/a.png",
        "http://192.168.1.1/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
    ],
)
def test_non_public_or_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_input_url(url)


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
    async with httpx.AsyncClient() as client:
        with pytest.raises(UnsafeURL, match="non-public address"):
            await fetch_input_image(client, url, max_bytes=10_000_000)
        data = await fetch_input_image(client, url, max_bytes=10_000_000, allow_private=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(UnsafeURL, match="byte limit"):
            await fetch_input_image(client, url, max_bytes=100, allow_private=True)
