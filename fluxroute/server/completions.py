"""MCP completion (`completion/complete`): suggestions for the prompts' arguments and the resource templates' fields,
filtered by what the client has typed so far.

- `<family>-prompt`: `aspect_ratio` from the shapes the catalog names for that family (Krea 2's fixed table; fal's
  presets and every named shape where any size goes), `style` from the looks and media the family's prompting
  guide itself suggests; `subject` has no suggestions.
- `fluxroute://guides/{model}`: the model families in the catalog.
- `fluxroute://jobs/{job_id}`: the ids of the most recent jobs in the store.
- `fluxroute://images/{image_id}.<format>`: `<job id>-<index>` of the recent jobs' saved images in that format.

An unknown prompt, template or argument gets an empty list.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mcp.server.mcpserver import MCPServer
from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from fluxroute.catalog import Catalog, load_catalog
from fluxroute.prompts import FAMILIES
from fluxroute.server.backend import Backend
from fluxroute.server.delivery import MIME_TYPES

if TYPE_CHECKING:
    from fluxroute.tools import ImageRouter

# the most values one completion carries (the MCP specification's limit)
MAX_VALUES = 100
# how many of the newest jobs job and image ids are completed from
RECENT_JOBS = 100

# Per family, the looks and media its guide (fluxroute/prompts/guides/<family>.md) names, in the guide's words
# (a test holds each to appear in its guide).
STYLES: dict[str, tuple[str, ...]] = {
    "flux-krea-dev": (
        "Portra 400",
        "medium format",
        "85mm, f/1.8, shallow depth of field",
        "35mm, f/8",
        "100mm macro",
        "natural muted color",
    ),
    "flux-dev": (
        "35mm film photograph",
        "watercolor illustration",
        "isometric 3D render",
        "muted pastel palette",
    ),
    "krea-2": (
        "gouache",
        "linocut",
        "cel shading",
        "anamorphic lens flare",
    ),
    "flux-schnell": (
        "35mm film photograph",
        "isometric 3D render",
        "muted green palette",
    ),
    "flux-kontext-dev": (
        "watercolor illustration",
        "linocut print",
        "cel shading",
        "35mm film photograph",
    ),
}

GUIDE_TEMPLATE = "fluxroute://guides/{model}"
JOB_TEMPLATE = "fluxroute://jobs/{job_id}"
IMAGE_TEMPLATES = {f"fluxroute://images/{{image_id}}.{fmt}": fmt for fmt in MIME_TYPES}
PROMPT_SUFFIX = "-prompt"


def add_completions(server: MCPServer, backend: Backend) -> None:
    """Answer `completion/complete` for the prompts and resource templates (and so advertise `completions`)."""
    catalog = load_catalog()
    families = [model.id for model in catalog.models if model.id in FAMILIES]  # the models with a prompting guide

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        del context  # no suggestion here depends on another argument
        if isinstance(ref, PromptReference):
            family = ref.name.removesuffix(PROMPT_SUFFIX)
            if not ref.name.endswith(PROMPT_SUFFIX) or family not in families:
                return completion([])
            if argument.name == "aspect_ratio":
                return completion(matching(aspect_ratios(catalog, family), argument.value))
            if argument.name == "style":
                return completion(matching(STYLES.get(family, ()), argument.value, within_words=True))
            return completion([])
        if ref.uri == GUIDE_TEMPLATE and argument.name == "model":
            return completion(matching(families, argument.value))
        if ref.uri == JOB_TEMPLATE and argument.name == "job_id":
            router = await backend.router()
            return completion(matching(await asyncio.to_thread(recent_job_ids, router), argument.value))
        fmt = IMAGE_TEMPLATES.get(ref.uri)
        if fmt is not None and argument.name == "image_id":
            router = await backend.router()
            return completion(matching(await asyncio.to_thread(recent_image_ids, router, fmt), argument.value))
        return completion([])


def completion(values: Sequence[str]) -> Completion:
    """At most MAX_VALUES of `values`, with the total and whether more were left out."""
    return Completion(values=list(values[:MAX_VALUES]), total=len(values), has_more=len(values) > MAX_VALUES)


def matching(values: Iterable[str], typed: str, *, within_words: bool = False) -> list[str]:
    """`values` that start with `typed` (ignoring case), in their order; with `within_words`, then those with a
    later word starting with it ("film" finds "35mm film photograph")."""
    typed = typed.strip().lower()
    values = list(dict.fromkeys(values))
    first = [value for value in values if value.lower().startswith(typed)]
    if not within_words or not typed:
        return first
    later = [
        value
        for value in values
        if value not in first and any(word.startswith(typed) for word in value.lower().replace(",", " ").split())
    ]
    return first + later


def aspect_ratios(catalog: Catalog, family: str) -> list[str]:
    """The shapes to suggest for `family`: its offers' fixed table when every offer has one (Krea 2), otherwise
    every shape the catalog names (the fixed tables, then fal's presets as W:H)."""
    offers = [offer for offer in catalog.offers if offer.model == family]
    if offers and all(o.size.aspect_sizes and not (o.size.custom or o.size.presets) for o in offers):
        return list(dict.fromkeys(ratio for offer in offers for ratio in offer.size.aspect_sizes))
    tables = [ratio for offer in catalog.offers for ratio in offer.size.aspect_sizes]
    presets = [_ratio(width, height) for width, height in catalog.presets.values()]
    return list(dict.fromkeys([*tables, *presets]))


def _ratio(width: int, height: int) -> str:
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def recent_job_ids(router: ImageRouter) -> list[str]:
    """The ids of the newest RECENT_JOBS jobs, newest first."""
    return [job.id for job in router.store.list_jobs(limit=RECENT_JOBS)]


def recent_image_ids(router: ImageRouter, fmt: str) -> list[str]:
    """`<job id>-<index>` of every image saved as `fmt` by the newest RECENT_JOBS jobs, newest first."""
    ids: list[str] = []
    for job in router.store.list_jobs(limit=RECENT_JOBS):
        images = (job.result or {}).get("images")
        for index, image in enumerate(images if isinstance(images, list) else []):
            if isinstance(image, dict) and image.get("format") == fmt and image.get("path"):
                ids.append(f"{job.id}-{index}")
    return ids
