"""Fetching image bytes: provider result URLs as given, caller-supplied URLs only to public http(s) hosts."""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx
from PIL import Image

from fluxroute.errors import JobFailed, ProviderError, ProviderUnavailable, RateLimited, UnsafeURL
from fluxroute.providers.base import ProviderImage
from fluxroute.providers.polling import Pace

# a result image larger than this is not an image we asked for (FLUX outputs are a few MB at most)
MAX_RESULT_BYTES = 64 * 1024 * 1024
_GONE = (403, 404, 410)
DECODE_ATTEMPTS = 3


def decode_image(data: bytes, url: str | None, *, provider: str, flagged: bool = False) -> ProviderImage:
    """A downloaded result as a ProviderImage.

    Raises:
        JobFailed: billing "charged" — the provider finished (and billed) the job, but what it returned is
            not an image PIL can read (truncated, garbled, a decompression bomb).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel: a truncated body is caught here, not when saving
            content_type = Image.MIME.get(image.format or "", "application/octet-stream")
            return ProviderImage(data, image.width, image.height, content_type, url=url, flagged=flagged)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        where = "a data: URI" if url is None else url
        raise JobFailed(
            f"the result image from {where} cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
            provider=provider,
            billing="charged",
        ) from None


async def download_image(
    client: httpx.AsyncClient, url: str, *, provider: str, pace: Pace, flagged: bool = False
) -> ProviderImage:
    """A result image from the provider's own URL (a data: URI too), read up to MAX_RESULT_BYTES.

    The job is finished and billed, so failures that may pass (5xx, 429, dropped connections) are retried
    until the job's deadline (`pace`). The client must not carry provider credentials: result URLs often
    live on a third-party CDN.

    Raises:
        JobFailed: billing "charged" — the result is gone (403/404/410: expired) or is not an image.
        ProviderTimeout: the download kept failing until the deadline (the result may still be fetchable).
    """
    if url.startswith("data:"):
        _, _, payload = url.partition(",")
        if len(payload) > MAX_RESULT_BYTES * 4 // 3 + 4:
            raise JobFailed("the result data: URI is larger than an image can be", provider=provider, billing="charged")
        try:
            data = base64.b64decode(payload, validate=False)
        except ValueError as exc:
            raise JobFailed(
                f"the result data: URI is not base64 ({exc})", provider=provider, billing="charged"
            ) from None
        return decode_image(data, None, provider=provider, flagged=flagged)
    undecodable = 0
    while True:
        try:
            data = await _read_bounded(client, url, provider)
            image = decode_image(data, url, provider=provider, flagged=flagged)
        except JobFailed as exc:
            # a truncated or garbled body can be the CDN's fault this once: read it again, a few times
            undecodable += 1
            if undecodable >= DECODE_ATTEMPTS:
                raise
            await pace.retry(f"downloading {url}", exc)
            continue
        except ProviderError as exc:
            if exc.status_code in _GONE:
                raise JobFailed(
                    f"the result at {url} is gone (HTTP {exc.status_code}); the provider billed the job",
                    provider=provider,
                    status_code=exc.status_code,
                    billing="charged",
                ) from None
            await pace.retry(f"downloading {url}", exc)
            continue
        pace.recovered()
        return image


async def _read_bounded(client: httpx.AsyncClient, url: str, provider: str) -> bytes:
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.is_error:
                kind = RateLimited if response.status_code == 429 else ProviderUnavailable
                raise kind(
                    f"downloading {url}: HTTP {response.status_code}",
                    provider=provider,
                    status_code=response.status_code,
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESULT_BYTES:
                    raise JobFailed(
                        f"the result at {url} is larger than {MAX_RESULT_BYTES} bytes",
                        provider=provider,
                        billing="charged",
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"downloading {url}: {type(exc).__name__}", provider=provider) from exc


def check_input_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse caller-supplied URLs that are not http(s) or that resolve to loopback/private/link-local space.

    Raises:
        UnsafeURL: naming the URL and the rule it breaks.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"{url!r}: only http(s) URLs with a host are allowed")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeURL(f"{url!r}: host does not resolve ({exc.strerror})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeURL(
                f"{url!r}: resolves to {address}, a non-public address; set allow_private_urls = true to allow it"
            )


async def fetch_input_image(
    client: httpx.AsyncClient, url: str, *, max_bytes: int, allow_private: bool = False
) -> bytes:
    """Bytes of a caller-supplied image URL, streamed with a size cap; redirects are checked too.

    Raises:
        UnsafeURL: bad scheme, non-public address, or larger than `max_bytes`.
    """
    for _ in range(5):
        check_input_url(url, allow_private=allow_private)
        async with client.stream("GET", url, follow_redirects=False) as response:
            if response.is_redirect:
                url = str(response.next_request.url) if response.next_request else ""
                continue
            response.raise_for_status()
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UnsafeURL(f"{url!r}: larger than the {max_bytes} byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
    raise UnsafeURL(f"{url!r}: too many redirects")
