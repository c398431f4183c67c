"""The input images of a local edit (init image, inpainting mask), read as the hosted providers' inputs are checked.

By the time a call reaches the local provider, an earlier result (`job:<id>/<n>`) or a CLI file is a data: URI and
a caller's http(s) URL passed the URL guard (see providers/image_inputs.py). Here each becomes a decoded PIL
image, with the same bounds every input image gets: at most `max_input_image_bytes` (fetched through the address
guard for URLs), a PNG, JPEG or WebP whose header declares at most `max_image_pixels` (and Pillow's own limit)
before a single pixel is decoded. The init image becomes RGB (an alpha channel is dropped); the mask becomes
greyscale: white is repainted, black is kept (diffusers binarises it at 0.5).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from fluxroute.errors import JobFailed, UnsafeURL
from fluxroute.providers.downloads import read_bounded
from fluxroute.providers.image_header import DamagedImage, check_pillow_limit, header
from fluxroute.providers.url_guard import AddressPolicy, guarded_client
from fluxroute.settings import Settings

__all__ = ["IMAGE_PARAMS", "decode_input", "fetch_inputs", "read_inputs"]

# the wire parameters of providers/wire.py local_kwargs that hold input images, and the PIL mode each becomes
IMAGE_PARAMS = {"image": "RGB", "mask_image": "L"}
FETCH_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def _refused(field: str, why: str, provider: str) -> JobFailed:
    # the caller's input, not the machine: nothing ran, nothing is billed, and another backend would refuse it too
    return JobFailed(
        f"the {field} cannot be used: {why}; nothing was run", provider=provider, billing="unbilled", retryable=False
    )


async def fetch_inputs(params: dict[str, Any], settings: Settings, provider: str) -> dict[str, Any]:
    """`params` with every http(s) input image replaced by its bytes (at most `max_input_image_bytes`, through
    the address guard for inputs); data: URIs and other values are kept.

    Raises:
        JobFailed: billing "unbilled" — the URL is refused or cannot be fetched.
    """
    urls = {
        key: value for key in IMAGE_PARAMS if isinstance(value := params.get(key), str) and value.startswith("http")
    }
    if not urls:
        return params
    fetched = dict(params)
    async with guarded_client(AddressPolicy.for_inputs(settings), timeout=FETCH_TIMEOUT) as client:
        for key, url in urls.items():
            try:
                fetched[key] = await read_bounded(client, url, settings.max_input_image_bytes)
            except UnsafeURL as exc:
                raise _refused(key, str(exc), provider) from None
            except httpx.HTTPStatusError as exc:
                raise _refused(key, f"fetching it answered HTTP {exc.response.status_code}", provider) from None
            except httpx.HTTPError as exc:
                raise _refused(key, f"it could not be fetched ({type(exc).__name__})", provider) from None
    return fetched


def decode_input(value: str | bytes, mode: str, settings: Settings, *, field: str, provider: str) -> Image.Image:
    """A data: URI (or fetched bytes) as a decoded PIL image in `mode`, read only after its header passed the
    byte and pixel limits.

    Raises:
        JobFailed: billing "unbilled" — too large, not a PNG/JPEG/WebP, damaged, or over a pixel limit.
    """
    # the router's own checks of data: URIs (imported here: the router package imports the providers)
    from fluxroute.providers.image_header import data_uri_image, within_pixel_cap

    try:
        data = data_uri_image(value, settings.max_input_image_bytes) if isinstance(value, str) else value
        if len(data) > settings.max_input_image_bytes:
            raise UnsafeURL(
                f"it is larger than the {settings.max_input_image_bytes} byte limit (max_input_image_bytes)"
            )
        declared = header(data)
        if declared is None:
            raise UnsafeURL("it is not a PNG, JPEG or WebP image")
        within_pixel_cap((declared.width, declared.height), settings.max_image_pixels)
        check_pillow_limit(declared.width, declared.height)
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (declared.width, declared.height):
                raise DamagedImage(f"its header declares {declared.width}x{declared.height}, Pillow reads {image.size}")
            image.load()
            return image.convert(mode)
    except (UnsafeURL, DamagedImage) as exc:
        raise _refused(field, str(exc), provider) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused(field, f"it cannot be decoded ({type(exc).__name__}: {str(exc)[:120]})", provider) from None


def read_inputs(params: dict[str, Any], settings: Settings, provider: str) -> dict[str, Any]:
    """`params` (after fetch_inputs) with each input image decoded (see decode_input); blocking, call it off the
    event loop."""
    images = {
        key: decode_input(value, mode, settings, field=key, provider=provider)
        for key, mode in IMAGE_PARAMS.items()
        if isinstance(value := params.get(key), str | bytes)
    }
    return {**params, **images} if images else params
