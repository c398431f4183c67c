"""Wire formats: the exact parameters each provider's endpoint receives for a resolved call."""

from __future__ import annotations

from dataclasses import dataclass

from fluxroute.types import LoraRef, Mode, StyleReference

# true CFG scale used locally when a negative prompt is given (doubles the transformer passes)
LOCAL_TRUE_CFG_SCALE = 4.0


@dataclass(frozen=True, slots=True)
class UpscaleWire:
    """How an upscale endpoint takes its job (the offer's catalog.UpscaleRule) and this job's values: the factor,
    and creativity already on the endpoint's own scale (None: not sent)."""

    factor: float
    creativity: float | None
    send: str  # "factor" (factor_field only) or "size" (width/height, and factor_field too when named)
    factor_field: str | None
    creativity_field: str | None
    prompt_field: str | None
    image_field: str
    fixed: tuple[tuple[str, object], ...] = ()


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
    mode: Mode = "text-to-image"
    mask_image: str | None = None
    loras: tuple[LoraRef, ...] = ()
    upscale: UpscaleWire | None = None


def fal_arguments(call: ResolvedCall) -> dict[str, object]:
    """fal's FLUX endpoints: a Redux variation takes no prompt, a Kontext edit no size (it follows the input) and no
    strength, an inpainting call the mask as mask_url."""
    args: dict[str, object] = {
        "prompt": call.prompt,
        "image_size": call.preset or {"width": call.width, "height": call.height},
        "num_images": call.num_images,
        "output_format": call.output_format,
        "enable_safety_checker": True,
    }
    if call.mode == "variation":
        del args["prompt"]
    if call.mode == "instruction-edit":
        del args["image_size"]
    if call.steps is not None:
        args["num_inference_steps"] = call.steps
    if call.guidance is not None:
        args["guidance_scale"] = call.guidance
    if call.seed is not None:
        args["seed"] = call.seed
    if call.init_image is not None:
        args["image_url"] = call.init_image
        if call.strength is not None:
            args["strength"] = call.strength
    if call.mask_image is not None:
        args["mask_url"] = call.mask_image
    if call.loras:
        args["loras"] = [{"path": lora.ref, "scale": lora.scale} for lora in call.loras]
    return args


def _style_refs(call: ResolvedCall) -> list[dict[str, object]]:
    return [{"url": ref.url, "strength": ref.strength} for ref in call.style_references]


def krea_flux_body(call: ResolvedCall) -> dict[str, object]:
    """Krea's bfl/flux-1-dev and flux-1-kontext-dev: the input image as image_url (image-to-image, instruction edit),
    or as an image prompt in style_images (variation)."""
    body: dict[str, object] = {"prompt": call.prompt, "width": call.width, "height": call.height}
    if call.steps is not None:
        body["steps"] = call.steps
    if call.guidance is not None:
        body["guidance_scale"] = call.guidance
    if call.seed is not None:
        body["seed"] = call.seed
    if call.init_image is not None and call.mode == "variation":
        body["style_images"] = [{"url": call.init_image, "strength": 1.0 if call.strength is None else call.strength}]
    elif call.init_image is not None:
        body["image_url"] = call.init_image
        if call.strength is not None:
            body["strength"] = call.strength
    if call.style_references:
        body["image_style_references"] = _style_refs(call)
    if call.loras:
        body["styles"] = [{"id": lora.ref.removeprefix("krea:"), "strength": lora.scale} for lora in call.loras]
    return body


def krea_2_body(call: ResolvedCall) -> dict[str, object]:
    body: dict[str, object] = {"prompt": call.prompt, "aspect_ratio": call.aspect_key, "resolution": "1K"}
    if call.seed is not None:
        body["seed"] = call.seed
    if call.style_references:
        body["image_style_references"] = _style_refs(call)
    return body


def local_kwargs(call: ResolvedCall) -> dict[str, object]:
    """diffusers __call__ arguments (see providers/local_pipeline.py). With an input image, `mode` picks the
    pipeline (FluxImg2ImgPipeline / FluxInpaintPipeline made from the loaded one, FluxKontextPipeline from its own
    weights) and the image travels as `image` (`mask_image` for inpainting: white changes), read by the local
    provider. The size is the planned one: for edits the input image's, snapped (the offers' size.output =
    "input"); a Kontext edit gets max_area = width x height, or diffusers would rescale it to 1024² pixels.
    guidance_scale is always the offer's (FluxImg2ImgPipeline's own default, 7.0, is not FLUX.1 [dev]'s).
    LoRAs travel as `loras` [{"ref", "scale"}]: the local provider finds each file offline and the pipeline loads
    them for this job only (the key never reaches the diffusers call)."""
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
    if call.mode != "text-to-image":
        kwargs["mode"] = call.mode
        kwargs["image"] = call.init_image
    if call.mode in ("image-to-image", "inpaint") and call.strength is not None:
        kwargs["strength"] = call.strength
    if call.mode == "inpaint":
        kwargs["mask_image"] = call.mask_image
    if call.mode == "instruction-edit":
        kwargs["max_area"] = call.width * call.height
    if call.loras:
        kwargs["loras"] = [{"ref": lora.ref, "scale": lora.scale} for lora in call.loras]
    return kwargs


def upscale_body(call: ResolvedCall) -> dict[str, object]:
    """Any upscale endpoint, by its rule (catalog.UpscaleRule): the input image, the factor or the output size,
    creativity and the prompt where the endpoint takes them, its fixed values. Krea's Topaz takes the output
    size, fal's upscalers a factor, the local upscaler both (providers/local_upscale.py)."""
    rule = call.upscale
    assert rule is not None, "an upscale offer's call carries its upscale rule"
    body: dict[str, object] = {rule.image_field: call.init_image}
    if rule.send == "size":
        body["width"], body["height"] = call.width, call.height
    if rule.factor_field is not None:
        body[rule.factor_field] = rule.factor
    if rule.creativity_field is not None and rule.creativity is not None:
        body[rule.creativity_field] = rule.creativity
    if rule.prompt_field is not None:
        body[rule.prompt_field] = call.prompt
    body.update(rule.fixed)
    return body


WIRE_BUILDERS = {
    "fal": fal_arguments,
    "krea-flux": krea_flux_body,
    "krea-2": krea_2_body,
    "local": local_kwargs,
    "upscale": upscale_body,
}
