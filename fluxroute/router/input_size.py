"""Reading an input image's pixel size (its header only) before planning offers whose output follows it."""

from __future__ import annotations

import contextlib

import httpx

from fluxroute.errors import UnsafeURL
from fluxroute.providers.downloads import read_bounded
from fluxroute.providers.image_header import data_uri_image, declared_size, within_pixel_cap
from fluxroute.providers.url_guard import AddressPolicy, guarded_client
from fluxroute.router.input_images import refusal
from fluxroute.settings import Settings

__all__ = ["HEADER_BUDGET", "probe_input_size"]

# enough for the size of nearly every image: PNG and WebP say it in their first 30 bytes; a JPEG's EXIF, ICC
# profile and thumbnail come before its frame header, and rarely pass 64 KiB together
HEADER_BUDGET = 64 * 1024
PROBE_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


async def probe_input_size(url: str, settings: Settings, *, field: str = "init_image") -> tuple[int, int]:
    """The (width, height) in pixels of the caller's input image `url`, reading as little of it as the size
    needs. A data: URI is decoded here (at most `settings.max_input_image_bytes`). An http(s) URL is fetched
    through the address guard (public addresses only unless `settings.allow_private_urls`; every redirect
    checked): first its first HEADER_BUDGET bytes (a Range request; a server that ignores Range is cut off at
    that many bytes), then, only when those do not hold the size, the whole image up to
    `settings.max_input_image_bytes`. The size is taken from the header; no pixel is decoded.

    Raises:
        InvalidRequest: one FieldError naming `field`, the value and why: the URL, a redirect or an address is
            refused; the image is larger than `max_input_image_bytes` or declares more than `max_image_pixels`;
            it cannot be fetched (connection failure, HTTP error) or read as an image.
    """
    try:
        if url.startswith("data:"):
            return _size_of(data_uri_image(url, settings.max_input_image_bytes), url, settings, field)
        async with guarded_client(AddressPolicy.for_inputs(settings), timeout=PROBE_TIMEOUT) as client:
            head: bytes | None = None
            # UnsafeURL here: a server that ignored Range and sent more, or a refusal the full fetch below repeats
            with contextlib.suppress(UnsafeURL):
                head = await read_bounded(client, url, HEADER_BUDGET, headers={"Range": f"bytes=0-{HEADER_BUDGET - 1}"})
            if head is not None:
                size = declared_size(head)
                if size is not None:
                    return within_pixel_cap(size, settings.max_image_pixels)
                if len(head) < HEADER_BUDGET:  # that was the whole file, and it is no image
                    return _size_of(head, url, settings, field)
            whole = await read_bounded(client, url, settings.max_input_image_bytes)
            return _size_of(whole, url, settings, field)
    except UnsafeURL as exc:
        raise refusal(field, url, str(exc)) from None
    except httpx.HTTPStatusError as exc:
        raise refusal(field, url, f"fetching it answered HTTP {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise refusal(field, url, f"it could not be fetched ({type(exc).__name__})") from None


def _size_of(data: bytes, url: str, settings: Settings, field: str) -> tuple[int, int]:
    size = declared_size(data)
    if size is None:
        raise refusal(field, url, f"it is not an image that can be read ({len(data)} bytes)")
    return within_pixel_cap(size, settings.max_image_pixels)
