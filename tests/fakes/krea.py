"""Protocol-faithful fake of the Krea API (image generation and enhance jobs) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import random
import time
import uuid
import zlib
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import httpx
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.images import ImageSpec, size_of
from tests.fakes.jobs import Job, Outcome, iso
from tests.fakes.krea_schema import (
    ENDPOINTS,
    ENHANCE_ENDPOINTS,
    KREA_ENHANCE,
    Endpoint,
    KreaBadRequest,
    enhanced_size,
    output_size,
    validate,
)
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
# krea/enhance: the fake's own cap on the output (Krea documents none; Topaz's schemas stop at 32000 a side)
KREA_ENHANCE_MAX_SIDE = 32000
# krea/enhance reads its input's size: a loopback URL not served by this fake is fetched, at most this many bytes
INPUT_FETCH_MAX_BYTES = 20 * 1024 * 1024
INPUT_FETCH_TIMEOUT_S = 5.0
# enhance results are solid images of the output size; JPEG and WebP are encoded up to this many pixels (and
# WebP's 16383 a side), anything larger is served as PNG whatever ``output_format`` asked (the fake's shortcut)
ENHANCE_ENCODED_MAX_PIXELS = 4_000_000
WEBP_MAX_SIDE = 16383


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _colour(seed: int) -> tuple[int, int, int]:
    return (seed % 256, 128, 255 - seed % 256)


@functools.lru_cache(maxsize=16)
def solid_png(width: int, height: int, seed: int = 0) -> bytes:
    """A 1-bit palette PNG of ``width`` x ``height`` in one colour, built without holding its pixels: the
    deflate stream is one compressed block of rows (ended by a full flush, so it stands alone) repeated, plus
    the rest. A 32000 x 32000 image takes a few hundredths of a second and about 125 KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    row = bytes(1 + (width + 7) // 8)  # filter 0, palette index 0 everywhere
    rows_per_block = max(1, min(height, (1 << 20) // len(row)))
    blocks, rest = divmod(height, rows_per_block)

    def deflated(count: int) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(row * count) + packer.flush(zlib.Z_FULL_FLUSH)

    block, checksum = row * rows_per_block, 1
    for _ in range(blocks):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block
    stream = b"\x78\xda" + deflated(rows_per_block) * blocks + (deflated(rest) if rest else b"") + final
    stream += checksum.to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 3, 0, 0, 0])  # 1-bit, palette
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", bytes(_colour(seed)))
        + chunk(b"IDAT", stream)
        + chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=16)
def enhanced_image(width: int, height: int, fmt: str, seed: int) -> tuple[bytes, str]:
    """An enhance job's result: a solid image of ``width`` x ``height`` in ``fmt`` (png, jpg, webp); large
    JPEG/WebP requests are served as PNG (see ENHANCE_ENCODED_MAX_PIXELS)."""
    small = width * height <= ENHANCE_ENCODED_MAX_PIXELS
    if fmt == "jpg" and small:
        out = io.BytesIO()
        Image.new("RGB", (width, height), _colour(seed)).save(out, "JPEG", quality=80)
        return out.getvalue(), "image/jpeg"
    if fmt == "webp" and small and max(width, height) <= WEBP_MAX_SIDE:
        out = io.BytesIO()
        Image.new("RGB", (width, height), _colour(seed)).save(out, "WEBP", quality=80)
        return out.getvalue(), "image/webp"
    return solid_png(width, height, seed), "image/png"


class CouldNotRead(Exception):
    """krea/enhance's input image whose size the fake cannot learn (answered 422)."""


