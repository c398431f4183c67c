"""The fleet as a Ray Serve application: an ingress with a job-id HTTP API in front of N worker replicas, each
holding one warm pipeline (the local provider, its memory plan applied to the replica's own GPU).

    POST /v1/jobs                   {"key", "candidate", "public"} -> 202 {"id", "status"}; the same key again: the
                                    same job; 429 (Retry-After) while 1000 jobs, or 1 GB of them, wait for a replica
    GET  /v1/jobs/{id}?after=N&wait=S  state, progress events from N on; waits up to S s (<= 30) for a change
    GET  /v1/jobs/{id}/result       the images (base64) and what the replica reported: seed, timings, GPU-seconds
    POST /v1/jobs/{id}/cancel       {"answer": "cancelled" | "already_ended"}
    GET  /v1/fleet                  the replicas (device, weights present, warm model, running job, jobs done)

A job goes to a worker through a streaming Serve handle with a multiplexed model id (the weights and the LoRAs it
names): Serve sends it to a replica that ran the same weights and LoRAs recently when one is free, else to any free
replica (each takes one job at a time, so a long queue waits at the ingress and is balanced as replicas free up).
The replica streams "started", progress events and the result back; the ingress keeps them on its job board
(fleet/jobs.py), which is what a router follows by id, also after its own restart. Cancel cancels the Serve request:
a queued job never starts, a running one stops before its next denoising step.

The ingress is one replica (the job board lives in it); workers report their state to it every few seconds.
(No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time.)
"""

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from fluxroute.errors import Cancelled, ProviderError, ProviderTimeout, ProviderUnavailable
from fluxroute.fleet.jobs import ENDED, FleetJob, JobBoard, QueueFull
from fluxroute.providers.base import Progress, ProviderResult
from fluxroute.settings import Settings
from fluxroute.types import Candidate

log = logging.getLogger("fluxroute.fleet")

APP_NAME = "fluxroute"
INGRESS = "FleetIngress"
WORKER = "FleetWorker"
# a submission body (a candidate with its input images as data: URIs) is at most this large
MAX_SUBMIT_BYTES = 64 * 1024 * 1024
MAX_WAIT_S = 30.0
REPORT_EVERY_S = 5.0
# a replica that has not reported for this long is shown as "silent" (it may be restarting or gone)
SILENT_AFTER_S = 30.0
# how many weights + LoRA sets a replica is routed as holding (Serve's multiplexing LRU): one, as the local worker
# keeps one pipeline and one LoRA set warm
HELD_MODELS = 1
# a job that reached a replica without its weights is sent on this many times at most (Serve's multiplexed routing
# prefers the replicas that ran it, but falls back to any free one)
DISPATCHES = 4
# a replica sends its progress events at most this often (those of faster steps travel together)
PROGRESS_EVERY_S = 0.1
# a replica's local job may run this long before it gives up (the router's own timeout cancels sooner)
JOB_TIMEOUT_S = 6 * 3600.0

api = FastAPI(title="fluxroute fleet", docs_url=None, redoc_url=None)


def affinity(candidate: Candidate) -> str:
    """The multiplexed model id of a job: its weights and LoRAs (in order, as they are loaded), so that jobs alike
    go where they ran last."""
    loras = candidate.params.get("loras")
    entries = loras if isinstance(loras, list) else []
    refs = [str(entry.get("ref")) for entry in entries if isinstance(entry, dict)]
    return "+".join([candidate.endpoint, *refs])


def _error_item(exc: ProviderError) -> dict[str, Any]:
    kind = (
        "cancelled"
        if isinstance(exc, Cancelled)
        else "unavailable"
        if isinstance(exc, ProviderUnavailable)
        else "timeout"
        if isinstance(exc, ProviderTimeout)
        else "job_failed"
    )
    return {"kind": "failed", "error": {"kind": kind, "message": str(exc), "retryable": exc.retryable}}


def _result_item(result: ProviderResult, replica: str) -> dict[str, Any]:
    return {
        "kind": "result",
        "result": {
            "images": [
                {"data": i.data, "width": i.width, "height": i.height, "content_type": i.content_type}
                | {"flagged": i.flagged}
                for i in result.images
            ],
            "seed": result.seed,
            "seeds": list(result.seeds),
            "timings": dict(result.timings),
            "warnings": list(result.warnings),
            "review": result.review,
            "compute_seconds": result.compute_seconds,
            "worker": replica,
        },
    }


