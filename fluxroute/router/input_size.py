"""Reading an input image's pixel size (its header only) before planning offers whose output follows it."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image

from fluxroute.errors import FieldError, InvalidRequest, UnsafeURL
from fluxroute.providers.downloads import fetch_input_image
from fluxroute.settings import Settings

__all__ = ["HEADER_BUDGET", "probe_input_size"]

# enough for the size of nearly every image: PNG and WebP say it in their first 30 bytes; a JPEG's EXIF, ICC
# profile and thumbnail come before its frame header, and rarely pass 64 KiB together
HEADER_BUDGET = 64 * 1024
PROBE_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
ALLOWED = "an http(s) URL or data:image/... URI of a readable PNG, JPEG or WebP image"


async def probe_input_size(url: str, settings: Settings, *, field: str = "init_image") -> tuple[int, int]:
    """The (width, height) in pixels of the caller's input image `url`, reading as little of it as the size
    needs. A data: URI is decoded here (at most `settings.max_input_image_bytes`). An http(s) URL goes through
    the guarded `fetch_input_image` (public addresses only unless `settings.allow_private_urls`): first its
    first HEADER_BUDGET bytes (a Range request; a server that ignores Range is cut off at that many bytes),
    then, only when those do not hold the size, the whole image up to `settings.max_input_image_bytes`.

    Raises:
        InvalidRequest: the image cannot be fetched (connection failure, HTTP error) or read as an image; one
            FieldError naming `field`, the value and what is allowed.
        UnsafeURL: the URL (or a redirect) is refused (non-public address, too many redirects), or the image
            is larger than `settings.max_input_image_bytes`; the message names `field`.
    """
    try:
        if url.startswith("data:"):
            return _size_of(_decode_data_uri(url, settings.max_input_image_bytes, field), url, field)
        head: bytes | None = None
        # UnsafeURL here: a server that ignored Range and sent more, or a refusal the full fetch below repeats
        with contextlib.suppress(UnsafeURL):
            head = await _fetch(url, HEADER_BUDGET, settings, field, {"Range": f"bytes=0-{HEADER_BUDGET - 1}"})
        if head is not None:
            size = _header_size(head)
            if size is not None:
                return size
            if len(head) < HEADER_BUDGET:  # that was the whole file, and it is no image
                return _size_of(head, url, field)
        return _size_of(await _fetch(url, settings.max_input_image_bytes, settings, field, {}), url, field)
    except UnsafeURL as exc:
        raise UnsafeURL(f"{field}: {exc}") from None


async def _fetch(url: str, max_bytes: int, settings: Settings, field: str, headers: dict[str, str]) -> bytes:
    """fetch_input_image with these request headers; transport and HTTP failures as the field's error."""
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, headers=headers) as client:
            return await fetch_input_image(client, url, max_bytes=max_bytes, allow_private=settings.allow_private_urls)
    except httpx.HTTPStatusError as exc:
        raise _invalid(url, f"fetching it answered HTTP {exc.response.status_code}; need {ALLOWED}", field) from None
    except httpx.HTTPError as exc:
        raise _invalid(url, f"could not be fetched ({type(exc).__name__}); need {ALLOWED}", field) from None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The size an image's first bytes declare, or None when they hold none (or are no image)."""
    size = _png_or_webp_size(data)
    if size is None:
        try:
            with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header, decodes no pixels
                size = image.size
        except Exception:  # Pillow raises many kinds on truncated or foreign bytes
            return None
    return size if size[0] > 0 and size[1] > 0 else None


def _png_or_webp_size(data: bytes) -> tuple[int, int] | None:
    """PNG's IHDR and WebP's frame header, read directly: Pillow wants the chunks after PNG's IHDR (which a
    large text or ICC chunk can push past the header budget) and the whole file for WebP."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _size_of(data: bytes, url: str, field: str) -> tuple[int, int]:
    size = _header_size(data)
    if size is None:
        raise _invalid(url, f"is not an image that can be read ({len(data)} bytes); need {ALLOWED}", field)
    return size


def _decode_data_uri(uri: str, max_bytes: int, field: str) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma:
        raise _invalid(uri, f"a data: URI needs ',' before its data; need {ALLOWED}", field)
    if header.endswith(";base64"):
        if len(payload) // 4 * 3 > max_bytes + 3:  # refused before decoding anything
            raise UnsafeURL(f"data: URI larger than the {max_bytes} byte limit")
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            raise _invalid(uri, f"its base64 data does not decode; need {ALLOWED}", field) from None
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise UnsafeURL(f"data: URI larger than the {max_bytes} byte limit")
    return data


def _invalid(value: str, allowed: str, field: str) -> InvalidRequest:
    return InvalidRequest([FieldError(field, value, allowed)])
