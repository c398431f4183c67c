"""The arguments of generate_image and plan_image_route as an LLM sends them, shaped to survive any converter.

A strict-mode converter (OpenAI strict, openai-agents, langchain, pydantic-ai) marks every property required,
so a strict model must send every field. Each field therefore has a value that means "no preference": a
nullable type (null = the default) or an explicit "auto"; and the image's size is one field, so no model has to
send several ways of sizing at once. `to_request()` turns them into the library's ImageRequest.

The old sizing fields (width/height, aspect_ratio, megapixels, image_size) and `providers` are still taken,
unpublished, for one release; the result then carries a deprecation warning.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from fluxroute.errors import FieldError, InvalidRequest
from fluxroute.types import (
    MAX_IMAGE_INPUT_CHARS,
    MAX_UPSCALE_FACTOR,
    FalPreset,
    IdempotencyKey,
    ImageMode,
    ImageRequest,
    ModelId,
    NegativeText,
    OutputFormat,
    Prefer,
    PromptText,
    ProviderName,
    UpscaleMethod,
    Usage,
    parse_aspect_ratio,
)

PRESETS: tuple[str, ...] = FalPreset.__args__  # type: ignore[attr-defined]
MAX_MEGAPIXELS = 16.0
_PIXELS = re.compile(r"(\d{2,5})\s*[x×]\s*(\d{2,5})")
_RATIO_AREA = re.compile(r"([0-9.]+:[0-9.]+)(?:\s*@\s*([0-9.]+)\s*(?:mp|MP|Mp)?)?")
DEPRECATED = ("width", "height", "aspect_ratio", "megapixels", "image_size", "providers")
SIZE_FORMS = "auto, WxH (1024x768), W:H (16:9, at 1 MP), W:H@MP (16:9@2MP) or a preset (" + ", ".join(PRESETS) + ")"


def size_fields(size: str) -> dict[str, Any]:
    """The ImageRequest fields a `size` stands for.

    Raises:
        ValueError: not one of the SIZE_FORMS.
    """
    text = size.strip()
    if text.lower() == "auto":
        return {}
    if text in PRESETS:
        return {"image_size": text}
    if match := _PIXELS.fullmatch(text):
        return {"width": int(match[1]), "height": int(match[2])}
    if match := _RATIO_AREA.fullmatch(text):
        parse_aspect_ratio(match[1])
        fields: dict[str, Any] = {"aspect_ratio": match[1]}
        if match[2] is not None:
            fields["megapixels"] = float(match[2])
        return fields
    raise ValueError(f"must be {SIZE_FORMS}")


class StyleImage(BaseModel):
    """One style reference image."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    strength: float = Field(default=0.5, ge=0, le=1)


