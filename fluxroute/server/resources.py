"""MCP resources: the catalog, job records, and the saved images behind the tool results' links."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from fluxroute.errors import JobNotFound
from fluxroute.server.backend import Backend
from fluxroute.server.delivery import MIME_TYPES, image_uri

if TYPE_CHECKING:
    from fluxroute.router import Router
    from fluxroute.store import AttemptRecord, JobRecord

_IMAGE_ID = re.compile(r"^(?P<job_id>[0-9a-f]{32})-(?P<index>[0-9]{1,2})$")
RECENT_JOBS = 20


def add_resources(server: MCPServer, backend: Backend) -> None:
    @server.resource(
        "fluxroute://models",
        name="models",
        title="Image models and offers",
        description="Every model and offer: price (unit, date, source), license, availability here and why not.",
        mime_type="application/json",
    )
    async def models() -> str:
        from fluxroute.tools.specs import ModelsQuery  # loaded with the library (listing the tools needs neither)

        return (await backend.library()).list_models(ModelsQuery()).model_dump_json(indent=1)

    @server.resource(
        "fluxroute://jobs",
        name="jobs",
        title="Recent image jobs",
        description=f"The money (today's charged, reserved and at-risk amounts, per day and provider), the jobs a "
        f"provider may still bill and what to do about each, and the {RECENT_JOBS} most recent generation jobs: "
        "status, cost, amount at risk, and image links.",
        mime_type="application/json",
    )
    async def jobs() -> str:
        router = await backend.router()
        store = router.store
        # the same store call as `fluxroute spend`: nothing is computed here
        summary = store.spend_summary(daily_cap=router.settings.budget_daily_usd)
        held = store.at_risk()
        at_risk_by_job: dict[str, Decimal] = {}
        for attempt, amount in held:
            at_risk_by_job[attempt.job_id] = at_risk_by_job.get(attempt.job_id, Decimal("0")) + amount
        return json.dumps(
            {
                "spend": dataclasses.asdict(summary),
                "at_risk": [_at_risk_entry(attempt, amount) for attempt, amount in held],
                "jobs": [
                    {**_job_summary(job), "at_risk_usd": at_risk_by_job.get(job.id)}
                    for job in store.list_jobs(limit=RECENT_JOBS)
                ],
            },
            indent=1,
            default=str,  # amounts (Decimal) and days as strings, exactly as stored
        )

    @server.resource(
        "fluxroute://jobs/{job_id}",
        name="job",
        title="Image job",
        description="One job: its request, status, result, error, every provider attempt and its images' lineage.",
        mime_type="application/json",
    )
    async def job(job_id: str) -> str:
        store = (await backend.router()).store
        try:
            record = store.get_job(job_id)
            attempts = store.attempts_for(job_id)
            lineage = store.lineage(job_id)
        except JobNotFound as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps(
            {
                **_job_summary(record),
                "request": record.request,
                "result": record.result,
                "attempts": [
                    {
                        "provider": a.provider,
                        "offer_id": a.offer_id,
                        "provider_job_id": a.provider_job_id,
                        "status": a.status,
                        "cost_usd": None if a.cost is None else str(a.cost),
                        "error": a.error,
                    }
                    for a in attempts
                ],
                # where its images came from (draft_of: the parent is a draft set) and what came from them
                "lineage": [
                    {
                        "job_id": link.job_id,
                        "image_index": link.image_index,
                        "parent_job_id": link.parent_job_id,
                        "parent_index": link.parent_index,
                        "relation": link.relation,
                    }
                    for link in lineage
                ],
            },
            indent=1,
        )

    for fmt, mime in MIME_TYPES.items():
        _add_image_template(server, backend, fmt, mime)


def _add_image_template(server: MCPServer, backend: Backend, fmt: str, mime: str) -> None:
    @server.resource(
        f"fluxroute://images/{{image_id}}.{fmt}",
        name=f"image-{fmt}",
        title=f"Generated image ({fmt})",
        description="A generated image at full size; the tool results link to it.",
        mime_type=mime,
    )
    async def image(image_id: str) -> bytes:
        return _image_bytes(await backend.router(), image_id, fmt)


def _image_bytes(router: Router, image_id: str, fmt: str) -> bytes:
    """The saved file of image `image_id` ('<job id>-<index>'), found through its job's record only (the URI
    names no path), so nothing but the saved images can be read: where the record points (the images folder,
    or the `--out` directory it was saved to) there must be a regular file, not a symbolic link, with the
    SHA-256 the record holds."""
    from fluxroute.store.files import NotARegularFile, read_regular  # the store package: not needed to list tools

    match = _IMAGE_ID.match(image_id)
    if match is None:
        raise ResourceError(f"image id {image_id!r} is not '<job id>-<index>'")
    try:
        record = router.store.get_job(match["job_id"])
    except JobNotFound as exc:
        raise ResourceError(str(exc)) from None
    images = (record.result or {}).get("images") or []
    index = int(match["index"])
    if not isinstance(images, list) or index >= len(images):
        raise ResourceError(f"job {record.id} has no image {index}")
    image = images[index]
    if image.get("format") != fmt or not image.get("path"):
        raise ResourceError(f"image {image_id} is not a saved {fmt} file")
    try:
        data = read_regular(Path(image["path"]))
    except NotARegularFile as exc:
        raise ResourceError(f"image {image_id} is not served: its saved file is now {exc.strerror}") from None
    except OSError as exc:
        raise ResourceError(f"image {image_id} is no longer on disk ({exc.strerror})") from None
    recorded = image.get("sha256")
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        raise ResourceError(f"image {image_id} is not served: its file has changed since it was saved")
    return data


def _at_risk_entry(attempt: AttemptRecord, amount: Decimal) -> dict[str, object]:
    """One job a provider may still bill: how much, and what collects or settles it."""
    if attempt.provider_job_id:
        todo = "`fluxroute jobs resume` (or the server at start) collects it once the provider settles it"
    else:
        todo = (
            "the submission's answer was lost: `fluxroute jobs resume` looks for it in the provider's job listing "
            "(Krea); fal has no listing: check fal's request history, then `fluxroute jobs settle JOB --billed` "
            "or `--unbilled`"
        )
    return {
        "job_id": attempt.job_id,
        "provider": attempt.provider,
        "provider_job_id": attempt.provider_job_id,
        "amount_usd": amount,
        "since": attempt.started_at.isoformat(),
        "what_to_do": todo,
    }


def _job_summary(job: JobRecord) -> dict[str, object]:
    result = job.result or {}
    images = result.get("images")
    return {
        "job_id": job.id,
        "status": job.status,
        "created_at": job.created_at.isoformat(),
        "prompt": job.request.get("prompt"),
        "provider": result.get("provider"),
        "cost_usd": result.get("cost_usd"),
        "error": job.error,
        "images": [
            image_uri(job.id, index, str(image.get("format", "png")))
            for index, image in enumerate(images if isinstance(images, list) else [])
        ],
    }