class KreaFake(FakeService):
    """Fake ``https://api.krea.ai``: ``POST /generate/image/{vendor}/{model}``,
    ``POST /generate/enhance/{vendor}/{model}``, ``/jobs``, ``/files``, ``/assets``.

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

    Enhance endpoints (``enhance/topaz/standard-enhance``, ``-/generative-enhance``, ``-/bloom-enhance``,
    ``enhance/krea/enhance``): validated like the image ones (400 naming the field), jobs with the same
    lifecycle, faults, billing and result expiry. The result is a solid image of the output size: ``width`` x
    ``height`` for Topaz; for krea/enhance the input's size times ``image_scaling_factor``, the input read from
    this fake's own files (uploaded assets, earlier results), or fetched (at most ``INPUT_FETCH_MAX_BYTES``) when
    it is another 127.0.0.1 / localhost URL; any other URL is answered 422 ``{"error": "image_url: could not
    read image_url ..."}`` — the fake reaches nothing outside the machine. A ``data:`` URI is refused (400) as
    in every image field: Krea takes URLs, fluxroute uploads images with ``POST /assets`` first. Outputs over
    ``enhance_max_side`` (default 32000, the fake's own cap) are refused 400. A failed krea/enhance job carries
    ``"error": {"code", "message"}`` (Krea's docs) and ``"result": null``. ``image_scale`` applies to enhance
    results too.

    Prices (``prices``, restored by ``reset()``): each endpoint's per-job USD price, Krea's published one for
    the image endpoints; Krea publishes none for enhance, so those are the fake's own (``ENHANCE_PRICES``:
    $0.08 standard, $0.16 generative, $0.16 bloom, $0.05 krea/enhance). ``set_price(path, Decimal)`` changes one.
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
        # per-job USD price by endpoint path ("bfl/flux-1-dev", "enhance/topaz/standard-enhance", ...)
        self.prices: dict[str, Decimal] = {path: e.price for path, e in (ENDPOINTS | ENHANCE_ENDPOINTS).items()}
        self.enhance_max_side = KREA_ENHANCE_MAX_SIDE
        self.result_sizes: dict[str, tuple[int, int]] = {}  # enhance result file -> its logical size

    def set_price(self, path: str, price: Decimal) -> None:
        """The per-job USD price of the endpoint at ``path`` (as in ``prices``: ``"enhance/krea/enhance"``,
        ``"bfl/flux-1-dev"``) from now on; Krea 2's style-reference and moodboard prices stay as they are."""
        if path not in self.prices:
            raise KeyError(f"the fake serves no endpoint {path!r}")
        with self.lock:
            self.prices[path] = Decimal(price)

    # --- wiring -----------------------------------------------------------------------------
    def build_app(self) -> ASGIApp:
        routes = [
            Route("/generate/image/{vendor}/{model:path}", self._create, methods=["POST"]),
            Route("/generate/enhance/{vendor}/{model:path}", self._create, methods=["POST"]),
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
        error: dict[str, Any] | None = None
        # krea/enhance's jobs carry `error {code, message}` (Krea's docs); the others `result.error`
        error_object = job.meta.get("endpoint") == KREA_ENHANCE.path
        if job.outcome is Outcome.COMPLETED:
            result = {"urls": list(job.result)}
        elif job.outcome is Outcome.FAILED and error_object:
            error = {"code": str(job.failure.get("code", "internal_error")), "message": job.error}
        elif job.outcome is Outcome.FAILED:
            result = {"error": job.error}
        finished = job.finished_wall
        answer = {
            "job_id": job.id,
            "status": job.status,
            "created_at": iso(job.created_wall),
            "completed_at": iso(finished) if finished is not None else None,
            "result": result,
        }
        if error_object:
            answer["error"] = error
        return answer

    def on_terminal(self, job: Job) -> None:
        if job.outcome is Outcome.COMPLETED:
            width, height = job.meta["size"]
            name = f"{job.id}-0.png"
            if job.meta.get("enhance"):
                name = self._add_enhanced(job, width, height)
            else:
                self.files.add_image(name, ImageSpec(width, height, "png", seed=job.meta["seed"] % 256))
            job.result = [f"{self.base_url}/files/{name}"]
            if self.balance is not None:
                self.balance -= job.price
        url = job.meta.get("webhook_url")
        if url:
            self.send_webhook(job, url, json.dumps(self.job_json(job)).encode(), {})

    def _add_enhanced(self, job: Job, width: int, height: int) -> str:
        """Store an enhance job's result (at ``image_scale`` of its size); the file's name."""
        scale = self.files.scale
        served = max(1, round(width * scale)), max(1, round(height * scale))
        data, content_type = enhanced_image(*served, job.meta.get("format", "png"), job.meta["seed"] % 256)
        name = f"{job.id}-0.{ASSET_TYPES[content_type]}"
        self.files.add_blob(name, data, content_type)
        self.result_sizes[name] = (width, height)
        return name

    # --- handlers ------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    async def _create(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized: missing or invalid API token")
        path = f"{request.path_params['vendor']}/{request.path_params['model']}"
        enhance = request.url.path.startswith("/generate/enhance/")
        endpoint = ENHANCE_ENDPOINTS.get(f"enhance/{path}") if enhance else ENDPOINTS.get(path)
        if endpoint is None:
            return _error(404, "Not Found")
        try:
            raw = json.loads(await request.body() or b"null")
        except ValueError:
            return _error(400, "body: invalid JSON")
        try:
            body = validate(endpoint, raw)
            self._check_image_urls(body)
            size = await self._output_size(endpoint, body)
        except KreaBadRequest as exc:
            return _error(400, str(exc))
        except CouldNotRead as exc:
            return _error(422, f"image_url: could not read image_url ({exc})")
        webhook_url = request.headers.get("x-webhook-url")
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            return _error(400, "X-Webhook-URL: must be an http(s) URL")
        with self.lock:
            price = endpoint.price_for(body, self.prices.get(endpoint.path))
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
                "size": size,
                "enhance": endpoint.enhance,
                # Topaz's default is jpg; krea/enhance documents no format: the fake answers PNG
                "format": body.get("output_format", "png" if endpoint is KREA_ENHANCE else "jpg"),
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

    async def _output_size(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, int]:
        """The job's output size; krea/enhance's follows its input image's, which is read here."""
        if endpoint is not KREA_ENHANCE:
            return output_size(endpoint, body)
        width, height = enhanced_size(await self._input_size(body["image_url"]), body)
        if max(width, height) > self.enhance_max_side:
            raise KreaBadRequest(
                f"image_scaling_factor: the output would be {width}x{height}, more than {self.enhance_max_side} "
                "pixels a side"
            )
        return width, height

    async def _input_size(self, url: str) -> tuple[int, int]:
        """Pixel size of the image at ``url``: one of this fake's files (its logical size), or the bytes of a
        loopback URL fetched with a bounded read. Any other URL is not fetched (the fake reaches nothing
        outside the machine).

        Raises:
            CouldNotRead: the URL is elsewhere, the fetch failed, ran over INPUT_FETCH_MAX_BYTES or is no image.
        """
        own = self.base_url + "/files/"
        if url.startswith(own):
            name = url[len(own) :]
            if name in self.result_sizes:  # an enhance result: a stored blob (cheap to look up), logical size kept
                found = self.result_sizes[name] if self.files.get(name) is not None else None
            else:  # an upload or an image result
                found = await asyncio.to_thread(self.files.logical_size, name)
            if found is None:
                raise CouldNotRead("the file is gone")
            return found
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:
            host = ""
        if host not in ("127.0.0.1", "localhost"):
            raise CouldNotRead(f"the fake fetches no image from {host or 'that URL'}")
        data = bytearray()
        try:
            async with (
                httpx.AsyncClient(timeout=INPUT_FETCH_TIMEOUT_S, trust_env=False) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise CouldNotRead(f"HTTP {response.status_code}")
                async for piece in response.aiter_raw():
                    data += piece
                    if len(data) > INPUT_FETCH_MAX_BYTES:
                        raise CouldNotRead(f"larger than {INPUT_FETCH_MAX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise CouldNotRead(type(exc).__name__) from None
        found = await asyncio.to_thread(size_of, bytes(data))
        if found is None:
            raise CouldNotRead("not an image")
        return found

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