class LoraArg(BaseModel):
    """One LoRA: a Krea style id or weights by URL or repo, and its scale."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ref: str = Field(min_length=1, max_length=500)
    scale: float = Field(default=1.0, ge=-2, le=2)


class ImageArgs(BaseModel):
    """plan_image_route's arguments (and generate_image's, with two more)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prompt: PromptText
    model: ModelId = "auto"
    size: str = Field(default="auto", min_length=1, max_length=40)
    num_images: int = Field(default=1, ge=1, le=4)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    steps: int | None = Field(default=None, ge=1, le=100)
    guidance: float | None = Field(default=None, ge=0, le=24)
    output_format: OutputFormat = "png"
    negative_prompt: NegativeText | None = None
    init_image: str | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    strength: float | None = Field(default=None, ge=0.01, le=1)
    style_references: list[StyleImage] = Field(default_factory=list, max_length=10)
    loras: list[LoraArg] = Field(default_factory=list, max_length=5)
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    provider: Literal["auto", "krea", "fal", "local", "ray"] = "auto"
    exclude_providers: list[ProviderName] = Field(default_factory=list, max_length=4)
    prefer: Prefer = "cost"
    idempotency_key: IdempotencyKey | None = None
    # taken for one release, not published
    width: SkipJsonSchema[int | None] = None
    height: SkipJsonSchema[int | None] = None
    aspect_ratio: SkipJsonSchema[str | None] = None
    megapixels: SkipJsonSchema[float | None] = None
    image_size: SkipJsonSchema[str | None] = None
    providers: SkipJsonSchema[list[ProviderName] | None] = None
    # set by edit_image, vary_image and upscale_image, not published here
    mask_image: SkipJsonSchema[str | None] = None
    task: SkipJsonSchema[ImageMode | None] = None
    upscale_factor: SkipJsonSchema[float | None] = None
    upscale_method: SkipJsonSchema[UpscaleMethod | None] = None
    creativity: SkipJsonSchema[float | None] = None

    @model_validator(mode="after")
    def _one_way_to_size(self) -> ImageArgs:
        old = [name for name in DEPRECATED[:5] if getattr(self, name) is not None]
        if old and self.size.strip().lower() != "auto":
            values = {name: getattr(self, name) for name in ("size", *old)}
            raise InvalidRequest(
                [FieldError(", ".join(values), values, f"give size only (it replaces {', '.join(old)})")]
            )
        return self

    def deprecations(self) -> list[str]:
        """What the caller sent under an old name, and what to send instead."""
        old = [name for name in DEPRECATED if getattr(self, name) is not None]
        if not old:
            return []
        return [f"{', '.join(old)}: deprecated and taken for one more release; send size ({SIZE_FORMS}) instead"]

    def request(self, max_cost_usd: float | None = None) -> ImageRequest:
        """The library request; `max_cost_usd` tightens the caller's own cap (never loosens it).

        Raises:
            InvalidRequest: `size` is not one of its forms, or the request breaks a rule of ImageRequest.
        """
        data = self.model_dump(
            exclude={"size", "wait_s", "confirm_spend", "drafts", *DEPRECATED}, exclude_none=True, exclude_defaults=True
        )
        data["prompt"] = self.prompt
        try:
            data.update(size_fields(self.size))
        except ValueError as exc:
            raise InvalidRequest([FieldError("size", self.size, str(exc))]) from None
        data.update({name: getattr(self, name) for name in DEPRECATED if getattr(self, name) is not None})
        if data.pop("provider", "auto") != "auto":
            data["provider"] = self.provider
        if max_cost_usd is not None:
            data["max_cost_usd"] = min(
                max_cost_usd, self.max_cost_usd if self.max_cost_usd is not None else max_cost_usd
            )
        return ImageRequest.parse(data)


class GenerateArgs(ImageArgs):
    """generate_image's arguments: the image, how long to wait for it, whether the user approved the spend."""

    wait_s: float = Field(default=45.0, ge=0, le=3600)
    confirm_spend: bool = False


class EditArgs(BaseModel):
    """edit_image's arguments: the image, what to do to it, and the usual constraints on where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    image: str = Field(min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    prompt: PromptText
    task: Literal["auto", "image-to-image", "instruction-edit", "inpaint"] = "auto"
    mask: str | None = Field(default=None, min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    strength: float | None = Field(default=None, ge=0.01, le=1)
    style_references: list[StyleImage] = Field(default_factory=list, max_length=10)
    loras: list[LoraArg] = Field(default_factory=list, max_length=5)
    model: ModelId = "auto"
    num_images: int = Field(default=1, ge=1, le=4)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    output_format: OutputFormat = "png"
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    provider: Literal["auto", "krea", "fal", "local", "ray"] = "auto"
    idempotency_key: IdempotencyKey | None = None
    wait_s: float = Field(default=45.0, ge=0, le=3600)
    confirm_spend: bool = False

    def generate_args(self) -> GenerateArgs:
        fields = self.model_dump(exclude={"image", "mask", "task"}, exclude_none=True)
        task = edit_task(self.task, self.mask, self.strength)
        return GenerateArgs(init_image=self.image, mask_image=self.mask, task=task, **fields)


def edit_task(task: str | None, mask: str | None, strength: float | None) -> ImageMode:
    """What an edit does: `task` when one is named, else by what was given: a mask inpaints, a strength re-renders the
    image as the prompt describes (image-to-image), neither follows the prompt as an instruction (FLUX.1 Kontext)."""
    if task in ("image-to-image", "instruction-edit", "inpaint"):
        return task  # type: ignore[return-value]
    if mask is not None:
        return "inpaint"
    return "image-to-image" if strength is not None else "instruction-edit"


# what vary_image sends as the prompt when none is given (Krea's image prompts need one; fal's Redux takes none)
VARIATION_PROMPT = "a variation of this image"


class VaryArgs(BaseModel):
    """vary_image's arguments: the image and how many variations of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    image: str = Field(min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    n: int = Field(default=1, ge=1, le=4)
    prompt: PromptText | None = None
    model: ModelId = "auto"
    size: str = Field(default="auto", min_length=1, max_length=40)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    provider: Literal["auto", "krea", "fal", "local", "ray"] = "auto"
    idempotency_key: IdempotencyKey | None = None
    wait_s: float = Field(default=45.0, ge=0, le=3600)
    confirm_spend: bool = False

    def generate_args(self) -> GenerateArgs:
        fields = self.model_dump(exclude={"image", "n", "prompt"}, exclude_none=True)
        prompt = self.prompt or VARIATION_PROMPT
        return GenerateArgs(init_image=self.image, task="variation", num_images=self.n, prompt=prompt, **fields)


