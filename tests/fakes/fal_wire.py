"""How fal shows a queued request on the wire: URLs, status objects, logs, results, errors, webhooks."""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Sequence
from typing import Any

from PIL import Image

from tests.fakes.images import FileStore, ImageSpec, data_uri, render
from tests.fakes.jobs import Job, Outcome, iso

CANCELLED_ERROR = "Request was cancelled"


def request_urls(job: Job) -> dict[str, str]:
    """``request_id`` plus follow-up URLs: the incoming host, then owner/app only (never the path)."""
    response_url = f"{job.meta['base']}/{job.meta['owner_app']}/requests/{job.id}"
    return {
        "request_id": job.id,
        "response_url": response_url,
        "status_url": response_url + "/status",
        "cancel_url": response_url + "/cancel",
    }


def queue_position(job: Job, waiting_ids: Sequence[str], now: float) -> int:
    """Requests ahead: phantom ones (``queue_ahead``) leave one per ``slot`` seconds; then real waiting ones."""
    ahead, slot = int(job.meta["ahead"]), float(job.meta["slot"])
    if job.waiting:
        return ahead + list(waiting_ids).index(job.id)
    return max(0, ahead - math.floor((now - job.entered_at) / slot)) if slot > 0 else 0


def _progress_window(job: Job) -> tuple[float, float] | None:
    started = next((at for status, at in job.history if status == "IN_PROGRESS"), None)
    return None if started is None else (started, job.meta["inference"])


def logs(job: Job, now: float) -> list[dict[str, Any]]:
    """Runner log lines so far: one ``step i/N`` per denoising step, spread over IN_PROGRESS
    (for ``manual`` jobs: as many steps as the test reported)."""
    window = _progress_window(job)
    if window is None:
        return []
    started, duration = window
    steps = int(job.input.get("num_inference_steps", job.meta.get("default_steps", 28)))
    if job.outcome is Outcome.COMPLETED or duration <= 0:
        done = steps
    elif job.manual and not job.terminal:
        done = min(steps, job.meta.get("steps_done", 0))  # set by FalFake.report_steps
    else:
        end = job.finished_at if job.finished_at is not None else now
        done = min(steps, math.floor((end - started) / duration * steps))
    return [
        {
            "message": f"step {i}/{steps}",
            "level": "INFO",
            "source": "USER",
            "timestamp": iso(job.wall(started + duration * i / steps)),
        }
        for i in range(1, done + 1)
    ]


def status_body(job: Job, *, with_logs: bool, waiting_ids: Sequence[str], now: float) -> tuple[int, dict[str, Any]]:
    """``(http status, body)`` of ``GET …/status``: 202 while queued or running, 200 once COMPLETED."""
    body: dict[str, Any] = {"status": job.status, **request_urls(job)}
    if job.status == "IN_QUEUE":
        return 202, {**body, "queue_position": queue_position(job, waiting_ids, now)}
    body["logs"] = logs(job, now) if with_logs else None
    if not job.terminal:
        return 202, body
    if not job.meta.get("drop_metrics"):  # the drop_metrics fault: no `metrics` key at all, as legacy apps
        window = _progress_window(job)
        body["metrics"] = {}
        if job.outcome is Outcome.COMPLETED and job.meta.get("inference_time") is not None:
            # the compute time the fake decided and billed (upscalers), in whole milliseconds
            body["metrics"] = {"inference_time": float(job.meta["inference_time"])}
        elif window is not None and job.finished_at is not None:
            body["metrics"] = {"inference_time": job.finished_at - window[0]}
    if job.outcome is Outcome.CANCELLED:
        body.update(error=CANCELLED_ERROR, error_type="request_cancelled")
    elif job.outcome is Outcome.FAILED:
        body.update(error=job.error, error_type=job.failure.get("error_type"))
    return 200, body


def error_response(job: Job) -> tuple[int, dict[str, Any]]:
    """What ``GET …/requests/{id}`` answers for a request that did not complete successfully."""
    if job.outcome is Outcome.CANCELLED:
        return 400, {"detail": CANCELLED_ERROR, "error_type": "request_cancelled"}
    body: dict[str, Any] = {"detail": job.failure.get("detail", job.error)}
    if job.failure.get("error_type"):
        body["error_type"] = job.failure["error_type"]
    return int(job.failure.get("status_code", 500)), body


