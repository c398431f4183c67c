"""Billable jobs submitted exactly once (a POST is repeated only when it provably never reached the provider,
or was refused with 429 before acceptance), and providers' HTTP error answers mapped to the error tree."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from fluxroute.errors import (
    AuthError,
    InsufficientCredits,
    ProviderBadRequest,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

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


def error_for_status(
    response: httpx.Response, message: str, *, provider: str, job_id: str | None = None
) -> ProviderError:
    """An HTTP error answer -> the error tree, by status class (the providers differ only in `message`)."""
    status = response.status_code
    kwargs: dict[str, Any] = {"provider": provider, "status_code": status, "provider_job_id": job_id}
    text = f"HTTP {status}: {message[:300]}"
    if status == 402 or (status == 403 and any(w in message.lower() for w in ("balance", "credit", "locked"))):
        return InsufficientCredits(text, **kwargs)
    if status in (401, 403):
        return AuthError(text, **kwargs)
    if status == 429:
        return RateLimited(text, retry_after=retry_after(response), **kwargs)
    if status >= 500:
        return ProviderUnavailable(text, **kwargs)
    return ProviderBadRequest(text, **kwargs)