def upscale_box(field: str, size: str) -> str | None:
    """An upscale's output box as WxH (None: auto, the factor decides).

    Raises:
        InvalidRequest: `size` is neither auto nor WxH; the error names `field`.
    """
    text = size.strip()
    if text.lower() == "auto":
        return None
    if not _PIXELS.fullmatch(text):
        raise InvalidRequest([FieldError(field, size, "auto, or the output's largest WxH such as 4096x4096")])
    return text


# what upscale_image sends as the prompt when none is given (only generative upscalers read one): Clarity
# Upscaler's documented default
UPSCALE_PROMPT = "masterpiece, best quality, highres"


class UpscaleArgs(BaseModel):
    """upscale_image's arguments: the image, how much larger, faithful or generative."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    image: str = Field(min_length=1, max_length=MAX_IMAGE_INPUT_CHARS)
    factor: float | None = Field(default=None, ge=1, le=MAX_UPSCALE_FACTOR)
    size: str = Field(default="auto", min_length=1, max_length=40)
    method: UpscaleMethod = "faithful"
    creativity: float | None = Field(default=None, ge=0, le=1)
    prompt: PromptText | None = None
    model: ModelId = "auto"
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    provider: Literal["auto", "krea", "fal", "local", "ray"] = "auto"
    idempotency_key: IdempotencyKey | None = None
    wait_s: float = Field(default=45.0, ge=0, le=3600)
    confirm_spend: bool = False

    def generate_args(self, source_prompt: str | None = None) -> GenerateArgs:
        """generate_image's arguments for this upscale; without a prompt of its own, the prompt of the image's
        source (`source_prompt`, an earlier result's) or a generic one.

        Raises:
            InvalidRequest: `size` is not auto or WxH.
        """
        fields = self.model_dump(exclude={"image", "factor", "method", "prompt", "size"}, exclude_none=True)
        return GenerateArgs(
            init_image=self.image,
            task="upscale",
            prompt=self.prompt or source_prompt or UPSCALE_PROMPT,
            size=upscale_box("size", self.size) or "auto",
            upscale_factor=self.factor,
            upscale_method=self.method,
            **fields,
        )


class PlanArgs(ImageArgs):
    """plan_image_route's arguments: the image, and optionally a draft → final round to plan instead."""

    drafts: int | None = Field(default=None, ge=1, le=8)


class DraftArgs(BaseModel):
    """draft_images' arguments: the image wanted and how many cheap variants of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prompt: PromptText
    n: int = Field(default=4, ge=1, le=8)
    model: ModelId = "auto"
    size: str = Field(default="auto", min_length=1, max_length=40)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    usage: Usage | None = None
    max_cost_usd: float | None = Field(default=None, ge=0)
    provider: Literal["auto", "krea", "fal", "local", "ray"] = "auto"
    idempotency_key: IdempotencyKey | None = None
    confirm_spend: bool = False

    def request(self) -> ImageRequest:
        """The library request the drafts vary.

        Raises:
            InvalidRequest: `size` is not one of its forms, or the request breaks a rule of ImageRequest.
        """
        return ImageArgs.model_validate(self.model_dump(exclude={"n", "confirm_spend"}, exclude_none=True)).request()


class FinalizeArgs(BaseModel):
    """finalize_image's arguments: which draft of which set, and how far an image-conditioned final may move."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    draft_set_id: str = Field(min_length=1, max_length=64)
    index: int = Field(ge=1, le=8)
    strength: float | None = Field(default=None, ge=0.01, le=1)
    upscale: float | None = Field(default=None, ge=1, le=MAX_UPSCALE_FACTOR)
    idempotency_key: IdempotencyKey | None = None
    confirm_spend: bool = False