def make_result(job: Job, *, files: FileStore, base_url: str, nsfw_prompts: Sequence[str]) -> dict[str, Any]:
    """The model output for a completed request; registers its images with ``files``."""
    params = job.input
    width, height = job.meta["size"]
    nsfw = params["enable_safety_checker"] and any(s.lower() in params.get("prompt", "").lower() for s in nsfw_prompts)
    images = []
    for index in range(params["num_images"]):
        name = f"{job.id}-{index}.{params['output_format']}"
        spec = ImageSpec(width, height, params["output_format"], black=nsfw, seed=(job.meta["seed"] + index) % 256)
        files.add_image(name, spec)
        url = (
            data_uri(render(spec, files.scale), spec.content_type)
            if params["sync_mode"]
            else (f"{base_url}/files/{name}")
        )
        images.append(
            {"url": url, "width": width, "height": height, "content_type": spec.content_type, "file_name": name}
        )
    return {
        "images": images,
        "timings": {"inference": job.meta["inference"]},
        "seed": job.meta["seed"],
        "has_nsfw_concepts": [nsfw] * len(images),
        "prompt": params.get("prompt", ""),
    }


UPSCALE_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


def cheap_png(width: int, height: int, seed: int = 0) -> bytes:
    """A valid PNG of ``width`` x ``height`` that costs next to nothing at any size (a 16k x 16k one is a few
    KB, made in milliseconds): 1-bit palette of two colours tinted by ``seed``, 4-pixel stripes in the first
    row and every later row the "Up" filter over zeros (the same as the row above)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    row_bytes = (width + 7) // 8
    packer = zlib.compressobj(6)
    parts = [packer.compress(b"\x00" + b"\x0f" * row_bytes)]
    later = b"\x02" + bytes(row_bytes)
    block = 256
    for start in range(1, height, block):
        parts.append(packer.compress(later * min(block, height - start)))
    parts.append(packer.flush())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 3, 0, 0, 0])  # 1-bit palette
    palette = bytes([seed % 256, 64, 128, 255 - seed % 256, 192, 32])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"PLTE", palette)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def _encode(fmt: str, width: int, height: int, seed: int) -> bytes:
    if fmt == "png":
        return cheap_png(width, height, seed)
    image = Image.new("RGB", (width, height), (seed % 256, 96, 160))  # one colour: cheap to encode
    out = io.BytesIO()
    image.save(out, "WEBP" if fmt == "webp" else "JPEG", quality=85)
    return out.getvalue()


def make_upscale_result(job: Job, *, files: FileStore, base_url: str) -> dict[str, Any]:
    """The output of a completed upscale: one ``image`` object (no ``images`` list), at the output size in
    ``meta["size"]``; served bytes at ``files.scale`` times it (the scale in effect when the job completed).
    seedvr's ImageFile has no width/height (as fal's example), and seedvr answers ``seed``; clarity ``seed`` and
    ``timings``; aura-sr ``timings``; esrgan the image alone."""
    params, model = job.input, job.model
    width, height = job.meta["size"]
    fmt = str(params.get("output_format", "png"))
    seed = int(job.meta["seed"])
    data = _encode(fmt, max(1, round(width * files.scale)), max(1, round(height * files.scale)), seed)
    content_type = UPSCALE_CONTENT_TYPES[fmt]
    name = f"{job.id}.{fmt}"
    files.add_blob(name, data, content_type)
    url = data_uri(data, content_type) if params.get("sync_mode") else f"{base_url}/files/{name}"
    image: dict[str, Any] = {"url": url, "content_type": content_type, "file_name": name, "file_size": len(data)}
    if model != "fal-ai/seedvr/upscale/image":
        image.update(width=width, height=height)
    result: dict[str, Any] = {"image": image}
    if model in ("fal-ai/seedvr/upscale/image", "fal-ai/clarity-upscaler"):
        result["seed"] = seed
    if model in ("fal-ai/clarity-upscaler", "fal-ai/aura-sr"):
        result["timings"] = {"inference": float(job.meta["inference_time"])}
    return result


def webhook_envelope(job: Job) -> dict[str, Any]:
    """The body fal POSTs to ``fal_webhook``: OK with the output, or ERROR with the error response."""
    envelope: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if job.outcome is Outcome.COMPLETED:
        envelope.update(status="OK", payload=job.result, error=None)
    else:
        status, payload = error_response(job)
        envelope.update(status="ERROR", error=f"Invalid status code: {status}", payload=payload)
    return envelope
