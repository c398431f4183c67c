"""How fal shows a queued request on the wire: URLs, status objects, logs, results, errors, webhooks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
    window = _progress_window(job)
    body["metrics"] = {}
    if window is not None and job.finished_at is not None:
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


def webhook_envelope(job: Job) -> dict[str, Any]:
    """The body fal POSTs to ``fal_webhook``: OK with the output, or ERROR with the error response."""
    envelope: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if job.outcome is Outcome.COMPLETED:
        envelope.update(status="OK", payload=job.result, error=None)
    else:
        status, payload = error_response(job)
        envelope.update(status="ERROR", error=f"Invalid status code: {status}", payload=payload)
    return envelope
