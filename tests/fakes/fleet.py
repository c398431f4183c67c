"""Protocol-faithful fake of a fluxroute Ray fleet's HTTP API (fluxroute/fleet/app.py) on 127.0.0.1, and its fixture."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import pytest
from PIL import Image
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fluxroute.types import Candidate
from tests.fakes.faults import FaultLayer, Faults, RequestRecord
from tests.fakes.server import LoopbackServer

ENDED = frozenset({"succeeded", "failed", "cancelled"})
MAX_WAIT_S = 30.0  # app.py: a long poll waits at most this long
MAX_SUBMIT_BYTES = 64 * 1024 * 1024
NODE = "fake-node"
# what the fake's replicas hold unless a test says otherwise (endpoints of the catalog's local offers)
DEFAULT_WEIGHTS = (
    "black-forest-labs/FLUX.1-dev",
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-Krea-dev",
)
REVIEW = "unfiltered — review before distribution"


@functools.lru_cache(maxsize=32)
def png(width: int, height: int, colour: int = 0) -> bytes:
    """A solid PNG of ``width`` x ``height`` made by Pillow."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (colour % 256, 96, 255 - colour % 256)).save(out, "PNG")
    return out.getvalue()


@dataclass
class FleetJob:
    """One job on the fake's board (times: ``time.time()``, as the real board's ``created``/``ended``)."""

    id: str
    key: str
    candidate: dict[str, Any]
    created: float
    status: str = "queued"
    events: list[dict[str, Any]] = field(default_factory=list)
    replica: str | None = None
    gpu_seconds: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    ended: float | None = None
    expired: bool = False
    result_ttl_s: float | None = None  # None: the fake's ``result_ttl_s``
    failure: dict[str, Any] | None = None  # an armed fail_job fault: {"kind", "message", "retryable", "at_step"}
    lose: bool = False  # an armed lose_job fault: forgotten once it runs
    cancelled_while: str | None = None  # the status a cancel found it in
    task: asyncio.Task[None] | None = None

    def status_view(self, after: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "events": self.events[after:],
            "next": len(self.events),
            "replica": self.replica,
            "gpu_seconds": self.gpu_seconds,
            "error": self.error,
            "expired": self.expired,
            "created": self.created,
            "ended": self.ended,
        }


def _detail(status: int, detail: Any) -> JSONResponse:
    """FastAPI's HTTPException answer: ``{"detail": ...}``."""
    return JSONResponse({"detail": detail}, status_code=status)


def serve_not_found(path: str) -> PlainTextResponse:
    """What Ray Serve's proxy answers for a route no deployed application serves (plain text, no JSON)."""
    return PlainTextResponse(
        f"Path '{path}' not found. Ping http://127.0.0.1:8000/-/routes for available routes.", status_code=404
    )


