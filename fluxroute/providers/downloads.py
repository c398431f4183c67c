"""Fetching image bytes through the address guard: provider results, and the caller's input images."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from fluxroute.errors import JobFailed, ProviderError, ProviderUnavailable, RateLimited, UnsafeURL
from fluxroute.providers.base import ProviderImage
from fluxroute.providers.image_header import DamagedImage, check_pillow_limit, check_whole, header
from fluxroute.providers.polling import Pace
from fluxroute.providers.url_guard import AddressPolicy, guarded_client, url_problem, without_credentials
from fluxroute.settings import Settings

# a result image larger than this is not an image we asked for (FLUX outputs are a few MB at most); a larger
# max_image_pixels (upscales for print) raises it to what a PNG of that many pixels can take (result_byte_cap)
MAX_RESULT_BYTES = 64 * 1024 * 1024


def result_byte_cap(max_pixels: int) -> int:
    """The most bytes a result image may take: 64 MiB, or more where `max_pixels` allows larger images (4 bytes a
    pixel, RGBA uncompressed, and a MiB for the format's own bytes)."""
    return max(MAX_RESULT_BYTES, 4 * max_pixels + 1024 * 1024)


MAX_REDIRECTS = 5
_GONE = (403, 404, 410)
DECODE_ATTEMPTS = 3


def decode_image(
    data: bytes, url: str | None, *, provider: str, max_pixels: int, flagged: bool = False
) -> ProviderImage:
    """A downloaded result as a ProviderImage, once its bytes are known to be a whole image. The size its header
    declares is checked against `max_pixels` first: a few KB of PNG can declare hundreds of megapixels.

    PNG, JPEG and WebP are checked end to end without decoding a pixel (image_header.check_whole: every chunk
    and segment fits, PNG's CRC-32s hold, the end marker ends the body), which catches a truncated body and a
    corrupted PNG at a fraction of a decode's cost. Other formats are decoded whole by Pillow.

    Raises:
        JobFailed: billing "charged" — the provider finished (and billed) the job, but what it returned is
            not a whole image (truncated, garbled; retryable), or declares more than `max_pixels` pixels.
    """
    where = "a data: URI" if url is None else without_credentials(url)
    try:
        found = header(data)
        if found is None:
            return _decode_with_pillow(data, url, where, provider=provider, max_pixels=max_pixels, flagged=flagged)
        if found.width * found.height > max_pixels:
            raise _too_large(where, found.width, found.height, provider, max_pixels)
        check_pillow_limit(found.width, found.height)
        check_whole(data, found.kind)
    # Pillow's own bomb check (Image.MAX_IMAGE_PIXELS) raises the warning too where warnings are errors
    except (DamagedImage, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _unreadable(where, exc, provider) from None
    return ProviderImage(data, found.width, found.height, found.content_type, url=url, flagged=flagged)


def _decode_with_pillow(
    data: bytes, url: str | None, where: str, *, provider: str, max_pixels: int, flagged: bool
) -> ProviderImage:
    """A result in a format other than PNG, JPEG or WebP: Pillow reads its header, then decodes every pixel
    (a truncated body is caught here, not when saving)."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            if image.width * image.height > max_pixels:
                raise _too_large(where, image.width, image.height, provider, max_pixels)
            image.load()
            content_type = Image.MIME.get(image.format or "", "application/octet-stream")
            return ProviderImage(data, image.width, image.height, content_type, url=url, flagged=flagged)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _unreadable(where, exc, provider) from None


def _too_large(where: str, width: int, height: int, provider: str, max_pixels: int) -> JobFailed:
    return JobFailed(
        f"the result image from {where} declares {width}x{height} pixels, more than max_image_pixels "
        f"({max_pixels}); it was not decoded",
        provider=provider,
        billing="charged",
    )


def _unreadable(where: str, exc: Exception, provider: str) -> JobFailed:
    return JobFailed(
        f"the result image from {where} cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
        provider=provider,
        billing="charged",
        retryable=True,  # a truncated or garbled body may be the CDN's fault this once
    )


class ResultDownloads:
    """Result images from the URLs a provider answers with (data: URIs too), read up to result_byte_cap and
    checked whole (see decode_image) only when the size they declare is within `max_image_pixels`.

    Fetched through the address guard (see url_guard.GuardedNetwork): public addresses, or the providers'
    own hosts (`trusted_hosts`, and the hosts of `krea_base_url` and `fal_base_url`); every redirect hop is
    checked again, so a trusted host cannot redirect a download to a private address. The client carries
    no provider credentials: result URLs often live on a third-party CDN.
    """

    def __init__(self, settings: Settings, timeout: httpx.Timeout) -> None:
        self.max_pixels = settings.max_image_pixels
        self.max_bytes = result_byte_cap(settings.max_image_pixels)
        self._client = guarded_client(AddressPolicy.for_results(settings), timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def image(self, url: str, *, provider: str, pace: Pace, flagged: bool = False) -> ProviderImage:
        """The result image at `url`. The job is finished and billed, so failures that may pass (5xx, 429,
        dropped connections, a garbled body) are retried until the job's deadline (`pace`).

        Raises:
            JobFailed: billing "charged" — the result is gone (403/404/410: expired), refused (its URL or a
                redirect points where it may not, it is too large) or is not an image.
            ProviderTimeout: the download kept failing until the deadline (the result may still be fetchable).
        """
        if url.startswith("data:"):
            return self._decode_data_uri(url, provider, flagged)
        shown, undecodable = without_credentials(url), 0
        while True:
            try:
                data = await self._read(url, shown, provider)
            except JobFailed:
                raise
            except ProviderError as exc:
                if exc.status_code in _GONE:
                    raise JobFailed(
                        f"the result at {shown} is gone (HTTP {exc.status_code}); the provider billed the job",
                        provider=provider,
                        status_code=exc.status_code,
                        billing="charged",
                    ) from None
                await pace.retry(f"downloading {shown}", exc)
                continue
            try:
                image = decode_image(data, url, provider=provider, max_pixels=self.max_pixels, flagged=flagged)
            except JobFailed as exc:
                # a truncated or garbled body can be the CDN's fault this once: read it again, a few times
                # (an image declaring too many pixels declares them every time: not read again)
                undecodable += 1
                if not exc.retryable or undecodable >= DECODE_ATTEMPTS:
                    exc.retryable = False
                    raise
                await pace.retry(f"downloading {shown}", exc)
                continue
            pace.recovered()
            return image

    def _decode_data_uri(self, url: str, provider: str, flagged: bool) -> ProviderImage:
        _, _, payload = url.partition(",")
        if len(payload) > self.max_bytes * 4 // 3 + 4:
            raise JobFailed("the result data: URI is larger than an image can be", provider=provider, billing="charged")
        try:
            data = base64.b64decode(payload, validate=False)
        except ValueError as exc:
            raise JobFailed(
                f"the result data: URI is not base64 ({exc})", provider=provider, billing="charged"
            ) from None
        return decode_image(data, None, provider=provider, max_pixels=self.max_pixels, flagged=flagged)

    async def _read(self, url: str, shown: str, provider: str) -> bytes:
        try:
            return await read_bounded(self._client, url, self.max_bytes)
        except UnsafeURL as exc:
            raise JobFailed(
                f"the result at {shown} was not fetched: {exc}", provider=provider, billing="charged"
            ) from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            kind = RateLimited if status == 429 else ProviderUnavailable
            raise kind(f"downloading {shown}: HTTP {status}", provider=provider, status_code=status) from None
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"downloading {shown}: {type(exc).__name__}", provider=provider) from exc


async def read_bounded(
    client: httpx.AsyncClient, url: str, max_bytes: int, *, headers: dict[str, str] | None = None
) -> bytes:
    """The body of GET `url`, at most `max_bytes`, through a guarded client (see url_guard.guarded_client).
    Redirects are followed here, at most MAX_REDIRECTS, each hop's URL checked for its form; the client's
    guard checks each hop's address where its connection opens.

    Raises:
        UnsafeURL: a URL (the first or a redirect's) or an address is refused, there are too many redirects,
            or the body is larger than `max_bytes`; a redirect's URL is named (credentials masked).
        httpx.HTTPStatusError: the final answer is an HTTP error.
        httpx.TransportError: the connection failed or dropped.
    """
    hop = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            body = await _get_one(client, hop, max_bytes, headers)
        except UnsafeURL as exc:
            raise UnsafeURL(str(exc) if hop == url else f"redirected to {without_credentials(hop)}: {exc}") from None
        if isinstance(body, bytes):
            return body
        hop = body
    raise UnsafeURL(f"more than {MAX_REDIRECTS} redirects")


async def _get_one(client: httpx.AsyncClient, url: str, max_bytes: int, headers: dict[str, str] | None) -> bytes | str:
    """One GET: the body, or the URL a redirect points to."""
    problem = url_problem(url)
    if problem is not None:
        raise UnsafeURL(problem)
    async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
        if response.is_redirect:
            try:
                return str(response.url.join(response.headers["location"]))
            except httpx.InvalidURL:
                raise UnsafeURL("redirects to a URL that does not parse") from None
        response.raise_for_status()
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise UnsafeURL(f"larger than the {max_bytes} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
