"""Tool results every MCP client can show: inline JPEG previews kept far under client limits, a resource
link per full image (`fluxroute://images/<job id>-<index>.<format>`), a summary in words, and the output
model as structured content.

Claude Desktop rejects tool results over 1 MiB and Claude Code warns past 25,000 tokens, so the inline
previews of one result share INLINE_BUDGET bytes; the full images are behind resource
links and their paths and URLs are in the structured content.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from PIL import Image
from pydantic import BaseModel

from fluxroute.prompts import RewriteOutput
from fluxroute.tools import GenerateOutput, JobStatusOutput, PlanOutput
from fluxroute.tools.outputs import ImageOutput

# raw JPEG bytes for all inline previews of one result (base64 makes it 4/3 of this on the wire)
INLINE_BUDGET = 240_000
SMALLEST_PREVIEW = 128
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def tool_result(output: BaseModel) -> CallToolResult:
    """The MCP result for a tool's output model: content blocks for people and models, structured content
    for programs. A failed or cancelled job is a tool error (isError) that says why."""
    structured = output.model_dump(mode="json")
    if isinstance(output, GenerateOutput):
        failed = output.status in ("failed", "cancelled")
        return CallToolResult(content=generation_content(output), structured_content=structured, is_error=failed)
    text = summary(output)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def generation_content(output: GenerateOutput) -> list[ContentBlock]:
    if output.status != "succeeded":
        return [TextContent(type="text", text=summary(output))]
    blocks: list[ContentBlock] = [TextContent(type="text", text=summary(output))]
    for index, (image, preview) in enumerate(zip(output.images, previews(output.images), strict=True)):
        if preview is not None:
            blocks.append(ImageContent(type="image", data=base64.b64encode(preview).decode(), mime_type="image/jpeg"))
        blocks.append(image_link(output.job_id, index, image))
    return blocks


def image_uri(job_id: str, index: int, fmt: str) -> str:
    """Where resources/read finds a saved image: fluxroute://images/<job id>-<index>.<png|jpeg>."""
    return f"fluxroute://images/{job_id}-{index}.{fmt}"


def image_link(job_id: str, index: int, image: ImageOutput) -> ResourceLink:
    name = Path(image.path).name if image.path else f"{job_id}-{index}.{image.format}"
    size = Path(image.path).stat().st_size if image.path and Path(image.path).is_file() else None
    return ResourceLink(
        type="resource_link",
        uri=image_uri(job_id, index, image.format),
        name=name,
        description=f"{image.width}x{image.height} {image.format}, full size",
        mime_type=MIME_TYPES.get(image.format, "application/octet-stream"),
        size=size,
    )


def previews(images: list[ImageOutput]) -> list[bytes | None]:
    """The saved previews, re-encoded smaller when together they would pass INLINE_BUDGET."""
    found = [_read(image.preview_path) for image in images]
    total = sum(len(data) for data in found if data)
    if total <= INLINE_BUDGET:
        return found
    # bytes scale roughly with area: shrink each side by the square root of the overshoot, with headroom
    scale = math.sqrt(INLINE_BUDGET / total) * 0.85
    shrunk = [None if data is None else _shrink(data, scale) for data in found]
    while sum(len(data) for data in shrunk if data) > INLINE_BUDGET:
        smaller = [None if data is None else _shrink(data, 0.7) for data in shrunk]
        if smaller == shrunk:
            return [None] * len(images)  # cannot get small enough: the links and paths still carry them
        shrunk = smaller
    return shrunk


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _shrink(data: bytes, scale: float) -> bytes:
    with Image.open(io.BytesIO(data)) as source:
        width, height = source.size
        longest = max(width, height)
        target = max(SMALLEST_PREVIEW, int(longest * scale))
        if target >= longest:
            return data
        image = source.convert("RGB")
        image.thumbnail((target, target))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=70, optimize=True)
        return buffer.getvalue()


def summary(output: BaseModel) -> str:
    """The result in a few lines, for the model reading it and the person watching."""
    if isinstance(output, GenerateOutput):
        return _generation_summary(output)
    if isinstance(output, JobStatusOutput):
        return f"Job {output.job_id}: {output.status}." + (f" {output.error}" if output.error else "")
    if isinstance(output, PlanOutput):
        return output.explanation
    if isinstance(output, RewriteOutput):
        notes = [*(f"- {change}" for change in output.changes), *(f"- dropped: {cut}" for cut in output.dropped)]
        notes += [f"- warning: {warning}" for warning in output.warnings]
        return "\n".join([output.prompt, *(["", "Changes:", *notes] if notes else [])])
    return output.model_dump_json()


def _generation_summary(output: GenerateOutput) -> str:
    if output.status == "running":
        where = f" ({output.progress.message or output.progress.status})" if output.progress else ""
        return (
            f"Still running{where}. The job goes on; call get_image_job with job_id={output.job_id} to wait "
            "for the images. It will not be charged twice."
        )
    if output.status != "succeeded":
        return f"Job {output.job_id} {output.status}: {output.error or 'no result'}"
    lines = [
        f"{len(output.images)} image(s) from {output.model} on {output.provider} ({output.offer_id}), "
        f"${output.cost_usd:.4f}{f', seed {output.seed}' if output.seed is not None else ''}. Job {output.job_id}."
    ]
    for index, image in enumerate(output.images):
        where = image.path or image.url or "(not saved)"
        lines.append(f"{index + 1}. {image.width}x{image.height} {image.format}: {where}")
        if image.flagged:
            lines.append("   flagged by the safety checker")
    if output.explanation:
        lines.append(f"Why here: {output.explanation}")
    lines.extend(f"Note: {warning}" for warning in output.warnings)
    return "\n".join(lines)
