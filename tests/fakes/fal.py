"""Protocol-faithful fake of fal.ai's queue (and run) hosts for the FLUX and upscaler endpoints, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import fal_schema, fal_wire
from tests.fakes.faults import Fault
from tests.fakes.images import decode_data_uri, size_of
from tests.fakes.jobs import Job, Outcome
from tests.fakes.server import ASGIApp, Receive, Scope, Send
from tests.fakes.service import FakeService
from tests.fakes.webhooks import FalWebhookSigner


def _detail(status: int, detail: Any, request_id: str | None = None) -> JSONResponse:
    headers = {"x-fal-request-id": request_id} if request_id else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _download_error(url: str) -> dict[str, Any]:
    """The 422 detail of an input image the runner could not download (fal's error type for it)."""
    return {
        "loc": ["body", "image_url"],
        "msg": "Failed to download the file. Please check if the URL is accessible.",
        "type": "file_download_error",
        "input": url[:200],
    }


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "0").lower() in ("1", "true")


class FalFake(FakeService):
    """Fake ``queue.fal.run`` (``base_url``) and ``fal.run`` (``run_url``), plus REST/CDN bits.

    The queue port also serves ``/.well-known/jwks.json``, ``/storage/auth/token``,
    ``/files/upload`` and ``/files/{name}``. Config (restored by ``reset()``): ``timings``
    ({"IN_QUEUE": s, "IN_PROGRESS": s}), ``queue_ahead`` (phantom requests ahead of each new
    one, each leaving after ``timings["IN_QUEUE"]``), ``concurrency_limit`` (real requests
    beyond it wait IN_QUEUE), ``nsfw_prompts`` (substrings), ``validate_at_submit`` (False:
    like fal, the queue accepts bad input and the request fails with 422 when it runs),
    ``honor_cancel_in_progress`` (default False: like fal, cancelling an IN_PROGRESS request
    only signals the runner, which finishes and bills it; a cancel while IN_QUEUE always
    cancels), ``result_retention_s`` (3600: ``GET …/requests/{id}`` answers 404 "Request not
    found" that long after completion), ``large_result_retention_s`` (360: the same for results
    of at least ``large_result_bytes``, 10 KiB, of JSON), ``file_expiry_s`` (files at
    ``/files/{name}`` answer 404 once that old; None = never), ``webhook_signing`` ("valid" |
    "forged" | "stale" | "unsigned"), ``default_i2i_size``, ``manual``, ``image_scale``,
    ``webhook_max_attempts``, ``webhook_retry_delay``.

    Upscalers (``fal_schema.UPSCALERS``: seedvr, clarity, esrgan, aura-sr) answer one ``image`` at the input's
    size times the factor. The input's size is read from a data: URI, a file on the fake's ``/files/``, or a
    bounded GET of a ``127.0.0.1``/``localhost`` URL (``input_fetch_max_bytes``; one that cannot be read fails
    the request at run time with a 422 ``file_download_error``); any other URL counts as ``default_i2i_size``.
    Their COMPLETED status reports ``metrics.inference_time`` = ``upscale_seconds_per_mp`` (Decimal, 0.35) per
    output megapixel in whole ms (``reported_inference_time(id)``), which esrgan is billed by exactly
    ($0.00111/s); seedvr ($0.001) and clarity ($0.03) bill per output megapixel rounded up; aura-sr bills
    ``aura_sr_price`` (Decimal USD per request, 0.01: fal publishes none). ``faults.drop_metrics()`` makes the
    next job's COMPLETED status carry no ``metrics``.
    """

    name: ClassVar[str] = "fal"
    accept_route: ClassVar[str] = "submit"
    waiting_status: ClassVar[str] = "IN_QUEUE"
    terminal_status: ClassVar[dict[Outcome, str]] = dict.fromkeys(Outcome, "COMPLETED")
    request_id_header: ClassVar[str | None] = "x-fal-request-id"
    port_count: ClassVar[int] = 2

    def __init__(self, key: str = "test-fal-key:secret", user_id: str = "test-user") -> None:
        self.key = key
        self.user_id = user_id
        self.signer = FalWebhookSigner()
        super().__init__()

    def configure(self) -> None:
        super().configure()
        self.timings: dict[str, float] = {"IN_QUEUE": 0.02, "IN_PROGRESS": 0.04}
        self.queue_ahead = 0
        self.nsfw_prompts: list[str] = []
        self.validate_at_submit = False
        self.honor_cancel_in_progress = False
        self.result_retention_s = 3600.0
        self.large_result_retention_s = 360.0
        self.large_result_bytes = 10 * 1024
        self.webhook_signing = "valid"
        self.default_i2i_size = (1024, 1024)
        self.upscale_seconds_per_mp = Decimal("0.35")
        self.aura_sr_price = Decimal("0.01")
        self.input_fetch_max_bytes = 32 * 1024 * 1024

    @property
    def run_url(self) -> str:
        return self.server.base_urls[1]

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/.well-known/jwks.json"

    def report_steps(self, request_id: str, steps_done: int) -> None:
        """Make a ``manual`` IN_PROGRESS request log ``steps_done`` denoising steps."""
        self.job(request_id).meta["steps_done"] = steps_done
        self._kick()

    def reported_inference_time(self, request_id: str) -> float | None:
        """The ``metrics.inference_time`` an upscale's COMPLETED status reports (None for other endpoints)."""
        seconds = self.job(request_id).meta.get("inference_time")
        return None if seconds is None else float(seconds)

    def rotate_webhook_key(self) -> str:
        """Sign with a new key from now on; the JWKS keeps publishing the old ones."""
        return self.signer.rotate()

    # --- wiring -----------------------------------------------------------------------------
    def build_app(self) -> ASGIApp:
        handlers = {HTTPException: self._http_exception}
        requests = "/{owner}/{app}/requests/{rid}"
        queue = Starlette(
            exception_handlers=handlers,
            routes=[
                Route("/.well-known/jwks.json", self._jwks, methods=["GET"]),
                Route("/storage/auth/token", self._cdn_token, methods=["POST"]),
                Route("/files/upload", self._upload, methods=["POST"]),
                Route("/files/{name}", self._file, methods=["GET"]),
                Route(requests + "/status/stream", self._stream, methods=["GET"]),
                Route(requests + "/status", self._status, methods=["GET"]),
                Route(requests + "/cancel", self._cancel, methods=["PUT"]),
                Route(requests, self._result, methods=["GET"]),
                Route("/{model_id:path}", self._submit, methods=["POST"]),
            ],
        )
        run = Starlette(exception_handlers=handlers, routes=[Route("/{model_id:path}", self._run, methods=["POST"])])

        async def by_port(scope: Scope, receive: Receive, send: Send) -> None:
            port = scope.get("server", ("", 0))[1]
            await (run if port == self.server.ports[1] else queue)(scope, receive, send)

        return by_port

    def classify(self, method: str, path: str, port: int) -> str:
        if self.server.ports and port == self.server.ports[-1]:
            return "run"
        if path.startswith("/.well-known/"):
            return "jwks"
        if path.startswith("/storage/"):
            return "upload_token"
        if path.startswith("/files/"):
            return "upload" if method == "POST" else "download"
        if "/requests/" in path:
            for suffix, route in (("/status/stream", "status_stream"), ("/status", "status"), ("/cancel", "cancel")):
                if path.endswith(suffix):
                    return route
            return "result"
        return "submit" if method == "POST" else "other"

    def error_body(self, status: int) -> Any:
        return {"detail": HTTPStatus(status).phrase}

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _detail(status, HTTPStatus(status).phrase)

    # --- terminal effects -------------------------------------------------------------------------
    def on_terminal(self, job: Job) -> None:
        if job.outcome is Outcome.COMPLETED and job.model in fal_schema.UPSCALERS:
            job.result = fal_wire.make_upscale_result(job, files=self.files, base_url=self.base_url)
        elif job.outcome is Outcome.COMPLETED:
            job.result = fal_wire.make_result(
                job, files=self.files, base_url=self.base_url, nsfw_prompts=self.nsfw_prompts
            )
        url = job.meta.get("webhook_url")
        if url:
            body = json.dumps(fal_wire.webhook_envelope(job)).encode()
            headers = self.signer.headers(job.id, self.user_id, body, mode=self.webhook_signing)
            self.send_webhook(job, url, body, headers)

    def status_body(self, job: Job, with_logs: bool) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.sync()
            waiting = [j.id for j in self.board.waiting_jobs()]
            return fal_wire.status_body(job, with_logs=with_logs, waiting_ids=waiting, now=time.monotonic())

    def result_expired(self, job: Job, payload: Any, now: float) -> bool:
        """Whether this finished request's result is gone: ``result_retention_s`` after completion,
        or ``large_result_retention_s`` when ``payload`` is at least ``large_result_bytes`` of JSON."""
        assert job.finished_at is not None
        size = len(json.dumps(payload).encode())
        keep = self.large_result_retention_s if size >= self.large_result_bytes else self.result_retention_s
        return now - job.finished_at >= keep

    # --- queue handlers ----------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Key {self.key}"

    def _unauthorized(self) -> JSONResponse:
        return _detail(401, "Unauthorized: missing or invalid key")

    async def _accept(self, request: Request, *, queued: bool) -> Job | Response:
        """Submit and run alike: auth, model, body, validation, then a new job."""
        if not self._authorized(request):
            return self._unauthorized()
        model_id = request.path_params["model_id"].strip("/")
        model = fal_schema.MODELS.get(model_id)
        upscaler = fal_schema.UPSCALERS.get(model_id)
        if model is None and upscaler is None:
            return _detail(404, f"Application '{request.path_params['model_id']}' not found")
        try:
            raw = json.loads(await request.body() or b"null")
        except ValueError:
            return _detail(422, [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}])
        if upscaler is not None:
            params, errors = fal_schema.validate_upscale(upscaler, raw)
        else:
            assert model is not None
            params, errors = fal_schema.validate(model, raw)
        if errors and (self.validate_at_submit or not queued):
            return _detail(422, errors)
        seed = params.get("seed")
        endpoint = upscaler if upscaler is not None else model
        assert endpoint is not None
        size, cost, seconds = (0, 0), Decimal("0"), None
        if not errors and upscaler is not None:
            found = await self._input_size(params["image_url"])
            if found is None:  # the runner could not download the input: a 422 when it runs
                errors = [_download_error(params["image_url"])]
            else:
                size = fal_schema.upscale_output_size(upscaler, params, *found)
                seconds = fal_schema.compute_seconds(*size, self.upscale_seconds_per_mp)
                cost = fal_schema.upscale_price(upscaler, *size, seconds=seconds, unpublished_price=self.aura_sr_price)
        elif not errors:
            assert model is not None
            size = self._size(model, params)
            cost = fal_schema.price(model, *size, params["num_images"])
        meta = {
            "base": str(request.base_url).rstrip("/"),
            "owner_app": endpoint.owner_app,
            "default_steps": endpoint.default_steps,
            "size": size,
            "inference_time": seconds,
            "seed": int(seed) if isinstance(seed, int | float) else random.randrange(2**31),
            "webhook_url": request.query_params.get("fal_webhook"),
            "ahead": self.queue_ahead,
            "slot": self.timings["IN_QUEUE"],
            "inference": self.timings["IN_PROGRESS"],
            "priority": request.headers.get("x-fal-queue-priority"),
            "runner_hint": request.headers.get("x-fal-runner-hint"),
            "start_timeout": request.headers.get("x-fal-request-timeout"),
        }
        phases = [("IN_QUEUE", self.timings["IN_QUEUE"] * (self.queue_ahead + 1))]
        if errors:  # the app rejects the input as soon as a runner picks the request up
            failure: Fault | None = Fault(
                "fail_job", error="Invalid status code: 422", details={"status_code": 422, "detail": errors}
            )
        else:
            phases.append(("IN_PROGRESS", self.timings["IN_PROGRESS"]))
            route = "submit" if queued else "run"
            failure = self.faults.take_job_failure(route)
            meta["drop_metrics"] = self.faults.take_job_fault("drop_metrics", route) is not None
        return self.create_job(model=model_id, input=params, price=cost, phases=phases, meta=meta, failure=failure)

    async def _input_size(self, url: str) -> tuple[int, int] | None:
        """An upscaler's input size: a data: URI decoded, a file on the fake's ``/files/``, a loopback URL
        fetched (at most ``input_fetch_max_bytes``); None when such an image cannot be read. Any other URL
        (the fake reaches no network) counts as ``default_i2i_size``."""
        data = decode_data_uri(url)
        if data is not None:
            return size_of(data)
        prefix = self.base_url + "/files/"
        if url.startswith(prefix):
            return await asyncio.to_thread(self.files.logical_size, url[len(prefix) :])
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            return self.default_i2i_size
        body = bytearray()
        try:
            async with httpx.AsyncClient(timeout=5.0) as client, client.stream("GET", url) as response:
                if response.is_error:
                    return None
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > self.input_fetch_max_bytes:
                        return None
        except httpx.HTTPError:
            return None
        return size_of(bytes(body))

    def _size(self, model: fal_schema.FalModel, params: dict[str, Any]) -> tuple[int, int]:
        """Output size: the t2i ``image_size``, or the input image's size when the fake can read it."""
        if model.kind in ("t2i", "redux"):
            return fal_schema.output_size(params["image_size"])
        url, prefix = params["image_url"], self.base_url + "/files/"
        data = decode_data_uri(url)
        if data is not None:
            return size_of(data) or self.default_i2i_size
        if url.startswith(prefix):
            return self.files.logical_size(url[len(prefix) :]) or self.default_i2i_size
        return self.default_i2i_size

    async def _submit(self, request: Request) -> Response:
        job = await self._accept(request, queued=True)
        if isinstance(job, Response):
            return job
        _, status = self.status_body(job, with_logs=False)
        body = {**fal_wire.request_urls(job), "status": "IN_QUEUE", "queue_position": status.get("queue_position", 0)}
        if job.meta["webhook_url"]:
            body["gateway_request_id"] = job.id
        return JSONResponse(body, headers={"x-fal-request-id": job.id})

    def _find(self, request: Request) -> Job | None:
        self.sync()
        with self.lock:
            job = self.board.jobs.get(request.path_params["rid"])
        owner_app = f"{request.path_params['owner']}/{request.path_params['app']}"
        return job if job is not None and job.meta["owner_app"] == owner_app else None

    async def _status(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        job = self._find(request)
        if job is None:
            return _detail(404, "Request not found")
        code, body = self.status_body(job, _wants_logs(request))
        return JSONResponse(body, status_code=code, headers={"x-fal-request-id": job.id})

    async def _stream(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        job = self._find(request)
        if job is None:
            return _detail(404, "Request not found")
        with_logs = _wants_logs(request)

        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                changed = self.changed_event  # taken before reading, so no transition is missed
                code, body = self.status_body(job, with_logs)
                data = json.dumps(body)
                if data != last:
                    last = data
                    yield f"data: {data}\n\n"
                if code == 200:  # the snapshot just sent, not job.terminal: it may have ended since
                    return
                await self.wait_changed(changed, 0.01)  # queue position and logs move between transitions

        return StreamingResponse(events(), media_type="text/event-stream", headers={"x-fal-request-id": job.id})

    async def _result(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        job = self._find(request)
        if job is None:
            return _detail(404, "Request not found")
        headers = {"x-fal-request-id": job.id}
        with self.lock:
            if not job.terminal:
                return _detail(400, "Request is still in progress", job.id)
            if job.outcome is Outcome.COMPLETED:
                code, body = 200, job.result
            else:
                code, body = fal_wire.error_response(job)
            if self.result_expired(job, body, time.monotonic()):
                return _detail(404, "Request not found", job.id)
            return JSONResponse(body, status_code=code, headers=headers)

    async def _cancel(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        job = self._find(request)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        headers = {"x-fal-request-id": job.id}
        with self.lock:
            if job.terminal:
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400, headers=headers)
            job.meta["cancel_requested"] = True
            if job.status != "IN_PROGRESS" or self.honor_cancel_in_progress:
                self.cancel(job.id)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202, headers=headers)

    async def _run(self, request: Request) -> Response:
        job = await self._accept(request, queued=False)
        if isinstance(job, Response):
            return job
        await self.wait_terminal(job)
        headers = {"x-fal-request-id": job.id}
        if job.outcome is Outcome.COMPLETED:
            return JSONResponse(job.result, headers=headers)
        code, body = fal_wire.error_response(job)
        return JSONResponse(body, status_code=code, headers=headers)

    # --- REST / CDN -------------------------------------------------------------------------------
    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.signer.jwks())

    async def _cdn_token(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        return JSONResponse(
            {"token": "fake-cdn-token", "token_type": "Bearer", "base_url": self.base_url, "expires_at": expires}
        )

    async def _upload(self, request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer fake-cdn-token":
            return self._unauthorized()
        suffix = request.headers.get("x-fal-file-name", "upload.bin").rsplit(".", 1)[-1]
        name = f"{uuid.uuid4()}.{suffix}"
        self.files.add_blob(name, await request.body(), request.headers.get("content-type", "application/octet-stream"))
        return JSONResponse({"access_url": f"{self.base_url}/files/{name}"})

    async def _file(self, request: Request) -> Response:
        found = await asyncio.to_thread(self.files.get, request.path_params["name"])
        if found is None:
            return _detail(404, "Not Found")
        return Response(found[0], media_type=found[1])
