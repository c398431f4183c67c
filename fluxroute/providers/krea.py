"""Krea API on httpx: create a job, follow its nine statuses, download the result, cancel; errors mapped here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from fluxroute.errors import (
    Billing,
    Cancelled,
    ContentFiltered,
    JobFailed,
    ProviderError,
    ProviderUnavailable,
)
from fluxroute.providers.base import CancelAnswer, Progress, ProgressCallback, ProviderResult
from fluxroute.providers.downloads import ResultDownloads
from fluxroute.providers.image_inputs import (
    KREA_ASSET_MAX_BYTES,
    KREA_ASSET_TYPES,
    decode,
    place_images,
    post_upload,
    upload_failed,
)
from fluxroute.providers.polling import Pace, Poller, expected
from fluxroute.providers.submission import CappedTransport, error_for_status, post_once, read_json
from fluxroute.redact import header_secrets, redact
from fluxroute.settings import Settings
from fluxroute.types import Candidate

NAME = "krea"
TERMINAL = {"completed", "failed", "cancelled"}
LISTING_PAGES = 20
# Krea's generation paths are `/generate/{category}/{vendor}/{model}`; the categories an endpoint may name
CATEGORIES = ("image", "enhance")
# The job type `GET /jobs?types=` filters by, per generation endpoint. The API lists every job of the account,
# the web app's too (types "k1", "externalImage", ... in the OpenAPI example), and its items carry no type:
# the query parameter is the only filter. "flux" is the OpenAPI example's name for Flux jobs; the Krea 2 name
# is not documented (assumed). An endpoint without a known type is never adopted from a listing: the enhance
# endpoints (`enhance/topaz/...`, `enhance/krea/enhance`) have none documented, so a job whose answer was lost
# stays at risk rather than be confused with another.
JOB_TYPES = {
    "bfl/flux-1-dev": "flux",
    "bfl/flux-1-kontext-dev": "flux",  # assumed: Krea's Flux family
    "krea/krea-2/medium": "krea-2",
    "krea/krea-2/large": "krea-2",
}


def generation_path(endpoint: str) -> str:
    """The URL path a candidate's `endpoint` is posted to. An endpoint that names its category
    (`enhance/topaz/standard-enhance`, `image/bfl/flux-1-dev`) goes to `/generate/{endpoint}`; any other (the
    image offers' `bfl/flux-1-dev`, `krea/krea-2/medium`) to `/generate/image/{endpoint}`."""
    category = endpoint.partition("/")[0]
    return f"/generate/{endpoint}" if category in CATEGORIES else f"/generate/image/{endpoint}"


def _error_text(value: object) -> str | None:
    """The text of an `error` Krea answered: a string, or (krea/enhance's jobs) `{code, message}`."""
    if isinstance(value, dict):
        message, code = value.get("message"), value.get("code")
        text = str(message) if message else None
        return f"{text} ({code})" if text and code else text or (str(code) if code else None)
    return str(value) if value else None


def map_error(response: httpx.Response, job_id: str | None = None) -> ProviderError:
    """Krea's HTTP errors -> the error tree; the body's `error` text is kept, nothing else."""
    try:
        body = response.json()
        message = (_error_text(body.get("error")) if isinstance(body, dict) else None) or response.text
    except ValueError:
        message = response.text or response.reason_phrase
    return error_for_status(response, message, provider=NAME, job_id=job_id)


class KreaProvider:
    """One Krea API account; jobs are created once (see providers/submission.py).

    Billing, from Krea's docs: `completed` jobs are billed, `failed` and `cancelled` ones are not; a job can
    be cancelled only while `queued` or `processing`; `GET /jobs` lists the account's jobs, which is how a
    submission whose answer was lost is found again.
    """

    name = NAME

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        token = settings.krea_api_token.get_secret_value() if settings.krea_api_token else ""
        self._client = client or httpx.AsyncClient(
            transport=CappedTransport(),
            base_url=settings.krea_base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )
        # job texts (a failed job's reason) may echo the token: they are redacted with what the client sends
        self._secrets = header_secrets(self._client.headers)
        # result URLs are on a CDN: fetched without the Krea token
        self._downloads = ResultDownloads(settings, httpx.Timeout(60.0, connect=5.0))
        self.poller = Poller(NAME, settings.retry_backoff_s)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._downloads.aclose()

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        # input images first (see providers/image_inputs.py): a failed upload stops here, nothing submitted
        params = await place_images(candidate.params, self.upload_asset)
        answer = await post_once(
            self._client,
            generation_path(candidate.endpoint),
            provider=NAME,
            map_error=map_error,
            json=params,
            headers={"X-Webhook-URL": webhook_url} if webhook_url else {},
        )
        job_id = answer.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise ProviderUnavailable(
                "the answer to the job submission has no job_id", provider=NAME, billing="at_risk"
            )
        return job_id

    async def upload_asset(self, uri: str) -> str:
        """A data: URI input image uploaded with `POST /assets` (multipart `file`); the asset's `image_url`.

        Raises:
            ProviderError: billing "unbilled" — the upload was refused or failed (it is not sent again blindly).
        """
        what = "Krea POST /assets"
        image = decode(uri, NAME)
        if image.media_type not in KREA_ASSET_TYPES:
            raise upload_failed(NAME, what, f"{image.media_type} is not one of {', '.join(KREA_ASSET_TYPES)}")
        if len(image.data) > KREA_ASSET_MAX_BYTES:
            raise upload_failed(NAME, what, f"{len(image.data)} bytes, more than Krea's {KREA_ASSET_MAX_BYTES}")
        asset = await post_upload(
            self._client,
            "/assets",
            provider=NAME,
            what=what,
            map_error=map_error,
            files={"file": (image.file_name, image.data, image.media_type)},
        )
        url = asset.get("image_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise upload_failed(NAME, what, "the answer has no image_url")
        return url

    async def _get_job(self, job_id: str, pace: Pace) -> dict[str, Any]:
        """The job's current state. Failures that may pass (transport errors, 5xx, 429, a 404 while the job
        propagates, a garbled body) are retried until the deadline; the job may be billed, so it is never
        dropped for them."""
        while True:
            try:
                response = await self._client.get(f"/jobs/{job_id}")
                if response.is_error:
                    raise map_error(response, job_id)
                job = read_json(response, NAME)
                if not isinstance(job.get("status"), str):
                    raise ProviderUnavailable(f"job {job_id}: the answer has no status", provider=NAME)
                pace.recovered()
                return job
            except httpx.TransportError as exc:
                error: ProviderError = ProviderUnavailable(f"job {job_id}: {type(exc).__name__}", provider=NAME)
            except ProviderError as exc:
                if exc.status_code in (400, 401, 403):
                    exc.billing = "at_risk"
                    raise  # nothing a retry changes; the job stays at risk
                error = exc
            await pace.retry(f"checking job {job_id}", error)

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        last_status = ""
        with self.poller.follow(job_id, expected(candidate.latency_s), timeout_s) as pace:
            while True:
                job = await self._get_job(job_id, pace)
                status = str(job["status"])
                if status != last_status and progress is not None:
                    await progress(Progress(NAME, status, _describe(status), elapsed_s=round(pace.elapsed, 3)))
                last_status = status
                if status in TERMINAL or job.get("completed_at"):
                    return await self._finish(job_id, job, candidate, pace)
                await pace.pause(status)

    async def _finish(self, job_id: str, job: dict[str, Any], candidate: Candidate, pace: Pace) -> ProviderResult:
        status = job.get("status")
        result = job.get("result") if isinstance(job.get("result"), dict) else {}
        assert isinstance(result, dict)
        if status == "cancelled":
            raise Cancelled(f"job {job_id} was cancelled", provider=NAME, provider_job_id=job_id, billing="unbilled")
        if status == "failed":
            # image jobs say why in `result.error`; krea/enhance's in a top-level `error {code, message}`
            reason = _error_text(result.get("error")) or _error_text(job.get("error")) or "no reason given"
            error = redact(reason, self._secrets)[:300]
            kind = ContentFiltered if any(w in error.lower() for w in ("nsfw", "moderation")) else JobFailed
            raise kind(f"job {job_id} failed: {error}", provider=NAME, provider_job_id=job_id, billing="unbilled")
        urls = result.get("urls")
        if status != "completed" or not isinstance(urls, list) or not urls:
            raise JobFailed(
                f"job {job_id} ended {status!r} without result URLs; Krea bills completed jobs",
                provider=NAME,
                provider_job_id=job_id,
                billing="charged" if status == "completed" else "at_risk",
            )
        images = [await self._downloads.image(str(url), provider=NAME, pace=pace) for url in urls]
        seed = candidate.params.get("seed")
        return ProviderResult(job_id, images, seed=int(seed) if isinstance(seed, int) else None)

    async def cancel(self, job_id: str, candidate: Candidate) -> CancelAnswer:
        """Krea cancels only `queued` and `processing` jobs (then they are not billed); otherwise it refuses."""
        try:
            response = await self._client.delete(f"/jobs/{job_id}")
        except httpx.TransportError:
            return "refused"
        if response.is_success:
            return "cancelled"
        try:  # the refusal's wording is not documented: the job's own status tells why
            status = (await self._client.get(f"/jobs/{job_id}")).json().get("status")
        except (httpx.HTTPError, ValueError, AttributeError):
            return "refused"
        return "already_ended" if status in TERMINAL else "refused"

    async def billing_state(self, job_id: str, candidate: Candidate) -> Billing | None:
        """From one `GET /jobs/{id}`: `completed` is billed, `failed`/`cancelled` are not; else None."""
        try:
            response = await self._client.get(f"/jobs/{job_id}")
            status = read_json(response, NAME).get("status") if response.is_success else None
        except (httpx.HTTPError, ProviderError):
            return None
        return "charged" if status == "completed" else "unbilled" if status in ("failed", "cancelled") else None

    def job_type(self, candidate: Candidate) -> str | None:
        """The `types` value of the jobs `candidate`'s endpoint creates; None when it is not known (every
        enhance endpoint: see JOB_TYPES)."""
        return JOB_TYPES.get(candidate.endpoint.removeprefix("image/"))

    async def jobs_created_between(self, start: datetime, end: datetime, types: str | None = None) -> list[str]:
        """Ids of jobs created in [start, end], newest first, from `GET /jobs` (paged by its cursor); only jobs
        of `types` (the API's comma-separated `types` filter) when given."""
        found: list[str] = []
        cursor: str | None = None
        for _ in range(LISTING_PAGES):
            params = {"limit": "100", **({"cursor": cursor} if cursor else {}), **({"types": types} if types else {})}
            try:
                response = await self._client.get("/jobs", params=params)
            except httpx.TransportError as exc:
                raise ProviderUnavailable(f"listing jobs: {type(exc).__name__}", provider=NAME) from exc
            if response.is_error:
                raise map_error(response)
            page = read_json(response, NAME)
            items = page.get("items")
            if not isinstance(items, list):
                raise ProviderUnavailable("listing jobs: the answer has no items", provider=NAME)
            oldest: datetime | None = None
            for item in items:
                created = _timestamp(item.get("created_at")) if isinstance(item, dict) else None
                if created is None or not isinstance(item.get("job_id"), str):
                    raise ProviderUnavailable("listing jobs: an item has no job_id or created_at", provider=NAME)
                oldest = created if oldest is None else min(oldest, created)
                if start <= created <= end:
                    found.append(item["job_id"])
            cursor = page.get("next_cursor") or page.get("nextCursor")
            if not cursor or oldest is None or oldest < start:
                return found
        raise ProviderUnavailable(f"listing jobs: more than {LISTING_PAGES} pages since {start}", provider=NAME)

    def notify(self, job_id: str) -> bool:
        """A webhook said the job ended: check now. False when the job is not one we are waiting on."""
        return self.poller.notify(job_id)


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
