"""Tool results every MCP client can show: inline JPEG previews kept far under client limits, a resource
link per full image (`fluxroute://images/<job id>-<index>.<format>`), a summary in words, and the output
model as structured content.

Claude Desktop rejects tool results over 1 MiB and Claude Code warns past 25,000 tokens, so the inline
previews of one result share INLINE_BUDGET bytes; the full images are behind resource
links and their paths and URLs are in the structured content.

Previews are made here, when a result is built, and nowhere else: Python and CLI callers never pay for one. A
JPEG source is decoded at a reduced scale (`Image.draft`), a PNG is reduced by an integer factor and box-filtered
to size; the last few previews are kept (PREVIEW_CACHE_ENTRIES, keyed by path, mtime, size and long edge), so a
client polling get_image_job gets the same bytes without the decode.
"""

from __future__ import annotations

import base64
import errno
import functools
import io
import math
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel

# The output models are imported where a result is built: by then the tool library that made it has loaded them,
# and a server that only lists its tools never needs them.
if TYPE_CHECKING:
    from fluxroute.tools.outputs import DraftSetOutput, GenerateOutput, ImageOutput

# raw JPEG bytes for all inline previews of one result (base64 makes it 4/3 of this on the wire)
INLINE_BUDGET = 240_000
SMALLEST_PREVIEW = 128
PREVIEW_LONG_EDGE = 512
PREVIEW_QUALITY = 80
# a 512 px JPEG preview is 20-150 kB, so the cache holds a few MB at most
PREVIEW_CACHE_ENTRIES = 32
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def tool_result(output: BaseModel) -> CallToolResult:
    """The MCP result for a tool's output model: content blocks for people and models, structured content
    for programs. A failed or cancelled job is a tool error (isError) that says why."""
    from fluxroute.tools.outputs import DraftSetOutput, FinalOutput, GenerateOutput

    structured = output.model_dump(mode="json")
    if isinstance(output, GenerateOutput):
        failed = output.status in ("failed", "cancelled")
        return CallToolResult(content=generation_content(output), structured_content=structured, is_error=failed)
    if isinstance(output, DraftSetOutput):
        return CallToolResult(content=draft_set_content(output), structured_content=structured)
    if isinstance(output, FinalOutput):
        blocks = generation_content(output.generation())
        reason = TextContent(
            type="text", text=f"Finalized from draft {output.draft} ({output.method}): {output.reason}"
        )
        if output.upscaled is not None:  # the upscaled final after it: the image to download
            blocks += generation_content(output.upscaled)
        return CallToolResult(content=[reason, *blocks], structured_content=structured)
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


def draft_set_content(output: DraftSetOutput) -> list[ContentBlock]:
    """A draft set: the summary, the numbered contact sheet as the one inline preview (made within the budget,
    fluxroute.router.contact_sheet), and a link per full-size draft."""
    blocks: list[ContentBlock] = [TextContent(type="text", text=summary(output))]
    sheet = _sheet_or_none(output.contact_sheet)
    if sheet is not None:
        blocks.append(ImageContent(type="image", data=base64.b64encode(sheet).decode(), mime_type="image/jpeg"))
    for draft in output.drafts:
        job_id, _, index = draft.image.removeprefix("job:").partition("/")
        fmt = "jpeg" if draft.path and draft.path.endswith((".jpg", ".jpeg")) else "png"
        blocks.append(
            ResourceLink(
                type="resource_link",
                uri=image_uri(job_id, int(index or 0), fmt),
                name=Path(draft.path).name if draft.path else f"draft-{draft.number}.{fmt}",
                description=f"draft {draft.number}, seed {draft.seed}, full size",
                mime_type=MIME_TYPES[fmt],
            )
        )
    return blocks


def _sheet_or_none(path: str | None) -> bytes | None:
    """The contact sheet's bytes if it is a regular file within the inline budget; None otherwise."""
    if path is None:
        return None
    from fluxroute.store.files import read_regular

    try:
        data = read_regular(Path(path))
    except OSError:
        return None
    return data if len(data) <= INLINE_BUDGET else None


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
    """A preview of each saved image, re-encoded smaller when together they would pass INLINE_BUDGET."""
    found = [_preview_or_none(image.path) for image in images]
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


