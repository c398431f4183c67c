"""Krea API on httpx: create a job, follow its nine statuses, download the result, cancel; errors mapped here."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fluxroute.errors import (
    Cancelled,
    ContentFiltered,
    JobFailed,
    ProviderError,
    ProviderUnavailable,
)
from fluxroute.providers.base import Progress, ProgressCallback, ProviderResult
from fluxroute.providers.downloads import download_image
from fluxroute.providers.polling import Poller
from fluxroute.providers.submission import error_for_status, post_once
from fluxroute.settings import Settings
from fluxroute.types import Candidate

NAME = "krea"
TERMINAL = {"completed", "failed", "cancelled"}


def map_error(response: httpx.Response, job_id: str | None = None) -> ProviderError:
    """Krea's HTTP errors -> the error tree; the body's `error` text is kept, nothing else."""
    try:
        message = str(response.json().get("error") or response.text)
    except ValueError:
        message = response.text or response.reason_phrase
    return error_for_status(response, message, provider=NAME, job_id=job_id)


class KreaProvider:
    """One Krea API account; jobs are created once (see providers/submission.py)."""

    name = NAME

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        token = settings.krea_api_token.get_secret_value() if settings.krea_api_token else ""
        self._client = client or httpx.AsyncClient(
            base_url=settings.krea_base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )
        # result URLs are on a CDN: fetched without the Krea token
        self._downloads = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        self.poller = Poller(NAME)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._downloads.aclose()

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        response = await post_once(
            self._client,
            f"/generate/image/{candidate.endpoint}",
            provider=NAME,
            map_error=map_error,
            json=candidate.params,
            headers={"X-Webhook-URL": webhook_url} if webhook_url else {},
        )
        return str(response.json()["job_id"])

    async def _get_job(self, job_id: str) -> dict[str, Any]:
        """GET is idempotent: transport errors and 5xx are retried a few times before giving up."""
        for attempt in range(1, 4):
            try:
                response = await self._client.get(f"/jobs/{job_id}")
            except httpx.TransportError as exc:
                if attempt == 3:
                    raise ProviderUnavailable(f"job {job_id}: {type(exc).__name__}", provider=NAME) from exc
                await asyncio.sleep(0.1 * attempt)
                continue
            if response.status_code >= 500 and attempt < 3:
                await asyncio.sleep(0.1 * attempt)
                continue
            if response.is_error:
                raise map_error(response, job_id)
            job: dict[str, Any] = response.json()
            return job
        raise AssertionError("unreachable")

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        last_status = ""
        with self.poller.follow(job_id, candidate.latency_s, timeout_s) as pace:
            while True:
                job = await self._get_job(job_id)
                status = str(job.get("status", ""))
                if status != last_status and progress is not None:
                    await progress(Progress(NAME, status, _describe(status), elapsed_s=round(pace.elapsed, 3)))
                last_status = status
                if status in TERMINAL or job.get("completed_at"):
                    return await self._finish(job_id, job, candidate)
                await pace.pause(status)

    async def _finish(self, job_id: str, job: dict[str, Any], candidate: Candidate) -> ProviderResult:
        status = job.get("status")
        result = job.get("result") or {}
        if status == "cancelled":
            raise Cancelled(f"job {job_id} was cancelled", provider=NAME, provider_job_id=job_id)
        if status != "completed":
            error = str(result.get("error") or f"job ended with status {status}")
            kind = ContentFiltered if any(w in error.lower() for w in ("nsfw", "moderation")) else JobFailed
            raise kind(f"job {job_id} failed: {error}", provider=NAME, provider_job_id=job_id)
        urls = list(result.get("urls") or [])
        if not urls:
            raise JobFailed(f"job {job_id} completed without images", provider=NAME, provider_job_id=job_id)
        images = [await download_image(self._downloads, url, provider=NAME) for url in urls]
        seed = candidate.params.get("seed")
        return ProviderResult(job_id, images, seed=int(seed) if isinstance(seed, int) else None)

    async def cancel(self, job_id: str, candidate: Candidate) -> None:
        try:
            response = await self._client.delete(f"/jobs/{job_id}")
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"cancel {job_id}: {type(exc).__name__}", provider=NAME) from exc
        if response.is_error:
            raise map_error(response, job_id)

    def notify(self, job_id: str) -> bool:
        """A webhook said the job ended: check now. False when the job is not one we are waiting on."""
        return self.poller.notify(job_id)


def _describe(status: str) -> str:
    return {
        "backlogged": "waiting behind the account's concurrency limit",
        "queued": "waiting in Krea's queue",
        "scheduled": "scheduled on a worker",
        "processing": "running",
        "sampling": "generating",
        "intermediate-complete": "intermediate result ready",
        "completed": "done",
        "failed": "failed",
        "cancelled": "cancelled",
    }.get(status, status)
