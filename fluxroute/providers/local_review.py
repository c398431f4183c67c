"""The content-filter duty some licenses put on local outputs (FLUX.1 [dev], Krea 2; which one is catalog data, named
in each plan): a pluggable content checker, or a mark for manual review."""

from __future__ import annotations

import dataclasses
import importlib
import io
from collections.abc import Callable
from typing import Any

from fluxroute.errors import ConfigError, JobFailed
from fluxroute.providers.base import ProviderImage

UNFILTERED = "unfiltered — review before distribution"
UNFILTERED_WARNING = (
    f"{UNFILTERED}: no content checker is configured (FLUXROUTE_LOCAL_CONTENT_CHECKER); the plan's explanation "
    "names what the model's license asks of its outputs (FLUX.1 [dev]: a content filter or manual review)"
)


@dataclasses.dataclass(frozen=True)
class ContentVerdict:
    """A content checker's judgement of one image."""

    flagged: bool
    reason: str = ""


# (PIL image, prompt) -> verdict; a bare bool means flagged or not
ContentChecker = Callable[[Any, str], "ContentVerdict | bool"]


@dataclasses.dataclass(frozen=True)
class Screening:
    """What screening did to a batch: which images were withheld, notes for the caller, the review mark."""

    flags: list[bool]
    warnings: list[str]
    review: str


def load_checker(path: str) -> ContentChecker:
    """The callable named by 'module:callable'.

    Raises:
        ConfigError: the module cannot be imported or has no such callable.
    """
    module_name, _, attr = path.partition(":")
    try:
        checker = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"content checker {path!r} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not callable(checker):
        raise ConfigError(f"content checker {path!r} is not callable")
    result: ContentChecker = checker
    return result


def screen(images: list[Any], prompt: str, checker: ContentChecker | None, name: str | None) -> Screening:
    """Run the checker over `images` (PIL, replaced in place when flagged), or mark them for manual review.

    Raises:
        JobFailed: the checker raised; no image is handed out unchecked.
    """
    if checker is None:
        return Screening([False] * len(images), [UNFILTERED_WARNING], UNFILTERED)
    flags: list[bool] = []
    warnings: list[str] = []
    for i, image in enumerate(images):
        verdict = _verdict(checker, image, prompt, name)
        flags.append(verdict.flagged)
        if verdict.flagged:
            images[i] = image.point(lambda _: 0)  # withheld: a black image of the same size
            warnings.append(f"image {i} withheld by the content checker: {verdict.reason or 'flagged'}")
    return Screening(flags, warnings, f"screened by content checker {name}")


def _verdict(checker: ContentChecker, image: Any, prompt: str, name: str | None) -> ContentVerdict:
    try:
        verdict = checker(image, prompt)
    except Exception as exc:
        # fail closed: an image nobody could check is not handed out as checked
        raise JobFailed(f"content checker {name} raised {type(exc).__name__}: {exc}", provider="local") from exc
    return verdict if isinstance(verdict, ContentVerdict) else ContentVerdict(bool(verdict))


def encode(image: Any, output_format: str, flagged: bool) -> ProviderImage:
    """A PIL image as PNG or JPEG (quality 95, as saved images are re-encoded elsewhere) bytes."""
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        content_type = "image/jpeg"
    else:
        image.save(buffer, format="PNG")
        content_type = "image/png"
    return ProviderImage(buffer.getvalue(), image.width, image.height, content_type, flagged=flagged)