class FleetFake:
    """Fake fleet ingress: ``POST /v1/jobs``, ``GET /v1/jobs/{id}`` (long poll), ``GET /v1/jobs/{id}/result``,
    ``POST /v1/jobs/{id}/cancel``, ``GET /v1/fleet``, as fleet/app.py documents them.

    A job waits ``queue_s`` at the ingress, then for a free replica (``replica_count`` of them, one job each; none
    while ``paused``), runs ``steps`` denoising steps of ``step_s`` (one progress event each, ``step``/``total_steps``;
    a running job halts after step ``hold_at_step`` until ``resume()``), and succeeds with ``num_images`` solid PNGs of
    the candidate's width x height, ``compute_seconds`` = steps x ``gpu_seconds_per_step`` and the replica's name as
    ``worker``. A repeated key answers with the job it made. Results expire ``result_ttl_s`` after the job ends
    (410, ``expired: true``). Cancel: a queued job never starts, a running one stops before its next step.

    Faults: ``faults`` (tests/fakes/faults.py, routes "submit", "status", "result", "cancel", "fleet") for HTTP
    answers: 5xx, 429 with Retry-After, garbled bodies, dropped connections, each before or after the request is
    handled (``faults.drop_after_accept()``: the job is made, its answer lost). Fleet faults: ``fail_job`` (the next
    job fails with an error kind), ``expire_result``, ``lose_job`` (forgotten once running, as after an ingress
    restart: 404 with a JSON detail), ``redeploying`` (Serve's plain-text 404 for the next N calls of a route).
    ``fired`` counts every fault that applied, ``"<kind>:<route>"`` (+ ``":after"`` for after-accept HTTP faults).
    ``reset()`` forgets jobs, faults, counts and config.
    """

    accept_route = "submit"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults(accept_route=self.accept_route, lock=self.lock)
        self.fleet_fired: Counter[str] = Counter()
        self.request_counts: Counter[str] = Counter()
        self.request_log: list[RequestRecord] = []
        self.jobs: dict[str, FleetJob] = {}
        self.keys: dict[str, str] = {}
        self._job_faults: deque[tuple[str, dict[str, Any]]] = deque()
        self._serve_404: dict[str, int] = {}
        self._queue: deque[str] = deque()
        self._busy: dict[str, str | None] = {}
        self._done: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._changed = asyncio.Event()
        layer = FaultLayer(
            self._build_app(),
            faults=self.faults,
            classify=self.classify,
            counts=self.request_counts,
            log=self.request_log,
            error_body=lambda status: {"detail": f"injected HTTP {status}"},
        )
        self.server = LoopbackServer(layer, name="fleet")
        self.configure()

    # --- config ---------------------------------------------------------------------------------
    def configure(self) -> None:
        self.replica_count = 2
        self.weights: list[str] = list(DEFAULT_WEIGHTS)
        self.queue_s = 0.01
        self.step_s = 0.01
        self.steps = 4
        self.paused = False
        self.hold_at_step: int | None = None
        self.gpu_seconds_per_step = 0.5
        self.result_ttl_s = 3600.0
        self.since = time.time()

    @property
    def replicas(self) -> list[str]:
        return [f"replica FleetWorker#{i} on {NODE}" for i in range(self.replica_count)]

    @property
    def base_url(self) -> str:
        return self.server.base_urls[0]

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._changed = asyncio.Event()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.submit(self._forget_jobs()).result(5)
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every job, fault, fired fault and counted request; restore config."""
        self.server.submit(self._forget_jobs()).result(5)
        with self.lock:
            self.faults.clear()
            self.fleet_fired.clear()
            self.request_counts.clear()
            self.request_log.clear()
            self._job_faults.clear()
            self._serve_404.clear()
            self._done.clear()
            self._failed.clear()
            self.configure()

    def restart_ingress(self) -> None:
        """The ingress restarts: its job board (jobs and keys) is gone; running jobs are lost."""
        self.server.submit(self._forget_jobs()).result(5)

    async def _forget_jobs(self) -> None:
        with self.lock:
            tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
            self.jobs.clear()
            self.keys.clear()
            self._queue.clear()
            self._busy.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._notify()

    # --- faults ---------------------------------------------------------------------------------
    @property
    def fired(self) -> Counter[str]:
        """Every fault that applied: the HTTP faults' ``faults.fired`` and the fleet faults'."""
        with self.lock:
            return self.faults.fired + self.fleet_fired

    def fail_job(
        self, kind: str = "job_failed", message: str = "injected failure", *, retryable: bool = False, at_step: int = 1
    ) -> None:
        """The next job made fails after ``at_step`` steps (0: as it starts) with error ``kind`` ("job_failed",
        "unavailable", "timeout", "lost", ...)."""
        with self.lock:
            self._job_faults.append(
                ("fail_job", {"kind": kind, "message": message, "retryable": retryable, "at_step": at_step})
            )

    def expire_result(self) -> None:
        """The next job made keeps its result no time at all after it succeeds (GET result: 410)."""
        with self.lock:
            self._job_faults.append(("expire_result", {}))

    def lose_job(self) -> None:
        """The next job made is forgotten once it runs (as after an ingress restart): status and result 404."""
        with self.lock:
            self._job_faults.append(("lose_job", {}))

    def redeploying(self, calls: int, route: str = "status") -> None:
        """The next ``calls`` requests of ``route`` get Serve's proxy's plain-text 404 (the app is redeploying)."""
        with self.lock:
            self._serve_404[route] = self._serve_404.get(route, 0) + calls

    # --- for tests --------------------------------------------------------------------------------
    def job(self, job_id: str) -> FleetJob:
        with self.lock:
            return self.jobs[job_id]

    def resume(self) -> None:
        """Let paused replicas take jobs and held jobs step on."""
        with self.lock:
            self.paused = False
            self.hold_at_step = None
        self.server.call_soon(self._notify)

    # --- HTTP -------------------------------------------------------------------------------------
    def classify(self, method: str, path: str, port: int) -> str:
        if path == "/v1/jobs":
            return "submit"
        if path == "/v1/fleet":
            return "fleet"
        if path.startswith("/v1/jobs/"):
            if path.endswith("/result"):
                return "result"
            if path.endswith("/cancel"):
                return "cancel"
            return "status"
        return "other"

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/jobs", self._submit, methods=["POST"]),
                Route("/v1/jobs/{job_id}", self._status, methods=["GET"]),
                Route("/v1/jobs/{job_id}/result", self._result, methods=["GET"]),
                Route("/v1/jobs/{job_id}/cancel", self._cancel, methods=["POST"]),
                Route("/v1/fleet", self._fleet, methods=["GET"]),
            ]
        )

    def _redeploying(self, route: str, path: str) -> Response | None:
        with self.lock:
            left = self._serve_404.get(route, 0)
            if left <= 0:
                return None
            self._serve_404[route] = left - 1
            self.fleet_fired[f"serve_404:{route}"] += 1
        return serve_not_found(path)

    def _job_or_404(self, job_id: str) -> FleetJob | Response:
        with self.lock:
            self._sweep()
            job = self.jobs.get(job_id)
        if job is None:
            return _detail(404, f"no job {job_id} here (never submitted, or forgotten a day after it ended)")
        return job

    async def _submit(self, request: Request) -> Response:
        if (answer := self._redeploying("submit", request.url.path)) is not None:
            return answer
        body = await request.body()
        if len(body) > MAX_SUBMIT_BYTES:
            return _detail(413, f"the body is over {MAX_SUBMIT_BYTES} bytes")
        try:
            value = json.loads(body)
        except ValueError:
            return _detail(400, "the body is not JSON")
        if not isinstance(value, dict):
            return _detail(400, "the body must be a JSON object")
        key = value.get("key")
        if not isinstance(key, str) or not 8 <= len(key) <= 100:
            return _detail(422, "key must be a string of 8 to 100 characters (the submitter's retry key)")
        try:
            candidate = Candidate.model_validate(value.get("candidate"))
        except ValidationError as exc:
            return _detail(422, f"candidate is not a valid fluxroute candidate: {str(exc)[:300]}")
        with self.lock:
            known = self.jobs.get(self.keys.get(key, ""))
            if known is not None:
                return JSONResponse({"id": known.id, "status": known.status}, status_code=202)
            job = FleetJob(f"ray-{uuid.uuid4().hex}", key, candidate.model_dump(mode="json"), created=time.time())
            self._arm(job)
            self.jobs[job.id] = job
            self.keys[key] = job.id
            self._queue.append(job.id)
            job.task = asyncio.get_running_loop().create_task(self._run(job))
            answer = JSONResponse({"id": job.id, "status": job.status}, status_code=202)
        return answer

    def _arm(self, job: FleetJob) -> None:
        if not self._job_faults:
            return
        kind, details = self._job_faults.popleft()
        self.fleet_fired[f"{kind}:submit"] += 1
        if kind == "fail_job":
            job.failure = details
        elif kind == "expire_result":
            job.result_ttl_s = 0.0
        elif kind == "lose_job":
            job.lose = True

    async def _status(self, request: Request) -> Response:
        if (answer := self._redeploying("status", request.url.path)) is not None:
            return answer
        found = self._job_or_404(request.path_params["job_id"])
        if not isinstance(found, FleetJob):
            return found
        job = found
        try:
            after = max(0, int(request.query_params.get("after", "0")))
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            return _detail(422, [{"type": "parsing", "loc": ["query"], "msg": "not a number"}])
        deadline = time.monotonic() + min(wait, MAX_WAIT_S)
        while wait > 0 and job.status not in ENDED and len(job.events) <= after and job.id in self.jobs:
            changed = self._changed
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        with self.lock:
            if job.id not in self.jobs:  # forgotten while the poll waited
                return _detail(404, f"no job {job.id} here (never submitted, or forgotten a day after it ended)")
            return JSONResponse(job.status_view(after))

    async def _result(self, request: Request) -> Response:
        if (answer := self._redeploying("result", request.url.path)) is not None:
            return answer
        found = self._job_or_404(request.path_params["job_id"])
        if not isinstance(found, FleetJob):
            return found
        job = found
        if job.status != "succeeded":
            return _detail(409, f"job {job.id} is {job.status}: no result")
        if job.result is None:
            return _detail(410, f"job {job.id}'s result expired (results are kept an hour after the job ends)")
        images = [{**image, "data": base64.b64encode(image["data"]).decode()} for image in job.result["images"]]
        return JSONResponse({**job.result, "images": images, "id": job.id})

    async def _cancel(self, request: Request) -> Response:
        if (answer := self._redeploying("cancel", request.url.path)) is not None:
            return answer
        found = self._job_or_404(request.path_params["job_id"])
        if not isinstance(found, FleetJob):
            return found
        job = found
        if job.status in ENDED or job.task is None or job.task.done():
            return JSONResponse({"answer": "already_ended"})
        job.cancelled_while = job.status
        job.task.cancel()
        return JSONResponse({"answer": "cancelled"})

    async def _fleet(self, request: Request) -> Response:
        if (answer := self._redeploying("fleet", request.url.path)) is not None:
            return answer
        now = time.time()
        with self.lock:
            replicas = [
                {
                    "replica": name.split()[1],
                    "node": NODE,
                    "device": "cuda (fake GPU)",
                    "weights": sorted(self.weights),
                    "warm": None,
                    "running": self._busy.get(name),
                    "done": self._done[name],
                    "failed": self._failed[name],
                    "gpu_seconds": 0.0,
                    "since": self.since,
                    "reported": now,
                    "state": "busy" if self._busy.get(name) else "idle",
                }
                for name in self.replicas
            ]
            counts: dict[str, int] = {}
            for job in self.jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
        weights = {endpoint: len(replicas) for endpoint in self.weights} if replicas else {}
        return JSONResponse({"app": "fluxroute", "replicas": replicas, "weights": weights, "jobs": counts})

    # --- jobs -------------------------------------------------------------------------------------
    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _until(self, ready: Any) -> None:
        while not ready():
            await self._changed.wait()

    async def _run(self, job: FleetJob) -> None:
        replica: str | None = None
        try:
            await asyncio.sleep(self.queue_s)

            def my_turn() -> bool:
                with self.lock:
                    free = [name for name in self.replicas if self._busy.get(name) is None]
                    return not self.paused and bool(free) and bool(self._queue) and self._queue[0] == job.id

            await self._until(my_turn)
            with self.lock:
                self._queue.popleft()
                replica = next(name for name in self.replicas if self._busy.get(name) is None)
                self._busy[replica] = job.id
                job.status, job.replica = "running", replica
            self._notify()
            if job.lose:
                self.server.call_soon(self._lose, job)
                return
            started = time.monotonic()
            failure = job.failure
            for step in range(1, self.steps + 1):
                if failure is not None and failure["at_step"] < step:
                    break
                await asyncio.sleep(self.step_s)
                await self._until(lambda s=step: self.hold_at_step is None or s <= self.hold_at_step)
                event = {
                    "provider": "local",
                    "status": "IN_PROGRESS",
                    "message": "denoising",
                    "queue_position": None,
                    "step": step,
                    "total_steps": self.steps,
                    "elapsed_s": round(time.monotonic() - started, 3),
                }
                with self.lock:
                    job.events.append(event)
                self._notify()
            with self.lock:
                if failure is not None:
                    job.error = {k: failure[k] for k in ("kind", "message", "retryable")}
                    self._end(job, "cancelled" if failure["kind"] == "cancelled" else "failed")
                    self._failed[replica] += 1
                else:
                    job.result = self._result_of(job, replica)
                    job.gpu_seconds = job.result["compute_seconds"]
                    self._end(job, "succeeded")
                    self._done[replica] += 1
        except asyncio.CancelledError:
            with self.lock:
                if job.id in self.jobs and job.status not in ENDED:
                    job.error = {"kind": "cancelled", "message": f"job {job.id} was cancelled", "retryable": False}
                    self._end(job, "cancelled")
                    if job.id in self._queue:
                        self._queue.remove(job.id)
                    if replica is not None:
                        self._failed[replica] += 1
        finally:
            with self.lock:
                if replica is not None and self._busy.get(replica) == job.id:
                    self._busy[replica] = None
            self._notify()

    def _lose(self, job: FleetJob) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
            if self.keys.get(job.key) == job.id:
                del self.keys[job.key]
            if job.replica is not None and self._busy.get(job.replica) == job.id:
                self._busy[job.replica] = None
        self._notify()

    def _result_of(self, job: FleetJob, replica: str) -> dict[str, Any]:
        candidate = job.candidate
        width, height, count = int(candidate["width"]), int(candidate["height"]), int(candidate["num_images"])
        params = candidate.get("params") or {}
        given = params.get("seed")
        seed = given if isinstance(given, int) else 1234
        return {
            "images": [
                {
                    "data": png(width, height, seed + i),
                    "width": width,
                    "height": height,
                    "content_type": "image/png",
                    "flagged": False,
                }
                for i in range(count)
            ],
            "seed": seed,
            "seeds": [seed + i for i in range(count)],
            "timings": {"inference_s": round(self.steps * self.step_s, 3)},
            "warnings": [],
            "review": REVIEW,
            "compute_seconds": round(self.steps * self.gpu_seconds_per_step, 3),
            "worker": replica,
        }

    def _end(self, job: FleetJob, status: str) -> None:
        job.status = status
        job.ended = time.time()

    def _sweep(self) -> None:
        now = time.time()
        for job in self.jobs.values():
            ttl = self.result_ttl_s if job.result_ttl_s is None else job.result_ttl_s
            if job.ended is not None and job.result is not None and now - job.ended >= ttl:
                job.result = None
                job.expired = True


# One server per session, reset() around every test (as the Krea and fal fakes).
@pytest.fixture(scope="session")
def fleet_fake_server() -> Iterator[FleetFake]:
    with FleetFake() as fake:
        yield fake


@pytest.fixture
def fleet_fake(fleet_fake_server: FleetFake) -> Iterator[FleetFake]:
    """A running ``FleetFake`` in default state; its URL is ``.base_url`` (FLUXROUTE_RAY_URL)."""
    fleet_fake_server.reset()
    yield fleet_fake_server
    fleet_fake_server.reset()
