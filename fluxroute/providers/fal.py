"""fal.ai queue on fal-client's AsyncClient: submit, status and logs as progress, result, cancel; errors mapped."""

from __future__ import annotations

from typing import Any

import fal_client
import httpx

from fluxroute.errors import (
    Cancelled,
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

NAME = "fal"


def map_error(response: httpx.Response, job_id: str | None = None) -> ProviderError:
    """fal's HTTP errors -> the error tree; a 422 `detail` list becomes one line per field."""
    detail: Any = None
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        message = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []) if p != 'body')}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    else:
        message = str(detail or response.text or response.reason_phrase)
    return error_for_status(response, message, provider=NAME, job_id=job_id)


class FalProvider:
    """One fal.ai key. Jobs are submitted once (see providers/submission.py); status, result and cancel
    use the request id through fal-client, so a restarted process can pick a job up again."""

    name = NAME

    def __init__(self, settings: Settings, client: fal_client.AsyncClient | None = None) -> None:
        self._key = settings.fal_key.get_secret_value() if settings.fal_key else ""
        self._client = client or fal_client.AsyncClient(key=self._key or None)
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        self.poller = Poller(NAME)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        # Not fal-client's submit: it repeats a POST whose answer was lost, which can create (and bill)
        # a second job. Same queue URL and auth; status, result and cancel go through fal-client.
        response = await post_once(
            self._http,
            fal_client.client.QUEUE_URL_FORMAT + candidate.endpoint,
            provider=NAME,
            map_error=map_error,
            json=candidate.params,
            params={"fal_webhook": webhook_url} if webhook_url else None,
            headers={"Authorization": f"Key {self._key}"},
        )
        return str(response.json()["request_id"])

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        handle = await self._client.get_handle(candidate.endpoint, job_id)
        report = _StatusReporter(progress)
        with self.poller.follow(job_id, candidate.latency_s, timeout_s) as pace:
            while True:
                try:
                    status = await handle.status(with_logs=True)
                except fal_client.FalClientHTTPError as exc:
                    raise map_error(exc.response, job_id) from exc
                except httpx.TransportError as exc:
                    raise ProviderUnavailable(f"status of {job_id}: {type(exc).__name__}", provider=NAME) from exc
                await report(status, round(pace.elapsed, 3))
                if isinstance(status, fal_client.Completed):
                    return await self._finish(job_id, status, candidate)
                await pace.pause(type(status).__name__)

    async def _finish(self, job_id: str, status: fal_client.Completed, candidate: Candidate) -> ProviderResult:
        if status.error:
            kind = Cancelled if "cancel" in status.error.lower() else JobFailed
            raise kind(f"request {job_id} failed: {status.error}", provider=NAME, provider_job_id=job_id)
        try:
            output: dict[str, Any] = await self._client.result(candidate.endpoint, job_id)
        except fal_client.FalClientHTTPError as exc:
            raise map_error(exc.response, job_id) from exc
        flags = list(output.get("has_nsfw_concepts") or [])
        images = [
            await download_image(
                self._http, str(item["url"]), provider=NAME, flagged=bool(flags[i]) if i < len(flags) else False
            )
            for i, item in enumerate(output.get("images") or [])
        ]
        if not images:
            raise JobFailed(f"request {job_id} returned no images", provider=NAME, provider_job_id=job_id)
        timings = {k: float(v) for k, v in (output.get("timings") or {}).items() if isinstance(v, int | float)}
        seed = output.get("seed")
        return ProviderResult(job_id, images, seed=int(seed) if isinstance(seed, int) else None, timings=timings)

    async def cancel(self, job_id: str, candidate: Candidate) -> None:
        try:
            await self._client.cancel(candidate.endpoint, job_id)
        except fal_client.FalClientHTTPError as exc:
            raise map_error(exc.response, job_id) from exc

    def notify(self, job_id: str) -> bool:
        """A webhook said the request ended: check now. False when it is not one we are waiting on."""
        return self.poller.notify(job_id)


class _StatusReporter:
    """Turns fal status polls into progress events: queue position changes, then each new log line once."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.logs_seen = 0
        self.last: tuple[object, ...] | None = None

    async def __call__(self, status: fal_client.Status, elapsed: float) -> None:
        if self.progress is None:
            return
        if isinstance(status, fal_client.Queued):
            key: tuple[object, ...] = ("IN_QUEUE", status.position)
            if key != self.last:
                message = f"queue position {status.position}"
                await self.progress(
                    Progress(NAME, "IN_QUEUE", message, queue_position=status.position, elapsed_s=elapsed)
                )
            self.last = key
            return
        label = "COMPLETED" if isinstance(status, fal_client.Completed) else "IN_PROGRESS"
        if self.last != (label,):
            await self.progress(Progress(NAME, label, label.lower().replace("_", " "), elapsed_s=elapsed))
        self.last = (label,)
        logs = list(getattr(status, "logs", None) or [])
        for entry in logs[self.logs_seen :]:
            await self.progress(Progress(NAME, label, str(entry.get("message", "")), elapsed_s=elapsed))
        self.logs_seen = max(self.logs_seen, len(logs))
