"""Wire formats: the exact parameters each provider's endpoint receives for a resolved call."""

from __future__ import annotations

from dataclasses import dataclass

from fluxroute.types import StyleReference

# true CFG scale used locally when a negative prompt is given (doubles the transformer passes)
LOCAL_TRUE_CFG_SCALE = 4.0


@dataclass(slots=True)
class ResolvedCall:
    """A request after an offer has adapted it: every value final, nothing left to default."""

    prompt: str
    width: int
    height: int
    preset: str | None
    aspect_key: str | None
    num_images: int
    steps: int | None
    guidance: float | None
    seed: int | None
    output_format: str
    negative_prompt: str | None
    init_image: str | None
    strength: float | None
    style_references: tuple[StyleReference, ...]


def fal_arguments(call: ResolvedCall) -> dict[str, object]:
    args: dict[str, object] = {
        "prompt": call.prompt,
        "image_size": call.preset or {"width": call.width, "height": call.height},
        "num_images": call.num_images,
        "output_format": call.output_format,
        "enable_safety_checker": True,
    }
    if call.steps is not None:
        args["num_inference_steps"] = call.steps
    if call.guidance is not None:
        args["guidance_scale"] = call.guidance
    if call.seed is not None:
        args["seed"] = call.seed
    if call.init_image is not None:
        args["image_url"] = call.init_image
        args["strength"] = call.strength
    return args


def _style_refs(call: ResolvedCall) -> list[dict[str, object]]:
    return [{"url": ref.url, "strength": ref.strength} for ref in call.style_references]


def krea_flux_body(call: ResolvedCall) -> dict[str, object]:
    body: dict[str, object] = {"prompt": call.prompt, "width": call.width, "height": call.height}
    if call.steps is not None:
        body["steps"] = call.steps
    if call.guidance is not None:
        body["guidance_scale"] = call.guidance
    if call.seed is not None:
        body["seed"] = call.seed
    if call.init_image is not None:
        body["image_url"] = call.init_image
        body["strength"] = call.strength
    if call.style_references:
        body["image_style_references"] = _style_refs(call)
    return body


def krea_2_body(call: ResolvedCall) -> dict[str, object]:
    body: dict[str, object] = {"prompt": call.prompt, "aspect_ratio": call.aspect_key, "resolution": "1K"}
    if call.seed is not None:
        body["seed"] = call.seed
    if call.style_references:
        body["image_style_references"] = _style_refs(call)
    return body


def local_kwargs(call: ResolvedCall) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "prompt": call.prompt,
        "width": call.width,
        "height": call.height,
        "num_inference_steps": call.steps,
        "guidance_scale": call.guidance,
        "num_images_per_prompt": call.num_images,
        "seed": call.seed,
        "output_format": call.output_format,
    }
    if call.negative_prompt is not None:
        kwargs["negative_prompt"] = call.negative_prompt
        kwargs["true_cfg_scale"] = LOCAL_TRUE_CFG_SCALE
    return kwargs


WIRE_BUILDERS = {"fal": fal_arguments, "krea-flux": krea_flux_body, "krea-2": krea_2_body, "local": local_kwargs}
