"""Billable jobs submitted exactly once (a POST is repeated only when it provably never reached the provider),
providers' JSON answers read defensively, and their HTTP error answers mapped to the error tree (with the
credential the request carried redacted: a provider may echo it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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
from fluxroute.redact import header_secrets, redact

SUBMIT_ATTEMPTS = 3
MAX_RETRY_AFTER_S = 10.0
# a provider's JSON answer (a job, a status, a listing page) is a few KB; anything far larger is not one
MAX_ANSWER_BYTES = 4 * 1024 * 1024


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (capped), if the provider sent a number."""
    try:
        return min(float(response.headers["retry-after"]), MAX_RETRY_AFTER_S)
    except (KeyError, ValueError):
        return None


class AnswerTooLarge(httpx.ReadError):
    """A provider's answer ran past the bytes an API answer may have; reading stopped there."""


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, limit: int) -> None:
        self._stream, self._limit = stream, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise AnswerTooLarge(f"answer larger than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """Reads at most `limit` bytes of any answer: a declared larger length is refused before its body is read,
    and a longer body stops at the limit (AnswerTooLarge, a transport error: the caller's retry rules apply).
    Only uncompressed answers are taken (a small gzip body can inflate without bound): the request asks for
    identity and an answer in another encoding is passed on undecoded, so it reads as garbled."""

    def __init__(self, limit: int = MAX_ANSWER_BYTES) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise AnswerTooLarge(f"answer of {declared} bytes, larger than {self._limit}", request=request)
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            del response.headers["content-encoding"]
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, self._limit)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def read_json(response: httpx.Response, provider: str, limit: int = MAX_ANSWER_BYTES) -> dict[str, Any]:
    """A provider's JSON object answer.

    Raises:
        ProviderUnavailable: the body is larger than `limit`, not JSON, or not an object (a garbled answer).
    """
    if len(response.content) > limit:
        raise ProviderUnavailable(f"answer larger than {limit} bytes", provider=provider)
    try:
        body = response.json()
    except ValueError:
        snippet = redact(response.text, sent_secrets(response))[:60]
        raise ProviderUnavailable(
            f"garbled answer (HTTP {response.status_code}, not JSON: {snippet!r})", provider=provider
        ) from None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"garbled answer (JSON {type(body).__name__}, not an object)", provider=provider)
    return body


async def post_once(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    map_error: Callable[[httpx.Response], ProviderError],
    never_arrived: Callable[[httpx.Response], bool] = lambda response: False,
    **kwargs: Any,
) -> dict[str, Any]:
    """The provider's JSON answer to a job submission.

    A POST is sent again only when it provably never reached the provider (no connection; a 429 refusal;
    an answer `never_arrived` recognises, such as an ingress error page). Everything else after the POST
    left — a 5xx, a timeout, a dropped connection, a garbled 2xx — may mean the job was accepted: the
    error carries billing "at_risk" so that the router looks for the job instead of paying again.

    Raises:
        ProviderError: billing "unbilled" for a clean refusal (4xx, or no connection after retries),
            "at_risk" when the job may have been accepted.
    """
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        last = attempt == SUBMIT_ATTEMPTS
        try:
            response = await client.post(url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if last:
                raise ProviderUnavailable(
                    f"cannot connect: {type(exc).__name__}", provider=provider, billing="unbilled"
                ) from exc
            await asyncio.sleep(0.2 * attempt)
            continue
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"no answer to the job submission ({type(exc).__name__}); it may have been accepted",
                provider=provider,
                billing="at_risk",
            ) from exc
        if response.status_code == 429 or (response.status_code >= 500 and never_arrived(response)):
            if not last:
                await asyncio.sleep(retry_after(response) or 0.5 * attempt)
                continue
            error = map_error(response)
            error.billing = "unbilled"
            raise error
        if response.is_error:
            error = map_error(response)
            error.billing = "at_risk" if response.status_code >= 500 else "unbilled"
            if error.billing == "at_risk":
                error.args = (f"{error}; the job may have been accepted",)
            raise error
        try:
            return read_json(response, provider)
        except ProviderError as exc:
            exc.billing = "at_risk"
            exc.args = (f"{exc}; the job may have been accepted",)
            raise
    raise AssertionError("unreachable")


def error_for_status(
    response: httpx.Response, message: str, *, provider: str, job_id: str | None = None
) -> ProviderError:
    """An HTTP error answer -> the error tree, by status class (the providers differ only in `message`, which
    is redacted here)."""
    status = response.status_code
    kwargs: dict[str, Any] = {"provider": provider, "status_code": status, "provider_job_id": job_id}
    message = redact(message, sent_secrets(response))
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


def sent_secrets(response: httpx.Response) -> tuple[str, ...]:
    """The credential the request behind `response` carried, in every form a provider may echo it."""
    try:
        return header_secrets(response.request.headers)
    except RuntimeError:  # a response built by hand, never sent
        return ()