def preview_bytes(path: Path, max_side: int = PREVIEW_LONG_EDGE) -> bytes:
    """A JPEG of the image saved at `path`, its long edge at most `max_side`, from the last few made if the file
    is unchanged (same mtime and size).

    Raises:
        NotARegularFile: `path` is a symbolic link or not a regular file (nothing is read).
        OSError: it cannot be read. PIL.UnidentifiedImageError: it is not an image.
    """
    from fluxroute.store.files import NotARegularFile  # the store package is loaded by the first result

    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    return _cached_preview(str(path), info.st_mtime_ns, info.st_size, max_side)


@functools.lru_cache(maxsize=PREVIEW_CACHE_ENTRIES)
def _cached_preview(path: str, mtime_ns: int, size: int, max_side: int) -> bytes:
    """The key's mtime and size only make a changed file miss; the bytes are read (no link followed) here."""
    from fluxroute.store.files import read_regular

    return make_preview(read_regular(Path(path)), max_side)


def preview_cache_info() -> functools._CacheInfo:
    """Hits, misses and size of the preview cache."""
    return _cached_preview.cache_info()


def make_preview(data: bytes, max_side: int = PREVIEW_LONG_EDGE, quality: int = PREVIEW_QUALITY) -> bytes:
    """An RGB JPEG of image `data`, its long edge at most `max_side`, made the cheap way: a JPEG is decoded at a
    reduced scale (draft), then an integer reduce and a box filter bring it to size; no bicubic, no optimize pass."""
    from PIL import Image  # loaded by the first preview: a server that only plans never needs it

    with Image.open(io.BytesIO(data)) as source:
        if source.format == "JPEG":
            source.draft("RGB", (max_side, max_side))
        image: Image.Image = source
        if image.mode not in ("RGB", "L", "RGBA", "LA"):
            image = image.convert("RGB")
        factor = max(image.size) // max_side
        if factor >= 2:
            image = image.reduce(factor)
        if max(image.size) > max_side:
            scale = max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BOX)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()


def _preview_or_none(path: str | None) -> bytes | None:
    """The preview, or None when the image cannot be shown (not saved, gone, now a link, not an image): the
    result still carries its link and path."""
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        return preview_bytes(Path(path))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None


def _shrink(data: bytes, scale: float) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as source:
        width, height = source.size
        longest = max(width, height)
        target = max(SMALLEST_PREVIEW, int(longest * scale))
        if target >= longest:
            return data
    return make_preview(data, target, quality=70)


def summary(output: BaseModel) -> str:
    """The result in a few lines, for the model reading it and the person watching."""
    from fluxroute.prompts.rewrite import RewriteOutput
    from fluxroute.tools.outputs import DraftSetOutput, GenerateOutput, JobStatusOutput, PlanOutput

    if isinstance(output, GenerateOutput):
        return _generation_summary(output)
    if isinstance(output, DraftSetOutput):
        lines = [f"Draft set {output.draft_set_id}: {len(output.drafts)} drafts, ${output.total_cost_usd:.4f} in all."]
        lines += [f"{d.number}. seed {d.seed}, ${d.cost_usd:.4f}: {d.path or d.image}" for d in output.drafts]
        lines.append(f"Contact sheet: {output.contact_sheet or '(none)'}")
        lines.append(f"Why here: {output.explanation}")
        lines.extend(f"Note: {warning}" for warning in output.warnings)
        lines.append(f"Pick a number, then call finalize_image with draft_set_id={output.draft_set_id}.")
        return "\n".join(lines)
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
    made_by = f", {output.worker}" if output.worker else ""
    seed = f", seed {output.seed}" if output.seed is not None else ""
    lines = [
        f"{len(output.images)} image(s) from {output.model} on {output.provider} ({output.offer_id}{made_by}), "
        f"${output.cost_usd:.4f}{seed}. Job {output.job_id}."
    ]
    for index, image in enumerate(output.images):
        where = image.path or image.url or "(not saved)"
        lines.append(f"{index + 1}. {image.width}x{image.height} {image.format}: {where}")
        if image.flagged:
            lines.append("   flagged by the safety checker")
    if output.explanation:
        lines.append(f"Why here: {output.explanation}")
    lines.extend(f"Lineage: {line}" for line in output.lineage)
    lines.extend(f"Note: {warning}" for warning in output.warnings)
    return "\n".join(lines)
