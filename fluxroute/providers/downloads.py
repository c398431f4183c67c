"""Fetching image bytes: provider result URLs as given, caller-supplied URLs only to public http(s) hosts."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx
from PIL import Image

from fluxroute.errors import ProviderUnavailable, UnsafeURL
from fluxroute.providers.base import ProviderImage

DOWNLOAD_ATTEMPTS = 3


def _decode(data: bytes, url: str | None, flagged: bool = False) -> ProviderImage:
    with Image.open(io.BytesIO(data)) as image:
        content_type = Image.MIME.get(image.format or "", "application/octet-stream")
        return ProviderImage(data, image.width, image.height, content_type, url=url, flagged=flagged)


async def download_image(client: httpx.AsyncClient, url: str, *, provider: str, flagged: bool = False) -> ProviderImage:
    """A result image from the provider's own URL (a data: URI too). Retried: a GET cannot pay twice.

    The client must not carry provider credentials: result URLs often live on a third-party CDN.
    """
    if url.startswith("data:"):
        import base64

        _, _, payload = url.partition(",")
        return _decode(base64.b64decode(payload), None, flagged)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            response = await client.get(url, follow_redirects=True)
            if response.status_code < 500:
                response.raise_for_status()
                return _decode(response.content, url, flagged)
        except httpx.TransportError as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise ProviderUnavailable(f"downloading {url}: {type(exc).__name__}", provider=provider) from exc
        except httpx.HTTPStatusError as exc:
            raise ProviderUnavailable(f"downloading {url}: HTTP {exc.response.status_code}", provider=provider) from exc
        await asyncio.sleep(0.1 * attempt)
    raise ProviderUnavailable(f"downloading {url}: server errors", provider=provider)


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
