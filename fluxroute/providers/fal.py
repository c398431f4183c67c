"""fal.ai queue on fal-client's AsyncClient: submit, status and logs as progress, result, cancel; errors mapped."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import fal_client
import httpx

from fluxroute.errors import (
    Billing,
    Cancelled,
    JobFailed,
    ProviderError,
    ProviderUnavailable,
)
from fluxroute.providers.base import CancelAnswer, Progress, ProgressCallback, ProviderResult
from fluxroute.providers.downloads import ResultDownloads
from fluxroute.providers.image_inputs import FAL_INLINE_MAX_BYTES, decode, place_images, post_upload, upload_failed
from fluxroute.providers.polling import Pace, Poller, expected
from fluxroute.providers.submission import CappedTransport, error_for_status, post_once, read_json
from fluxroute.redact import header_secrets, redact
from fluxroute.settings import Settings
from fluxroute.types import Candidate

NAME = "fal"
UPLOAD_TIMEOUT_S = 120.0
USER_AGENT = "fluxroute (fal-client)"
_SERVER_ERROR = re.compile(r"\bstatus code:? 5\d\d\b", re.IGNORECASE)


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


# fal's request error types for infrastructure failures (HTTP 5xx): "Server errors (HTTP 500+) are never
# charged" (fal's pricing FAQ; error types from fal's "Request Error Types" page)
UNBILLED_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)
CANCELLED_ERROR_TYPES = frozenset({"request_cancelled", "client_cancelled"})


def compute_seconds(status: fal_client.Completed) -> float | None:
    """The compute time fal reports for a COMPLETED request (`metrics.inference_time`, what fal bills a
    per-compute-second endpoint by): a finite number ≥ 0, else None (no metrics, as legacy apps, or garbled)."""
    metrics = status.metrics if isinstance(status.metrics, dict) else {}
    value = metrics.get("inference_time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _output_images(output: dict[str, Any]) -> list[Any] | None:
    """The output's images: its `images` list (FLUX endpoints), or its single `image` object (the upscalers:
    seedvr, clarity, esrgan, aura-sr answer `{"image": {url, ...}}`); None when it has neither."""
    images = output.get("images")
    if isinstance(images, list) and images:
        return images
    image = output.get("image")
    return [image] if isinstance(image, dict) else None


def completed_billing(status: fal_client.Completed, ran: bool) -> Billing:
    """What a COMPLETED status means for money, stated once:

    - no error: the images were made — charged;
    - cancelled before a runner started it (it never showed IN_PROGRESS and reports no inference time):
      unbilled;
    - an infrastructure error (5xx error types, or "Invalid status code: 5xx"): unbilled, per fal's FAQ;
    - anything else after it ran (422 validation, content policy, cancelled while running): fal may bill
      it ("it may be billed if a runner used GPU time before the error was detected") — at risk.
    """
    if not status.error:
        return "charged"
    error_type = (status.error_type or "").lower()
    ran = ran or bool((status.metrics or {}).get("inference_time"))
    cancelled = error_type in CANCELLED_ERROR_TYPES or "cancel" in status.error.lower()
    if cancelled and not ran:
        return "unbilled"
    if error_type in UNBILLED_ERROR_TYPES or _SERVER_ERROR.search(status.error):
        return "unbilled"
    return "at_risk"


class FalProvider:
    """One fal.ai key on one queue host (`fal_base_url`); input-image uploads on `fal_rest_url` and `fal_cdn_url`.
    Jobs are submitted once (see providers/submission.py); status and cancel go through fal-client's request
    handle, built from the request id, so a restarted process can pick a job up again."""

    name = NAME

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        key = settings.fal_key.get_secret_value() if settings.fal_key else ""
        self._key = key
        self._queue = settings.fal_base_url.rstrip("/") + "/"
        self._rest = settings.fal_rest_url.rstrip("/")
        self._cdn = settings.fal_cdn_url.rstrip("/")
        # the queue client carries the key; result images are fetched without it (they live on a CDN)
        self._http = client or httpx.AsyncClient(
            transport=CappedTransport(),
            headers={"Authorization": f"Key {key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(120.0, connect=5.0),
        )
        # request errors and runner logs may echo the key: they are redacted with what the client sends
        self._secrets = header_secrets(self._http.headers)
        self._downloads = ResultDownloads(settings, httpx.Timeout(120.0, connect=5.0))
        self.poller = Poller(NAME, settings.retry_backoff_s)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._downloads.aclose()

    def _handle(self, endpoint: str, job_id: str) -> fal_client.AsyncRequestHandle:
        owner, _, rest = endpoint.partition("/")
        base = f"{self._queue}{owner}/{rest.split('/', 1)[0]}/requests/{job_id}"
        return fal_client.AsyncRequestHandle(
            request_id=job_id,
            response_url=base,
            status_url=base + "/status",
            cancel_url=base + "/cancel",
            client=self._http,
        )

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        # input images first (see providers/image_inputs.py): a failed upload stops here, nothing submitted
        params = await place_images(candidate.params, self.place_image)
        # Not fal-client's submit: it repeats a POST whose answer was lost, which can create (and bill)
        # a second job. Same queue URL and auth; status and cancel go through fal-client.
        answer = await post_once(
            self._http,
            self._queue + candidate.endpoint,
            provider=NAME,
            map_error=map_error,
            never_arrived=_ingress_error,
            json=params,
            params={"fal_webhook": webhook_url} if webhook_url else None,
        )
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable(
                "the answer to the job submission has no request_id", provider=NAME, billing="at_risk"
            )
        return request_id

    async def place_image(self, uri: str) -> str:
        """A data: URI input image as the request carries it: itself when within `FAL_INLINE_MAX_BYTES`, else
        the URL of its copy in fal's storage.

        The upload is fal-client's "fal_v3" protocol on the configured hosts (`fal_rest_url`, `fal_cdn_url`;
        fal-client itself reads them from module globals only): a storage token from
        `POST {rest}/storage/auth/token?storage_type=fal-cdn-v3`, then the bytes to `POST {cdn}/files/upload`
        with that token, answered with `access_url`. Neither request is repeated after it may have arrived
        (see `post_upload`); no fallback storage is used.

        Raises:
            ProviderError: billing "unbilled" — the upload failed; nothing was submitted.
        """
        image = decode(uri, NAME)
        if len(image.data) <= FAL_INLINE_MAX_BYTES:
            return uri
        what = "fal storage upload"
        try:
            async with asyncio.timeout(UPLOAD_TIMEOUT_S):
                token = await post_upload(
                    self._http,
                    f"{self._rest}/storage/auth/token",
                    provider=NAME,
                    what=what,
                    map_error=map_error,
                    params={"storage_type": "fal-cdn-v3"},
                    json={},
                )
                if not isinstance(token.get("token"), str) or not isinstance(token.get("token_type"), str):
                    raise upload_failed(NAME, what, "the storage token answer has no token")
                stored = await post_upload(
                    self._http,
                    f"{self._cdn}/files/upload",
                    provider=NAME,
                    what=what,
                    map_error=map_error,
                    content=image.data,
                    headers={
                        "Content-Type": image.media_type,
                        "X-Fal-File-Name": image.file_name,
                        "Authorization": f"{token['token_type']} {token['token']}",  # the CDN token, not the key
                    },
                    timeout=UPLOAD_TIMEOUT_S,
                )
        except TimeoutError:
            raise upload_failed(NAME, what, f"no upload URL within {UPLOAD_TIMEOUT_S:g} s") from None
        url = stored.get("access_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise upload_failed(NAME, what, "the answer has no URL")
        return url

    async def _status(self, handle: fal_client.AsyncRequestHandle, pace: Pace, *, with_logs: bool) -> fal_client.Status:
        """The request's status, with the runner's logs when someone follows the progress (every answer repeats
        all the lines so far); failures that may pass (5xx, 404 while it propagates, dropped connections,
        garbled bodies) are retried until the deadline."""
        while True:
            try:
                status = await handle.status(with_logs=with_logs)
                pace.recovered()
                return status
            except fal_client.FalClientHTTPError as exc:
                error = map_error(exc.response, handle.request_id)
                if exc.status_code in (400, 401, 403, 422):
                    error.billing = "at_risk"
                    raise error from exc
            except httpx.TransportError as exc:
                error = ProviderUnavailable(f"status of {handle.request_id}: {type(exc).__name__}", provider=NAME)
            except (ValueError, KeyError, TypeError) as exc:  # a garbled status body
                error = ProviderUnavailable(
                    f"status of {handle.request_id}: garbled answer ({type(exc).__name__})", provider=NAME
                )
            await pace.retry(f"checking request {handle.request_id}", error)

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        handle = self._handle(candidate.endpoint, job_id)
        report = _StatusReporter(progress, self._secrets)
        ran = False
        with self.poller.follow(job_id, expected(candidate.latency_s), timeout_s) as pace:
            while True:
                status = await self._status(handle, pace, with_logs=progress is not None)
                ran = ran or isinstance(status, fal_client.InProgress)
                await report(status, round(pace.elapsed, 3))
                if isinstance(status, fal_client.Completed):
                    return await self._finish(handle, status, ran, pace)
                await pace.pause(type(status).__name__)

    async def _finish(
        self, handle: fal_client.AsyncRequestHandle, status: fal_client.Completed, ran: bool, pace: Pace
    ) -> ProviderResult:
        job_id = handle.request_id
        billing = completed_billing(status, ran)
        if status.error:
            kind = Cancelled if "cancel" in status.error.lower() else JobFailed
            note = "" if billing == "unbilled" else "; fal may bill a request that failed after it ran"
            raise kind(
                f"request {job_id} failed: {redact(status.error, self._secrets)[:300]}{note}",
                provider=NAME,
                provider_job_id=job_id,
                billing=billing,
            )
        output = await self._result(handle, pace)
        raw_images = _output_images(output)
        flags = output.get("has_nsfw_concepts")
        flags = flags if isinstance(flags, list) else []
        if raw_images is None:
            raise JobFailed(
                f"request {job_id} completed without images", provider=NAME, provider_job_id=job_id, billing="charged"
            )
        images = []
        for i, item in enumerate(raw_images):
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str):
                raise JobFailed(
                    f"request {job_id}: image {i} has no url", provider=NAME, provider_job_id=job_id, billing="charged"
                )
            flagged = bool(flags[i]) if i < len(flags) else False
            images.append(await self._downloads.image(url, provider=NAME, pace=pace, flagged=flagged))
        timings = output.get("timings")
        timings = (
            {k: float(v) for k, v in timings.items() if isinstance(v, int | float)} if isinstance(timings, dict) else {}
        )
        seed = output.get("seed")
        return ProviderResult(
            job_id,
            images,
            seed=int(seed) if isinstance(seed, int) else None,
            timings=timings,
            compute_seconds=compute_seconds(status),
        )

    async def _result(self, handle: fal_client.AsyncRequestHandle, pace: Pace) -> dict[str, Any]:
        """The completed request's output. fal keeps it 1 h (6 min when ≥ 10 KB): a 404 then means it is gone
        — the request was billed all the same."""
        while True:
            try:
                response = await self._http.get(handle.response_url)
                if response.status_code == 404:
                    raise JobFailed(
                        f"request {handle.request_id}: its result has expired at fal (kept 1 h, 6 min when large); "
                        "fal billed it",
                        provider=NAME,
                        provider_job_id=handle.request_id,
                        status_code=404,
                        billing="charged",
                    )
                if response.is_error:
                    raise map_error(response, handle.request_id)
                output = read_json(response, NAME)
                pace.recovered()
                return output
            except httpx.TransportError as exc:
                error: ProviderError = ProviderUnavailable(
                    f"result of {handle.request_id}: {type(exc).__name__}", provider=NAME
                )
            except JobFailed:
                raise
            except ProviderError as exc:
                if exc.status_code is not None and 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                    exc.billing = "charged"
                    raise
                error = exc
            await pace.retry(f"fetching the result of {handle.request_id}", error)

    async def cancel(self, job_id: str, candidate: Candidate) -> CancelAnswer:
        """fal answers CANCELLATION_REQUESTED (a queued request is dropped; a running one only gets a signal
        and may finish and be billed) or ALREADY_COMPLETED."""
        try:
            await self._handle(candidate.endpoint, job_id).cancel()
        except fal_client.FalClientHTTPError as exc:
            return "already_ended" if "ALREADY_COMPLETED" in exc.response.text else "refused"
        except httpx.HTTPError:
            return "refused"
        return "requested"

    async def billing_state(self, job_id: str, candidate: Candidate) -> Billing | None:
        """From one status check: a COMPLETED request by `completed_billing` (counted as having run: whether it
        did is not known here, so a cancelled one stays at risk); a queued or running one None."""
        try:
            status = await self._handle(candidate.endpoint, job_id).status()
        except (fal_client.FalClientHTTPError, httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return completed_billing(status, ran=True) if isinstance(status, fal_client.Completed) else None

    def notify(self, job_id: str) -> bool:
        """A webhook said the request ended: check now. False when it is not one we are waiting on."""
        return self.poller.notify(job_id)


def _ingress_error(response: httpx.Response) -> bool:
    """fal's ingress answered instead of its queue (an nginx page, no request id): the POST never reached
    the queue, so it can be sent again (fal-client retries exactly these)."""
    return (
        response.status_code in (502, 503, 504)
        and "x-fal-request-id" not in response.headers
        and "nginx" in response.text[:2000]
    )


_STEP = re.compile(r"\b(\d{1,4})\s*/\s*(\d{1,4})\b")  # "step 8/28", tqdm's "8/28 [00:02<00:05]"


class _StatusReporter:
    """Turns fal status polls into progress events: queue position changes, then each new log line once."""

    def __init__(self, progress: ProgressCallback | None, secrets: tuple[str, ...]) -> None:
        self.progress = progress
        self.secrets = secrets
        self.logs_seen = 0
        self.last: tuple[object, ...] | None = None

    async def __call__(self, status: fal_client.Status, elapsed: float) -> None:
        if self.progress is None:
            return
        if isinstance(status, fal_client.Queued):
            key: tuple[object, ...] = ("IN_QUEUE", status.position)
            if key != self.last:  # the position is a field of its own, not repeated in the message
                await self.progress(Progress(NAME, "IN_QUEUE", queue_position=status.position, elapsed_s=elapsed))
            self.last = key
            return
        # log lines first: they were written while the request ran, so they come before its completion
        if self.last != ("IN_PROGRESS",) and self.last != ("COMPLETED",):
            await self.progress(Progress(NAME, "IN_PROGRESS", elapsed_s=elapsed))
            self.last = ("IN_PROGRESS",)
        logs = list(getattr(status, "logs", None) or [])
        for entry in logs[self.logs_seen :]:
            message = redact(str(entry.get("message", "")), self.secrets)
            step = _STEP.search(message)
            await self.progress(
                Progress(
                    NAME,
                    "IN_PROGRESS",
                    message,
                    step=int(step[1]) if step else None,
                    total_steps=int(step[2]) if step else None,
                    elapsed_s=elapsed,
                )
            )
        self.logs_seen = max(self.logs_seen, len(logs))
        if isinstance(status, fal_client.Completed) and self.last != ("COMPLETED",):
            await self.progress(Progress(NAME, "COMPLETED", elapsed_s=elapsed))
            self.last = ("COMPLETED",)
