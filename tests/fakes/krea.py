"""Protocol-faithful fake of the Krea API (image generation jobs) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any, ClassVar, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.images import ImageSpec, size_of
from tests.fakes.jobs import Job, Outcome, iso
from tests.fakes.krea_schema import ENDPOINTS, KreaBadRequest, output_size, validate
from tests.fakes.server import ASGIApp
from tests.fakes.service import FakeService

KREA_STATUSES = (
    "backlogged",
    "queued",
    "scheduled",
    "processing",
    "sampling",
    "intermediate-complete",
    "completed",
    "failed",
    "cancelled",
)
CONCURRENCY_ERROR = "You have reached the maximum number of concurrent jobs."
CANCELLABLE = ("queued", "processing")  # docs job-lifecycle: "only ... queued or processing"
# POST /assets: "JPEG, PNG, WebP, HEIC, MP4, MOV, WebM, GLB, WAV, MP3 ... Maximum size: 75MB" (the image ones here)
ASSET_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}
ASSET_MAX_BYTES = 75 * 1000 * 1000
# request fields whose values the API fetches (OpenAPI `"format": "uri"`): image_url, and the `url` of items
IMAGE_URL_FIELDS = ("image_url", "imageUrl", "style_images", "styleImages", "image_style_references", "imageStyleRefs")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class KreaFake(FakeService):
    """Fake ``https://api.krea.ai``: ``POST /generate/image/{vendor}/{model}``, ``/jobs``, ``/files``.

    Config (restored by ``reset()``): ``balance`` (Decimal USD or None = unlimited),
    ``concurrency_limit`` (None = unlimited), ``over_limit`` ("backlog" | "reject"),
    ``backlog_limit`` (None = unlimited; a full backlog answers 429), ``intermediate_complete``
    (pass through that status), ``timings`` (seconds per status), ``status_rate_limit``
    (None, or ``(max requests, per window seconds)`` for ``GET /jobs/{id}``: beyond it the poll
    answers 429 ``{"error": "Too many requests"}`` with ``Retry-After: status_retry_after``
    (default "1"), counted in ``request_counts["get_job_429"]``), ``file_expiry_s`` (result
    files answer 404 once that old; None = never), ``manual``, ``image_scale``,
    ``webhook_max_attempts``, ``webhook_retry_delay``.

    ``DELETE /jobs/{id}`` cancels only ``queued`` or ``processing`` jobs (Krea's docs); any other
    status answers 400 ``{"error": "Job cannot be cancelled: its status is <status>"}``.
    """

    name: ClassVar[str] = "krea"
    accept_route: ClassVar[str] = "create"
    waiting_status: ClassVar[str] = "backlogged"

    def __init__(self, token: str = "test-krea-token") -> None:
        self.token = token
        super().__init__()

    def configure(self) -> None:
        super().configure()
        self.balance: Decimal | None = None
        self.over_limit: Literal["backlog", "reject"] = "backlog"
        self.backlog_limit: int | None = None
        self.intermediate_complete = False
        self.timings: dict[str, float] = {
            "queued": 0.02,
            "scheduled": 0.02,
            "processing": 0.02,
            "sampling": 0.02,
            "intermediate-complete": 0.02,
        }
        self.status_rate_limit: tuple[int, float] | None = None
        self.status_retry_after = "1"
        self._status_polls: deque[float] = deque()  # when admitted ``GET /jobs/{id}`` polls arrived
        self.asset_max_bytes = ASSET_MAX_BYTES
        self.assets: dict[str, dict[str, Any]] = {}  # id -> the asset object ``POST /assets`` answered

    # --- wiring -----------------------------------------------------------------------------
    def build_app(self) -> ASGIApp:
        routes = [
            Route("/generate/image/{vendor}/{model:path}", self._create, methods=["POST"]),
            Route("/jobs", self._list, methods=["GET"]),
            Route("/jobs/{job_id}", self._get, methods=["GET"]),
            Route("/jobs/{job_id}", self._delete, methods=["DELETE"]),
            Route("/files/{name}", self._file, methods=["GET"]),
            Route("/assets", self._upload_asset, methods=["POST"]),
            Route("/assets/{asset_id}", self._get_asset, methods=["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_exception})

    def classify(self, method: str, path: str, port: int) -> str:
        if path.startswith("/generate/"):
            return "create"
        if path.startswith("/files/"):
            return "download"
        if path.rstrip("/") == "/assets":
            return "upload_asset" if method == "POST" else "list_assets"
        if path.startswith("/assets/"):
            return "get_asset"
        if path.rstrip("/") == "/jobs":
            return "list_jobs"
        if path.startswith("/jobs/"):
            return "cancel" if method == "DELETE" else "get_job"
        return "other"

    def error_body(self, status: int) -> Any:
        return {"error": HTTPStatus(status).phrase}

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, HTTPStatus(status).phrase)

    # --- representation -----------------------------------------------------------------------
    def job_json(self, job: Job) -> dict[str, Any]:
        """The Job object exactly as ``GET /jobs/{id}`` returns it."""
        result: dict[str, Any] | None = None
        if job.outcome is Outcome.COMPLETED:
            result = {"urls": list(job.result)}
        elif job.outcome is Outcome.FAILED:
            result = {"error": job.error}
        finished = job.finished_wall
        return {
            "job_id": job.id,
            "status": job.status,
            "created_at": iso(job.created_wall),
            "completed_at": iso(finished) if finished is not None else None,
            "result": result,
        }

    def on_terminal(self, job: Job) -> None:
        if job.outcome is Outcome.COMPLETED:
            width, height = job.meta["size"]
            name = f"{job.id}-0.png"
            self.files.add_image(name, ImageSpec(width, height, "png", seed=job.meta["seed"] % 256))
            job.result = [f"{self.base_url}/files/{name}"]
            if self.balance is not None:
                self.balance -= job.price
        url = job.meta.get("webhook_url")
        if url:
            self.send_webhook(job, url, json.dumps(self.job_json(job)).encode(), {})

    # --- handlers ------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    async def _create(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        endpoint = ENDPOINTS.get(f"{request.path_params['vendor']}/{request.path_params['model']}")
        if endpoint is None:
            return _error(404, "Not Found")
        try:
            raw = json.loads(await request.body() or b"null")
        except ValueError:
            return _error(400, "body: invalid JSON")
        try:
            body = validate(endpoint, raw)
            self._check_image_urls(body)
        except KreaBadRequest as exc:
            return _error(400, str(exc))
        webhook_url = request.headers.get("x-webhook-url")
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            return _error(400, "X-Webhook-URL: must be an http(s) URL")
        price = endpoint.price_for(body)
        with self.lock:
            self.sync()
            if self.balance is not None and price > self.balance:
                return _error(402, "Insufficient balance")
            if not self.board.has_capacity() or self.board.waiting_jobs():
                if self.over_limit == "reject":
                    return _error(429, CONCURRENCY_ERROR)
                if self.backlog_limit is not None and len(self.board.waiting_jobs()) >= self.backlog_limit:
                    return _error(429, CONCURRENCY_ERROR)
            seed = body.get("seed")
            meta = {
                "endpoint": endpoint.path,
                "type": endpoint.job_type,
                "size": output_size(endpoint, body),
                "webhook_url": webhook_url,
                "seed": int(seed) if seed is not None else random.randrange(2**32),
                "body": raw,
            }
            names = ["queued", "scheduled", "processing", "sampling"]
            if self.intermediate_complete:
                names.append("intermediate-complete")
            job = self.create_job(
                model=endpoint.path,
                input=body,
                price=price,
                phases=[(name, self.timings[name]) for name in names],
                meta=meta,
                failure=self.faults.take_job_failure("create"),
            )
            return JSONResponse(self.job_json(job))

    def add_foreign_job(self, job_type: str = "k1", price: Decimal = Decimal("0")) -> Job:
        """A job of another type on the same account (Krea's web app: ``k1``, ``externalImage``...), created
        now: ``GET /jobs`` lists it like any other, and only its ``types`` filter tells it apart."""
        with self.lock:
            return self.create_job(
                model=f"app/{job_type}",
                input={"prompt": "made in the web app"},
                price=price,
                phases=[(name, self.timings[name]) for name in ("queued", "scheduled", "processing", "sampling")],
                meta={"endpoint": None, "type": job_type, "size": (64, 64), "webhook_url": None, "seed": 0},
            )

    def _check_image_urls(self, body: dict[str, Any]) -> None:
        """Image fields are URLs the API fetches (``"format": "uri"``): a ``data:`` URI is refused (images are
        uploaded with ``POST /assets`` first), and a URL on this fake must name a file it serves."""
        urls: list[tuple[str, Any]] = []
        for name in IMAGE_URL_FIELDS:
            value = body.get(name)
            if isinstance(value, list):
                urls += [
                    (f"{name}[{i}].url", item.get("url")) for i, item in enumerate(value) if isinstance(item, dict)
                ]
            else:
                urls.append((name, value))
        own = self.base_url + "/files/"
        for field, url in urls:
            if url is None:
                continue
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise KreaBadRequest(f"{field}: must be an http(s) URL (upload images with POST /assets)")
            if url.startswith(own) and self.files.get(url[len(own) :]) is None:
                raise KreaBadRequest(f"{field}: the image could not be fetched")

    async def _upload_asset(self, request: Request) -> Response:
        """``POST /assets``: multipart ``file`` (required) and optional ``description``; 400 for a missing
        file, another type or a larger one than ``asset_max_bytes``; the file is then served at ``image_url``."""
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _error(400, "Invalid file type or size: expected multipart/form-data")
        try:
            form = await request.form(max_part_size=self.asset_max_bytes + 1)
        except Exception:
            return _error(400, "Invalid file type or size")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _error(400, "file: required")
        data = await upload.read()
        media_type = (upload.content_type or "").lower()
        if media_type not in ASSET_TYPES:
            return _error(400, f"Invalid file type: {media_type or 'unknown'}")
        if len(data) > self.asset_max_bytes:
            return _error(400, f"Invalid file size: larger than {self.asset_max_bytes} bytes")
        asset_id = str(uuid.uuid4())
        name = f"asset-{asset_id}.{ASSET_TYPES[media_type]}"
        self.files.add_blob(name, data, media_type)
        width, height = size_of(data) or (None, None)
        asset: dict[str, Any] = {
            "id": asset_id,
            "image_url": f"{self.base_url}/files/{name}",
            "uploaded_at": iso(datetime.now(UTC)),
            "width": width,
            "height": height,
            "size_bytes": len(data),
            "mime_type": media_type,
        }
        description = form.get("description")
        if isinstance(description, str):
            asset["description"] = description
        with self.lock:
            self.assets[asset_id] = asset
        return JSONResponse(asset)

    async def _get_asset(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        with self.lock:
            asset = self.assets.get(request.path_params["asset_id"])
        if asset is None:
            return _error(404, "Asset not found")
        return JSONResponse(asset)

    def _lookup(self, request: Request) -> Job | None:
        self.sync()
        return self.board.jobs.get(request.path_params["job_id"])

    def _status_rate_limited(self) -> bool:
        """Sliding window over admitted status polls; True (and counted) when this one is over it."""
        if self.status_rate_limit is None:
            return False
        limit, window = self.status_rate_limit
        now = time.monotonic()
        while self._status_polls and self._status_polls[0] <= now - window:
            self._status_polls.popleft()
        if len(self._status_polls) >= limit:
            self.request_counts["get_job_429"] += 1
            return True
        self._status_polls.append(now)
        return False

    async def _get(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        with self.lock:
            if self._status_rate_limited():
                return JSONResponse(
                    {"error": "Too many requests"},
                    status_code=429,
                    headers={"Retry-After": str(self.status_retry_after)},
                )
            job = self._lookup(request)
            if job is None:
                return _error(404, "Job not found or not authorized")
            return JSONResponse(self.job_json(job))

    async def _delete(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        with self.lock:
            job = self._lookup(request)
            if job is None:
                return _error(404, "Job not found or not authorized")
            if job.status not in CANCELLABLE:
                return _error(400, f"Job cannot be cancelled: its status is {job.status}")
            self.cancel(job.id)
            return JSONResponse(self.job_json(job))

    async def _list(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
            cursor = datetime.fromisoformat(query["cursor"]) if "cursor" in query else None
        except ValueError:
            return _error(400, "Invalid query parameters")
        if cursor is not None and cursor.tzinfo is None:
            cursor = cursor.replace(tzinfo=UTC)
        status = query.get("status")
        # ``types``: "Comma-separated list of job types to filter (e.g., \"flux,k1,externalImage\")"
        types = {name.strip() for name in query["types"].split(",") if name.strip()} if "types" in query else None
        if not 1 <= limit <= 1000 or (status is not None and status not in KREA_STATUSES):
            return _error(400, "Invalid query parameters")
        with self.lock:
            self.sync()
            jobs = sorted(self.board.jobs.values(), key=lambda job: job.created_wall, reverse=True)
            jobs = [
                job
                for job in jobs
                if (cursor is None or job.created_wall < cursor)
                and (status is None or job.status == status)
                and (types is None or job.meta.get("type") in types)
            ]
            page = jobs[:limit]
            # microseconds: jobs created within one millisecond must not fall between pages
            next_cursor = None
            if len(jobs) > limit:
                next_cursor = page[-1].created_wall.isoformat(timespec="microseconds").replace("+00:00", "Z")
            return JSONResponse({"items": [self.job_json(job) for job in page], "next_cursor": next_cursor})

    async def _file(self, request: Request) -> Response:
        found = await asyncio.to_thread(self.files.get, request.path_params["name"])
        if found is None:
            return _error(404, "Not Found")
        data, content_type = found
        return Response(data, media_type=content_type)
