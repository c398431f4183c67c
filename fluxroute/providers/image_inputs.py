"""How an image input reaches the chosen provider, decided here once for every tool that takes one.

By the time a call is submitted, every stored image (an earlier result, `job:<job_id>/<n>`) and every local file
(CLI) is a data: URI read from fluxroute's own saved file — never a provider's result URL, which expires (fal keeps
results 1 h, or 6 min when ≥ 10 KB). What then goes on the wire:

- Krea: the image is uploaded with `POST /assets` (multipart `file`; JPEG, PNG or WebP; at most 75 MB) on the
  user's key, and the request carries the asset's `image_url` (Krea's image fields take URLs);
- fal: a data: URI of at most `FAL_INLINE_MAX_BYTES` is sent inline; a larger one goes to fal's storage (the
  upload protocol fal-client uses, on the configured REST and CDN hosts), and the request carries the returned URL;
- local: the provider decodes the data: URI (or fetches the URL through the guard) itself, within the input caps
  (providers/local_inputs.py);
- http(s) URLs the caller gave pass through unchanged everywhere (they were checked by the URL guard).

Uploads are not billed. One that fails is a clean failure before the generation POST: nothing was submitted, so
its error carries billing "unbilled". fluxroute never sends an upload again after its request may have arrived;
it repeats one only when the answer proves nothing was stored (no connection was made, or a 429 refusal).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from fluxroute.errors import ProviderError, ProviderUnavailable
from fluxroute.providers.submission import SUBMIT_ATTEMPTS, read_json, retry_after

__all__ = [
    "FAL_INLINE_MAX_BYTES",
    "IMAGE_FIELDS",
    "KREA_ASSET_MAX_BYTES",
    "KREA_ASSET_TYPES",
    "InputImage",
    "decode",
    "place_images",
    "post_upload",
    "upload_failed",
]

# keys of a wire body whose string values are input images (`image_url`; the `url` of style references)
IMAGE_FIELDS = frozenset({"image_url", "mask_url", "url"})
# fal documents no size limit for data: URIs ("some models also accept data URIs ... URLs are the universal
# format"), so inline ones are kept small: 1 MiB of image bytes (about 1.4 MB of base64 in the JSON body)
FAL_INLINE_MAX_BYTES = 1024 * 1024
# Krea's `POST /assets`: "JPEG, PNG, WebP, ... Maximum size: 75MB" (the image types fluxroute sends)
KREA_ASSET_MAX_BYTES = 75 * 1000 * 1000
KREA_ASSET_TYPES = ("image/jpeg", "image/png", "image/webp")


class InputImage:
    """One data: URI input image, decoded: its bytes, media type and a file name for the upload."""

    def __init__(self, data: bytes, media_type: str) -> None:
        self.data = data
        self.media_type = media_type
        self.file_name = "input." + {"image/jpeg": "jpg"}.get(media_type, media_type.rpartition("/")[2])


def decode(uri: str, provider: str) -> InputImage:
    """The image in a `data:<type>;base64,...` URI (already checked by the router when the request came in).

    Raises:
        ProviderUnavailable: billing "unbilled" — it is not a base64 image data: URI.
    """
    header, _, payload = uri.partition(",")
    media_type, _, encoding = header.removeprefix("data:").lower().partition(";")
    try:
        if encoding != "base64" or not media_type.startswith("image/"):
            raise ValueError(header[:40])
        return InputImage(base64.b64decode(payload, validate=True), media_type)
    except (binascii.Error, ValueError):
        raise ProviderUnavailable(
            "an input image is not a base64 image data: URI; nothing was submitted",
            provider=provider,
            billing="unbilled",
        ) from None


async def place_images(params: dict[str, Any], place: Callable[[str], Awaitable[str]]) -> dict[str, Any]:
    """A copy of the wire body `params` with each data: URI input image replaced by what `place` makes of it
    (each distinct image placed once, in order); http(s) URLs and every other value are kept as they are."""
    placed: dict[str, str] = {}

    async def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: await walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [await walk(item, key) for item in value]
        if key in IMAGE_FIELDS and isinstance(value, str) and value.startswith("data:"):
            if value not in placed:
                placed[value] = await place(value)
            return placed[value]
        return value

    result = await walk(params, None)
    assert isinstance(result, dict)
    return result


def upload_failed(provider: str, what: str, cause: str, *, status_code: int | None = None) -> ProviderError:
    """An input image upload that failed: a clean failure before the generation POST, so unbilled."""
    error = ProviderUnavailable(
        f"uploading the input image ({what}) failed: {cause}; the generation was not submitted, nothing was charged",
        provider=provider,
        status_code=status_code,
        billing="unbilled",
    )
    return error


async def post_upload(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    what: str,
    map_error: Callable[[httpx.Response], ProviderError],
    **kwargs: Any,
) -> dict[str, Any]:
    """The JSON answer to an upload POST. It is sent again only when the answer proves nothing was stored: the
    connection was never made, or a 429 refused it (after its Retry-After). A dropped connection, a timeout
    or a 5xx after the body left is not repeated blindly: the upload fails.

    Raises:
        ProviderError: billing "unbilled", naming the upload (`what`); the generation was not submitted.
    """
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        last = attempt == SUBMIT_ATTEMPTS
        try:
            response = await client.post(url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if last:
                raise upload_failed(provider, what, f"cannot connect ({type(exc).__name__})") from exc
            await asyncio.sleep(0.2 * attempt)
            continue
        except httpx.TransportError as exc:
            raise upload_failed(provider, what, f"no answer ({type(exc).__name__}); not sent again") from exc
        if response.status_code == 429 and not last:
            await asyncio.sleep(retry_after(response) or 0.5 * attempt)
            continue
        if response.is_error:
            error = map_error(response)
            cause = str(error).removeprefix(f"{provider}: ")
            failed = upload_failed(provider, what, cause, status_code=response.status_code)
            failed.retryable = error.retryable
            raise failed
        try:
            return read_json(response, provider)
        except ProviderError as exc:
            raise upload_failed(provider, what, str(exc).removeprefix(f"{provider}: ")) from None
    raise AssertionError("unreachable")
