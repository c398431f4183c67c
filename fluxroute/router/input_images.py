"""The caller's input images (init_image, style references): where their URLs may point, what their data: URIs
may hold, and the pixel size they declare — all checked before anything is planned, reserved or sent."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import NamedTuple

from fluxroute.errors import FieldError, InvalidRequest, JobNotFound, UnsafeURL
from fluxroute.providers.image_header import DATA_URI_TYPES, data_uri_image, declared_size, within_pixel_cap
from fluxroute.providers.url_guard import AddressPolicy, check_url, without_credentials
from fluxroute.settings import Settings
from fluxroute.store import Store
from fluxroute.store.files import read_regular
from fluxroute.types import ImageRequest

__all__ = [
    "ALLOWED",
    "DATA_URI_TYPES",
    "check_input_images",
    "data_uri_image",
    "image_file_uri",
    "input_urls",
    "refusal",
    "resolve_references",
    "within_pixel_cap",
]

ALLOWED = (
    "allowed: an http(s) URL or data:image/png|jpeg|webp;base64 URI of an image; http(s) URLs without "
    "credentials, on public addresses"
)


def image_kind(data: bytes) -> str | None:
    """ "png", "jpeg" or "webp" by the first bytes; None for anything else (SVG, HTML, text)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def input_urls(request: ImageRequest) -> list[tuple[str, str]]:
    """(field, URL) for every image URL the caller supplied, fields named as validation errors name them."""
    given = (("init_image", request.init_image), ("mask_image", request.mask_image))
    urls = [(name, url) for name, url in given if url is not None]
    urls += [(f"style_references.{i}.url", ref.url) for i, ref in enumerate(request.style_references)]
    return urls


async def check_input_images(request: ImageRequest, settings: Settings) -> None:
    """Refuse the request if any of its image URLs may not be sent on: http(s) URLs must be plain (no
    credentials) and resolve only to public addresses (unless `allow_private_urls`); data: URIs must be base64
    PNG, JPEG or WebP within `max_input_image_bytes` and `max_image_pixels`. Nothing is fetched; host names
    are resolved concurrently, off the event loop.

    Raises:
        InvalidRequest: one FieldError per refused URL, naming the field, the URL and why.
    """
    urls = input_urls(request)
    problems = await asyncio.gather(*(_problem(url, settings) for _, url in urls))
    errors = [
        refusal(field, url, problem).errors[0] for (field, url), problem in zip(urls, problems, strict=True) if problem
    ]
    if errors:
        raise InvalidRequest(errors)


async def _problem(url: str, settings: Settings) -> str | None:
    if url.startswith("data:"):
        try:
            within_pixel_cap(_data_uri_size(url, settings), settings.max_image_pixels)
        except UnsafeURL as exc:
            return str(exc)
        return None
    try:
        await check_url(url, AddressPolicy.for_inputs(settings))
    except UnsafeURL as exc:
        return str(exc)
    return None


def _data_uri_size(uri: str, settings: Settings) -> tuple[int, int]:
    data = data_uri_image(uri, settings.max_input_image_bytes)
    if image_kind(data) is None:
        raise UnsafeURL("its data is not a PNG, JPEG or WebP image")
    size = declared_size(data)
    if size is None:
        raise UnsafeURL("its data is not an image that can be read")
    return size


def refusal(field: str, url: str, why: str) -> InvalidRequest:
    """The caller's image URL in `field` refused: the URL as shown (credentials masked, data: URIs cut short)."""
    shown = without_credentials(url) if not url.startswith("data:") else f"{url[:40]}... ({len(url)} characters)"
    return InvalidRequest([FieldError(field, shown, f"{why}; {ALLOWED}")])


JOB_REFERENCE = "job:<job_id>/<n>"
# the lineage relation of an image made from an earlier result, by what the call did with it
RELATION_BY_MODE = {
    "image-to-image": "edited_from",
    "instruction-edit": "edited_from",
    "inpaint": "edited_from",
    "variation": "varied_from",
    "upscale": "upscaled_from",
}