@serve.deployment(name=WORKER, max_ongoing_requests=1)
class FleetWorker:
    """One replica: one warm pipeline on its device, one job at a time."""

    def __init__(self, settings_fields: dict[str, Any]) -> None:
        from fluxroute.providers.local import LocalProvider

        self.settings = Settings.model_validate(settings_fields)
        self.provider = LocalProvider(self.settings)
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id
        self.replica = f"replica {self.replica_id} on {socket.gethostname()}"
        self.app_name = context.app_name
        self.started = time.time()
        self.device = self._device()
        self.weights = self._weights_here()
        self.running: str | None = None
        self.warm: str | None = None
        self.done = 0
        self.failed = 0
        self.gpu_seconds = 0.0
        self._stop = threading.Event()
        self._poke = threading.Event()  # report now: a job started or ended
        threading.Thread(target=self._report_loop, name="fluxroute-fleet-report", daemon=True).start()

    def _device(self) -> str:
        if self.settings.local_device == "cpu":
            return "cpu"
        try:
            import torch  # type: ignore[import-not-found, unused-ignore]

            if torch.cuda.is_available():
                return f"cuda ({torch.cuda.get_device_name(0)})"
        except ImportError:
            pass
        return "no CUDA GPU"

    def _weights_here(self) -> dict[str, str]:
        """Each local offer's endpoint -> "" when this replica can run it, else why not (weights, packages, device)."""
        from fluxroute.catalog import load_catalog
        from fluxroute.providers.availability import local_availability_by_repo

        endpoints = [o.endpoint for o in load_catalog().offers if o.provider == "local"]
        found = local_availability_by_repo(self.settings, endpoints)
        return {repo: "" if answer.ok else answer.reason for repo, answer in found.items()}

    def state(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "node": socket.gethostname(),
            "device": self.device,
            "weights": sorted(repo for repo, why in self.weights.items() if not why),
            "warm": self.warm,
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
            "gpu_seconds": round(self.gpu_seconds, 3),
            "since": self.started,
        }

    def _report_loop(self) -> None:
        """Report this replica's state to the ingress now, every REPORT_EVERY_S and whenever a job starts or ends
        (on a thread: the handle's blocking result() must not run on the replica's event loop)."""
        handle: DeploymentHandle[Any] | None = None
        while not self._stop.is_set():
            try:
                handle = handle or serve.get_deployment_handle(INGRESS, app_name=self.app_name)
                handle.report.remote(self.state()).result(timeout_s=10)
            except Exception as exc:  # the ingress may be starting or restarting: report again later
                log.debug("fleet report failed: %s", exc)
            self._poke.wait(REPORT_EVERY_S)
            self._poke.clear()

    @serve.multiplexed(max_num_models_per_replica=HELD_MODELS)  # type: ignore[untyped-decorator]
    async def hold(self, model_id: str) -> str:
        """Serve's multiplexing: this replica now counts as holding `model_id` (weights + LoRAs), so jobs alike are
        routed here first while it is free. The pipeline itself stays warm in the local worker."""
        return model_id

    def refusal(self, candidate: Candidate, public: bool) -> str | None:
        """Why this replica must not run `candidate`: it lacks the weights (another replica may have them), or the
        weights' license asks for content filtering where end users reach the deployment (`public`: the router
        that sent the job is reachable by others) and this replica has no checker; None when it may."""
        why = self.weights.get(candidate.endpoint)
        if why:
            return f"{self.replica}: {why}"
        if not public:
            return None
        from fluxroute.catalog import license_refusal, load_catalog

        catalog = load_catalog()
        try:  # the local offer this fleet offer mirrors: its license, as the router planned it
            offer = catalog.offer("local-" + candidate.offer_id.removeprefix("ray-"))
        except KeyError:
            return None
        # only the content-filter clause is the replica's to judge (usage was the router's): asked as non-commercial
        reachable = self.settings.model_copy(update={"remote_reachable": True})
        why = license_refusal(catalog.licenses[offer.license], offer, reachable, "non-commercial")
        return f"{self.replica}, deployed without FLUXROUTE_LOCAL_CONTENT_CHECKER: {why}" if why else None

    async def run(self, job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run one job, streaming {"kind": "started"}, {"kind": "progress", "events"}s, then {"kind": "result"} or
        {"kind": "failed"} ("not_here" when this replica lacks the job's weights: the ingress sends it on).
        Cancelled by the ingress (Serve raises CancelledError here): the local job stops before its next step."""
        candidate = Candidate.model_validate(job["candidate"])
        refused = self.refusal(candidate, bool(job.get("public")))
        if refused is not None:
            kind = "not_here" if candidate.endpoint in self.weights else "unavailable"
            yield {"kind": "failed", "error": {"kind": kind, "message": refused, "retryable": True}}
            return
        model_id = serve.get_multiplexed_model_id()
        if model_id:
            await self.hold(model_id)  # only once it can run here: Serve then routes jobs alike to this replica
        yield {"kind": "started", "replica": self.replica}
        events: asyncio.Queue[Progress] = asyncio.Queue()

        async def progress(event: Progress) -> None:
            events.put_nowait(event)

        try:
            local_id = await self.provider.submit(candidate)
        except ProviderError as exc:
            self.failed += 1
            yield _error_item(exc)
            return
        job_id = str(job.get("id"))
        self.running = job_id
        self._poke.set()
        wait = asyncio.ensure_future(self.provider.wait(local_id, candidate, progress, JOB_TIMEOUT_S))
        getter: asyncio.Future[Progress] | None = None
        try:
            while not (wait.done() and events.empty()):
                batch: list[dict[str, Any]] = []
                if events.empty():
                    getter = asyncio.ensure_future(events.get())
                    await asyncio.wait({wait, getter}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        continue
                    batch.append(dataclasses.asdict(getter.result()))
                    # one stream item per PROGRESS_EVERY_S at most: fast steps travel together
                    await asyncio.wait({wait}, timeout=PROGRESS_EVERY_S)
                batch.extend(dataclasses.asdict(events.get_nowait()) for _ in range(events.qsize()))
                yield {"kind": "progress", "events": batch}
            result = wait.result()
        except asyncio.CancelledError:
            if getter is not None:
                getter.cancel()
            await self.provider.cancel(local_id, candidate)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(wait), 60)
            raise
        except ProviderError as exc:
            if isinstance(exc, ProviderTimeout):
                await self.provider.cancel(local_id, candidate)  # it stops holding the GPU for the next job
            self.failed += 1
            yield _error_item(exc)
            return
        finally:
            if self.running == job_id:
                self.running = None
            self._poke.set()
        self.done += 1
        self.warm = model_id or candidate.endpoint  # its weights, and the LoRAs left resident
        self.gpu_seconds += result.compute_seconds or 0.0
        self._poke.set()
        yield _result_item(result, self.replica)

    def __del__(self) -> None:
        self._stop.set()
        self._poke.set()


async def _bounded_json(request: Request, limit: int) -> tuple[dict[str, Any], int]:
    """The request's JSON object and its size, read without ever holding more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"the body is over {limit} bytes")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value, len(body)


@serve.deployment(name=INGRESS, num_replicas=1, max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class FleetIngress:
    """The fleet's front door and its job board."""

    def __init__(self, worker: DeploymentHandle[Any], token_sha256: str | None = None) -> None:
        self.worker = worker
        # the fleet token's SHA-256 (the token itself is never part of the deployment); None: no token asked
        self._token_sha256 = token_sha256
        self.board = JobBoard()
        self.streams: dict[str, DeploymentResponseGenerator[Any]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def report(self, state: dict[str, Any]) -> None:
        """A worker replica's state (called through a handle by each replica, not over HTTP)."""
        self.reports[str(state["replica"])] = {**state, "reported": time.time()}

    def _authorize(self, request: Request) -> None:
        if self._token_sha256 is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = hashlib.sha256(token.strip().encode()).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._token_sha256):
            raise HTTPException(401, "this fleet requires its bearer token (FLUXROUTE_RAY_TOKEN)")

    @api.get("/v1/fleet")
    async def fleet(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        now = time.time()
        replicas = []
        for state in sorted(self.reports.values(), key=lambda s: s["since"]):
            silent = now - state["reported"] > SILENT_AFTER_S
            replicas.append({**state, "state": "silent" if silent else "busy" if state["running"] else "idle"})
        # old silent replicas (replaced by Serve) drop out after a while
        self.reports = {r: s for r, s in self.reports.items() if now - s["reported"] < 10 * SILENT_AFTER_S}
        weights: dict[str, int] = {}
        for replica in replicas:
            if replica["state"] != "silent":
                for repo in replica["weights"]:
                    weights[repo] = weights.get(repo, 0) + 1
        return {"app": APP_NAME, "replicas": replicas, "weights": weights, "jobs": self.board.counts()}

    @api.post("/v1/jobs", status_code=202)
    async def submit(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        body, size = await _bounded_json(request, MAX_SUBMIT_BYTES)
        key = body.get("key")
        if not isinstance(key, str) or not 8 <= len(key) <= 100:
            raise HTTPException(422, "key must be a string of 8 to 100 characters (the submitter's retry key)")
        try:
            candidate = Candidate.model_validate(body.get("candidate"))
        except ValueError as exc:
            raise HTTPException(422, f"candidate is not a valid fluxroute candidate: {str(exc)[:300]}") from None
        try:
            job, new = self.board.create(key, affinity(candidate), size)
        except QueueFull as exc:
            raise HTTPException(429, f"{exc}; try again later", headers={"Retry-After": "5"}) from None
        if new:
            work = {"id": job.id, "candidate": candidate.model_dump(mode="json"), "public": bool(body.get("public"))}
            task = asyncio.get_running_loop().create_task(self._follow(job, work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return {"id": job.id, "status": job.status}

    async def _follow(self, job: FleetJob, work: dict[str, Any]) -> None:
        """Send `work` to a worker replica and record what it streams back, until the job ends. A replica without
        the job's weights answers "not_here": the job is sent again (DISPATCHES times at most)."""
        from ray.serve.exceptions import RequestCancelledError

        try:
            for _ in range(DISPATCHES):
                if job.status in ENDED:  # cancelled meanwhile
                    return
                stream: DeploymentResponseGenerator[Any] = self.worker.options(  # type: ignore[assignment]
                    stream=True, multiplexed_model_id=job.model_id
                ).run.remote(work)
                self.streams[job.id] = stream
                not_here: dict[str, Any] | None = None
                async for item in stream:
                    if item.get("kind") == "failed" and item["error"].get("kind") == "not_here":
                        not_here = item["error"]
                        break
                    self.board.record(job, item)
                if not_here is None:
                    return
            # every try reached a replica without the weights
            self.board.fail(job, "unavailable", str((not_here or {}).get("message")), retryable=True)
        except RequestCancelledError:
            self.board.fail(job, "cancelled", f"job {job.id} was cancelled", retryable=False)
        except Exception as exc:  # the replica died or the request was lost: the job cannot finish
            message = f"job {job.id} was lost by the fleet ({type(exc).__name__})"
            self.board.fail(job, "lost", message, retryable=True)
        finally:
            self.streams.pop(job.id, None)
            # ended here whatever stopped the stream (a bare cancellation from Serve or a shutdown included)
            self.board.fail(job, "lost", f"job {job.id} ended on the fleet without a result", retryable=True)

    def _job(self, job_id: str) -> FleetJob:
        job = self.board.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id} here (never submitted, or forgotten a day after it ended)")
        return job

    @api.get("/v1/jobs/{job_id}")
    async def status(self, request: Request, job_id: str, after: int = 0, wait: float = 0.0) -> dict[str, Any]:
        self._authorize(request)
        job = self._job(job_id)
        after = max(0, after)
        if wait > 0 and job.status not in ENDED and len(job.events) <= after:
            await self.board.wait_for_change(job, after, min(wait, MAX_WAIT_S))
        return job.status_view(after)

    @api.get("/v1/jobs/{job_id}/result")
    async def result(self, request: Request, job_id: str) -> dict[str, Any]:
        self._authorize(request)
        job = self._job(job_id)
        if job.status != "succeeded":
            raise HTTPException(409, f"job {job_id} is {job.status}: no result")
        if job.result is None:
            raise HTTPException(
                410, f"job {job_id}'s result expired (results are kept an hour after the job ends, 2 GB in all)"
            )
        images = [{**image, "data": base64.b64encode(image["data"]).decode()} for image in job.result["images"]]
        job.fetched = True
        return {**job.result, "images": images, "id": job.id}

    @api.post("/v1/jobs/{job_id}/cancel")
    async def cancel(self, request: Request, job_id: str) -> dict[str, str]:
        self._authorize(request)
        job = self._job(job_id)
        stream = self.streams.get(job_id)
        if job.status in ENDED:
            return {"answer": "already_ended"}
        # ended on the board first: a result still on its way is then dropped, so the answer holds (cancelled:
        # nothing billed); a queued job never starts, a running one stops before its next step
        self.board.fail(job, "cancelled", f"job {job_id} was cancelled", retryable=False)
        if stream is not None:
            stream.cancel()  # type: ignore[no-untyped-call]
        return {"answer": "cancelled"}


def build_app(
    settings_fields: dict[str, Any],
    *,
    replicas: int,
    gpus_per_replica: float,
    cpus_per_replica: float,
    token_sha256: str | None = None,
) -> serve.Application:
    """The fleet application: `replicas` workers (each with `gpus_per_replica` GPUs and `cpus_per_replica` CPUs of
    the cluster) built from `settings_fields` (the local_* settings the replicas run with), behind one ingress that
    asks for the token whose SHA-256 is `token_sha256` (None: none)."""
    worker = FleetWorker.options(  # type: ignore[attr-defined]
        num_replicas=replicas,
        ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica},
    ).bind(settings_fields)
    return FleetIngress.bind(worker, token_sha256)  # type: ignore[attr-defined, no-any-return]
