"""A fleet of local GPU workers on Ray Serve (fluxroute/fleet/, deployed by `fluxroute ray deploy`), reached over
HTTP at FLUXROUTE_RAY_URL through its job-id API: submit returns an id the router stores, so a job is followed by id
like a Krea or fal job, also after the router restarts; progress comes from the replica's denoising steps (one long
poll at a time), cancel reaches the replica, and the replica reports the GPU-seconds the job held its device.

Billing follows the local offers (the same weights on the user's own hardware): a job that failed or was cancelled
bills nothing; a finished one is charged its reported GPU-seconds at the offer's price. A submission is sent with
a retry key, so a lost answer is sent again safely (the fleet answers a repeated key with the job it made).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from fluxroute.errors import (
    Cancelled,
    JobFailed,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from fluxroute.providers.base import Availability, CancelAnswer, Progress, ProgressCallback, ProviderResult
from fluxroute.providers.downloads import decode_image, result_byte_cap
from fluxroute.providers.polling import Pace
from fluxroute.providers.submission import SUBMIT_ATTEMPTS, CappedTransport, error_for_status, read_json
from fluxroute.settings import Settings
from fluxroute.types import Candidate

NAME = "ray"
ENDED = {"succeeded", "failed", "cancelled"}
# one long poll waits this long for a change at the fleet
LONG_POLL_S = 10.0
# a fleet report or a status answer is small; a result carries up to 4 images as base64
FLEET_CHECK_TIMEOUT_S = 3.0
# a failed fleet job's kind -> the error raised here (any other: JobFailed; a replica's own time limit too, since a
# ProviderTimeout from wait() means the router's deadline passed)
_ERRORS: dict[str, type[ProviderError]] = {"cancelled": Cancelled, "unavailable": ProviderUnavailable}
# a fleet's report (GET /v1/fleet) is a few KB a replica
MAX_REPORT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FleetReport:
    """What the fleet said of itself (GET /v1/fleet): its replicas, and how many hold each weights endpoint."""

    url: str
    replicas: list[dict[str, Any]]
    weights: dict[str, int]
    jobs: dict[str, int]

    def availability(self, endpoint: str) -> Availability:
        """Whether a ray offer of `endpoint` can run on the fleet now."""
        count = self.weights.get(endpoint, 0)
        if count:
            return Availability(True, f"{count} of {len(self.replicas)} fleet replicas hold it")
        if not self.replicas:
            return Availability(False, f"the fleet at {self.url} has no replica yet (starting?)")
        return Availability(False, f"no replica of the fleet at {self.url} has {endpoint} (weights or device)")


def read_fleet(settings: Settings) -> FleetReport | str:
    """The fleet's report, or why it cannot be had (FLUXROUTE_RAY_URL unset, the fleet unreachable or garbled).
    One short request: availability is checked when a router starts."""
    if settings.ray_url is None:
        return "FLUXROUTE_RAY_URL is not set (deploy a fleet with `fluxroute ray deploy`)"
    url = settings.ray_url.rstrip("/")
    try:
        with (
            httpx.Client(timeout=FLEET_CHECK_TIMEOUT_S, headers=fleet_headers(settings)) as client,
            client.stream("GET", f"{url}/v1/fleet") as response,
        ):
            data = bytearray()
            for chunk in response.iter_bytes():
                data.extend(chunk)
                if len(data) > MAX_REPORT_BYTES:
                    return f"the fleet at {url} sent a report over {MAX_REPORT_BYTES} bytes"
        body = json.loads(data) if response.is_success else None
    except (httpx.HTTPError, ValueError, RecursionError) as exc:
        return f"the fleet at {url} cannot be reached ({type(exc).__name__})"
    if response.status_code == 401:
        given = "wrong" if settings.ray_token else "unset"
        return f"the fleet at {url} refused its token (FLUXROUTE_RAY_TOKEN is {given})"
    if body is None:
        return f"the fleet at {url} answered HTTP {response.status_code} (is `fluxroute ray deploy` running there?)"
    garbled = f"the fleet at {url} sent a garbled report"
    if not isinstance(body, dict):
        return garbled
    replicas, weights, jobs = body.get("replicas"), body.get("weights"), body.get("jobs")
    if not (isinstance(replicas, list) and isinstance(weights, dict) and isinstance(jobs, dict)):
        return garbled
    if not all(isinstance(replica, dict) for replica in replicas):
        return garbled
    try:
        return FleetReport(url, replicas, {str(k): int(v) for k, v in weights.items()}, dict(jobs))
    except (TypeError, ValueError):
        return garbled


def fleet_headers(settings: Settings) -> dict[str, str]:
    """The fleet token as a bearer header, when one is set."""
    token = settings.ray_token.get_secret_value().strip() if settings.ray_token else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


class RayFleetProvider:
    """The Provider protocol over a fleet's HTTP job API."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        if settings.ray_url is None:
            raise ProviderUnavailable("FLUXROUTE_RAY_URL is not set", provider=NAME, billing="unbilled")
        self.settings = settings
        base = settings.ray_url.rstrip("/")
        timeout = httpx.Timeout(LONG_POLL_S + 20.0, connect=5.0)
        headers = fleet_headers(settings)
        self._api = httpx.AsyncClient(transport=CappedTransport(), base_url=base, timeout=timeout, headers=headers)
        # a result: at most 4 images of result_byte_cap bytes each, as base64 in JSON
        self._max_result = (4 * result_byte_cap(settings.max_image_pixels) * 4) // 3 + 1024 * 1024
        self._results = httpx.AsyncClient(
            transport=CappedTransport(self._max_result),
            base_url=base,
            timeout=httpx.Timeout(120.0, connect=5.0),
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._results.aclose()

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        """POST the candidate with a fresh retry key; a lost answer is sent again with the same key, which the fleet
        answers with the job it already made.

        Raises:
            ProviderError: billing "unbilled" when the fleet refused the job or was never reached; "at_risk" when
                it may have taken the job but no answer came back.
        """
        # public: this router is reachable by others, so a license that asks for content filtering there (Krea 2)
        # is refused by a replica without a checker
        body = {
            "key": uuid.uuid4().hex,
            "candidate": candidate.model_dump(mode="json"),
            "public": self.settings.remote_reachable,
        }
        reached = False
        last: ProviderError | None = None
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                response = await self._api.post("/v1/jobs", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = ProviderUnavailable(f"cannot connect to the fleet: {type(exc).__name__}", provider=NAME)
            except httpx.TransportError as exc:
                reached = True
                last = ProviderUnavailable(f"no answer to the job submission ({type(exc).__name__})", provider=NAME)
            else:
                reached = True
                if response.is_success:
                    try:
                        job_id = read_json(response, NAME).get("id")
                    except ProviderError as exc:
                        last = exc
                    else:
                        if isinstance(job_id, str) and job_id:
                            return job_id
                        last = ProviderUnavailable("the answer to the job submission has no id", provider=NAME)
                else:
                    last = _http_error(response)
                    if response.status_code < 500:
                        last.billing = "unbilled"  # refused: the fleet took nothing
                        raise last
            if attempt < SUBMIT_ATTEMPTS:
                await asyncio.sleep(self.settings.retry_backoff_s * attempt)
        assert last is not None
        last.billing = "at_risk" if reached else "unbilled"
        raise last

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        after = 0
        last_status = ""
        pace = Pace(NAME, job_id, candidate.latency_s, timeout_s, self.settings.retry_backoff_s)
        while True:
            wait = max(0.0, min(LONG_POLL_S, timeout_s - pace.elapsed))
            state = await self._get(f"/v1/jobs/{job_id}", pace, job_id, params={"after": after, "wait": wait})
            status = str(state.get("status"))
            events = state.get("events") if isinstance(state.get("events"), list) else []
            assert isinstance(events, list)
            after = int(state.get("next") or after + len(events))
            if progress is not None:
                if status != last_status and status == "queued":
                    await progress(Progress(NAME, "IN_QUEUE", "waiting for a free replica of the fleet"))
                for event in events:
                    await progress(_progress(event))
            last_status = status
            if status in ENDED:
                return await self._finish(job_id, state, pace)
            if pace.elapsed > timeout_s:
                raise ProviderTimeout(
                    f"job {job_id} still {status} after {timeout_s:g} s", provider=NAME, provider_job_id=job_id
                )

    async def _finish(self, job_id: str, state: dict[str, Any], pace: Pace) -> ProviderResult:
        status = state["status"]
        if status != "succeeded":
            error = state.get("error") if isinstance(state.get("error"), dict) else {}
            assert isinstance(error, dict)
            kind = _ERRORS.get(str(error.get("kind")), JobFailed)
            raise kind(
                f"fleet job {job_id} {status}: {str(error.get('message') or 'no reason given')[:400]}",
                provider=NAME,
                provider_job_id=job_id,
                billing="unbilled",  # the user's own hardware: a job that made nothing bills nothing
                retryable=bool(error.get("retryable", kind is not Cancelled)),
            )
        try:
            result = await self._get(f"/v1/jobs/{job_id}/result", pace, job_id, client=self._results)
            return self._result(job_id, result)
        except JobFailed as exc:
            # it succeeded (its replica spent the GPU time, charged as reported), then its result was lost or unusable
            exc.billing = "charged"
            exc.retryable = False
            exc.compute_seconds = _float_or_none(state.get("gpu_seconds"))
            raise

    def _result(self, job_id: str, result: dict[str, Any]) -> ProviderResult:
        images = []
        for entry in result.get("images") or []:
            try:
                data = base64.b64decode(str(entry["data"]), validate=True)
            except (KeyError, TypeError, binascii.Error):
                raise JobFailed(
                    f"fleet job {job_id}: an image in the result is not base64", provider=NAME, billing="charged"
                ) from None
            images.append(
                decode_image(
                    data,
                    None,
                    provider=NAME,
                    max_pixels=self.settings.max_image_pixels,
                    flagged=bool(entry.get("flagged")),
                )
            )
        if not images:
            raise JobFailed(f"fleet job {job_id} succeeded without images", provider=NAME, billing="charged")
        timings = result.get("timings")
        return ProviderResult(
            job_id,
            images,
            seed=_int_or_none(result.get("seed")),
            timings={str(k): float(v) for k, v in timings.items()} if isinstance(timings, dict) else {},
            warnings=[str(w) for w in result.get("warnings") or []],
            review=str(result["review"]) if result.get("review") else None,
            seeds=[int(s) for s in result.get("seeds") or [] if isinstance(s, int)],
            compute_seconds=_float_or_none(result.get("compute_seconds")),
            worker=str(result["worker"]) if result.get("worker") else None,
        )

    async def _get(
        self,
        path: str,
        pace: Pace,
        job_id: str,
        *,
        params: dict[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> dict[str, Any]:
        """A JSON answer of the fleet about `job_id`. What may pass (no connection, a 5xx or 429 while the fleet
        restarts or redeploys, Serve's own 404 for an app not deployed yet, a garbled body) is retried until the
        deadline; the fleet saying it does not know the job (its ingress restarted: the job is lost) or that its
        result expired ends the wait."""
        while True:
            try:
                response = await (client or self._api).get(path, params=params)
                if response.status_code in (404, 410) and _fleet_said(response):
                    raise JobFailed(
                        f"fleet job {job_id}: {_detail(response)}",
                        provider=NAME,
                        provider_job_id=job_id,
                        status_code=response.status_code,
                        # a lost job made nothing; an expired result was made (its GPU time was spent)
                        billing="unbilled" if response.status_code == 404 else "charged",
                        retryable=response.status_code == 404,
                    )
                if response.is_error:
                    raise _http_error(response, job_id)
                answer = read_json(response, NAME, limit=self._max_result)
                pace.recovered()
                return answer
            except httpx.TransportError as exc:
                error: ProviderError = ProviderUnavailable(f"fleet job {job_id}: {type(exc).__name__}", provider=NAME)
            except JobFailed:
                raise
            except ProviderError as exc:
                error = exc
            await pace.retry(f"checking fleet job {job_id}", error)

    async def cancel(self, job_id: str, candidate: Candidate) -> CancelAnswer:
        """A queued job never starts; a running one stops before its next step. Either way it bills nothing."""
        try:
            response = await self._api.post(f"/v1/jobs/{job_id}/cancel")
            answer = read_json(response, NAME).get("answer") if response.is_success else None
        except (httpx.HTTPError, ProviderError):
            return "refused"
        return answer if answer in ("cancelled", "already_ended") else "refused"


def _progress(event: object) -> Progress:
    """A replica's progress event (the local worker's Progress, as JSON) as this provider's."""
    fields = event if isinstance(event, dict) else {}
    return Progress(
        NAME,
        str(fields.get("status") or "IN_PROGRESS"),
        str(fields.get("message") or "")[:300],
        queue_position=_int_or_none(fields.get("queue_position")),
        step=_int_or_none(fields.get("step")),
        total_steps=_int_or_none(fields.get("total_steps")),
        elapsed_s=float(fields.get("elapsed_s") or 0.0),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def _fleet_said(response: httpx.Response) -> bool:
    """Whether a 404/410 came from the fleet's own job API (a JSON `detail`), not from Serve's proxy (a route not
    deployed yet answers 404 in plain text)."""
    try:
        return isinstance(response.json().get("detail"), str)
    except (ValueError, AttributeError):
        return False


def _http_error(response: httpx.Response, job_id: str | None = None) -> ProviderError:
    return error_for_status(response, _detail(response), provider=NAME, job_id=job_id)