class Parent(NamedTuple):
    """The earlier result an image was made from: image `image_index` of job `job_id`, and how (a lineage relation)."""

    job_id: str
    image_index: int
    relation: str


def parents_of(request: ImageRequest) -> tuple[Parent, ...]:
    """The earlier result `request`'s input image names by reference (`job:<job_id>/<n>`), if it does."""
    reference = request.init_image
    if reference is None or not reference.startswith("job:") or request.mode not in RELATION_BY_MODE:
        return ()
    job_id, _, index = reference.removeprefix("job:").partition("/")
    return (Parent(job_id, int(index) if index.isdigit() else 0, RELATION_BY_MODE[request.mode]),)


def source_prompt(reference: str, store: Store) -> str | None:
    """The prompt of the job a `job:<job_id>/<n>` reference names (None for any other image, or a job not in
    `store`): what an upscale of an earlier result is about, for the upscalers that read a prompt."""
    if not reference.startswith("job:"):
        return None
    job_id = reference.removeprefix("job:").partition("/")[0]
    try:
        prompt = store.get_job(job_id).request.get("prompt")
    except JobNotFound:
        return None
    return prompt if isinstance(prompt, str) else None


def resolve_references(request: ImageRequest, store: Store, settings: Settings) -> ImageRequest:
    """`request` with every `job:<job_id>[/<n>]` image input (an earlier result, image n, default 0) replaced by
    that saved image as a data: URI, read through the job's own record (never a path the caller gave).

    Raises:
        InvalidRequest: a reference names no job, no image of it, or one that cannot be read; by field.
    """
    found = {field: url for field, url in input_urls(request) if url.startswith("job:")}
    if not found:
        return request
    problems: list[FieldError] = []
    uris: dict[str, str] = {}
    for field, reference in found.items():
        try:
            uris[field] = _saved_image_uri(reference, store, settings)
        except ValueError as exc:
            problems.append(FieldError(field, reference, f"{exc}; allowed: {JOB_REFERENCE}, an earlier result"))
    if problems:
        raise InvalidRequest(problems)
    update: dict[str, object] = {}
    update.update({name: uris[name] for name in ("init_image", "mask_image") if name in uris})
    references = [
        ref.model_copy(update={"url": uris.get(f"style_references.{i}.url", ref.url)})
        for i, ref in enumerate(request.style_references)
    ]
    if references:
        update["style_references"] = tuple(references)
    return request.model_copy(update=update)


def _saved_image_uri(reference: str, store: Store, settings: Settings) -> str:
    job_id, _, index_text = reference.removeprefix("job:").partition("/")
    if not index_text.isdigit() and index_text:
        raise ValueError(f"image index {index_text!r} is not a number")
    try:
        job = store.get_job(job_id)
    except JobNotFound:
        raise ValueError(f"no job {job_id!r} here") from None
    images = (job.result or {}).get("images")
    index = int(index_text or 0)
    if not isinstance(images, list) or index >= len(images) or not isinstance(images[index], dict):
        raise ValueError(f"job {job_id} has no saved image {index} (it is {job.status})")
    return image_file_uri(Path(str(images[index].get("path"))), settings.max_input_image_bytes)


def image_file_uri(path: Path, max_bytes: int) -> str:
    """A saved or local image file as a data: URI, read only if it is a regular file within `max_bytes`.

    Raises:
        ValueError: missing, not a regular file (a symbolic link included), too large, or not PNG/JPEG/WebP.
    """
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{path} is not a regular file")
        if path.stat().st_size > max_bytes:
            raise ValueError(f"{path} is larger than max_input_image_bytes ({max_bytes})")
        data = read_regular(path)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read ({exc.strerror or exc})") from None
    kind = image_kind(data)
    if kind is None:
        raise ValueError(f"{path} is not a PNG, JPEG or WebP image")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")
