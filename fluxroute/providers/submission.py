"""Submitting a billable job exactly once: a POST is repeated only when it provably never reached the
provider (no connection) or the provider refused it with 429 before accepting it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from fluxroute.errors import ProviderError, ProviderUnavailable

SUBMIT_ATTEMPTS = 3
MAX_RETRY_AFTER_S = 10.0


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (capped), if the provider sent a number."""
    try:
        return min(float(response.headers["retry-after"]), MAX_RETRY_AFTER_S)
    except (KeyError, ValueError):
        return None


async def post_once(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    map_error: Callable[[httpx.Response], ProviderError],
    **kwargs: Any,
) -> httpx.Response:
    """The provider's 2xx answer to a job submission.

    Raises:
        ProviderUnavailable: no connection after retries; or, with maybe_accepted=True, the request was
            sent and no answer came back, so a job may exist that must not be paid for twice.
        ProviderError: the provider's error answer, mapped by `map_error`.
    """
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        try:
            response = await client.post(url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if attempt == SUBMIT_ATTEMPTS:
                raise ProviderUnavailable(f"cannot connect: {type(exc).__name__}", provider=provider) from exc
            await asyncio.sleep(0.2 * attempt)
            continue
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"no answer to the job submission ({type(exc).__name__}); it may have been accepted",
                provider=provider,
                maybe_accepted=True,
            ) from exc
        if response.status_code == 429 and attempt < SUBMIT_ATTEMPTS:
            await asyncio.sleep(retry_after(response) or 0.5 * attempt)
            continue
        if response.is_error:
            raise map_error(response)
        return response
    raise AssertionError("unreachable")
