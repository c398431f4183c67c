"""Input rules, defaults and prices of the fal endpoints the fake serves, FLUX and the upscalers (pydantic-style
422 details)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

IMAGE_SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
MAX_SIDE = 14142
MAX_PIXELS = 2048 * 2048  # "up to 4 megapixels": 2048x2048 is the largest square allowed


@dataclass(frozen=True)
class FalModel:
    """One fal endpoint id with its step range, defaults and per-megapixel price. `steps` None: the endpoint
    has no num_inference_steps field (it runs `default_steps`); `default_guidance` None: no guidance_scale field
    (fields an endpoint does not have are ignored, as fal ignores extra input)."""

    id: str
    # t2i: prompt -> image at image_size; i2i: image_url (+strength) at the input's size; kontext: an instruction edit
    # of image_url at its size; inpaint: image_url + mask_url (+strength) at the input's size; redux: variations of
    # image_url at image_size, no prompt
    kind: Literal["t2i", "i2i", "kontext", "inpaint", "redux"]
    steps: tuple[int, int] | None
    default_steps: int
    default_guidance: float | None
    price_per_mp: Decimal = Decimal("0.025")
    accelerations: tuple[str, ...] = ("none", "regular", "high")

    @property
    def owner_app(self) -> str:
        return "/".join(self.id.split("/")[:2])


MODELS: dict[str, FalModel] = {
    m.id: m
    for m in (
        FalModel("fal-ai/flux/krea", "t2i", (1, 50), 28, 4.5),
        FalModel("fal-ai/flux/dev", "t2i", (1, 50), 28, 3.5),
        FalModel("fal-ai/flux/krea/image-to-image", "i2i", (10, 50), 40, 4.5),
        # fal llms.txt fal-ai/flux/schnell: steps 1-12 (default 4), no guidance_scale, $0.003 per megapixel
        FalModel("fal-ai/flux/schnell", "t2i", (1, 12), 4, None, Decimal("0.003")),
        # fal llms.txt fal-ai/krea-2/turbo: the 8-step distilled weights (no steps or guidance fields),
        # acceleration none/regular, image i uses seed + i, $0.008 per megapixel
        FalModel("fal-ai/krea-2/turbo", "t2i", None, 8, None, Decimal("0.008"), ("none", "regular")),
        # fal-ai/flux-kontext/dev: steps 10-50 (28), guidance 2.5; fal publishes no per-megapixel price, so this
        # table's is the fake's own (tests set the user's [prices] separately)
        FalModel("fal-ai/flux-kontext/dev", "kontext", (10, 50), 28, 2.5, Decimal("0.025")),
        # fal-ai/flux-krea-lora/inpainting: image_url + mask_url, strength (0.85); price not published by fal
        FalModel("fal-ai/flux-krea-lora/inpainting", "inpaint", (1, 50), 28, 3.5, Decimal("0.035")),
        # fal-ai/flux-krea-lora (and its image-to-image): loras[{path, scale}]; price not published by fal
        FalModel("fal-ai/flux-krea-lora", "t2i", (1, 50), 28, 4.5, Decimal("0.035")),
        FalModel("fal-ai/flux-krea-lora/image-to-image", "i2i", (1, 50), 28, 4.5, Decimal("0.035")),
        # Redux variations: image_url only (no prompt), at image_size
        FalModel("fal-ai/flux/dev/redux", "redux", (1, 50), 28, 3.5, Decimal("0.025")),
        FalModel("fal-ai/flux-1/schnell/redux", "redux", (1, 12), 4, None, Decimal("0.003")),
    )
}


def price(model: FalModel, width: int, height: int, num_images: int) -> Decimal:
    """fal's rule: megapixels rounded up per image, times the per-MP price, times images."""
    megapixels = -(-width * height // 1_000_000)
    return megapixels * model.price_per_mp * num_images


def _error(
    loc: tuple[Any, ...], kind: str, msg: str, value: Any, ctx: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "loc": ["body", *loc],
        "msg": msg,
        "type": kind,
        "input": value,
        "url": f"https://docs.fal.ai/errors#{kind}",
    }
    if ctx:
        item["ctx"] = dict(ctx)
    return item


def _literal(options: tuple[str, ...]) -> str:
    quoted = [f"'{o}'" for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


class _Checker:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.errors: list[dict[str, Any]] = []

    def required(self, name: str) -> bool:
        if name not in self.body:
            self.errors.append(_error((name,), "missing", "Field required", dict(self.body)))
            return False
        return True

    def string(self, name: str) -> None:
        if name in self.body and not isinstance(self.body[name], str):
            self.errors.append(_error((name,), "string_type", "Input should be a valid string", self.body[name]))

    def loras(self) -> None:
        """`loras`: a list of {path (string, required), scale (number, default 1)}."""
        if "loras" not in self.body:
            return
        items = self.body["loras"]
        if not isinstance(items, list):
            self.errors.append(_error(("loras",), "list_type", "Input should be a valid list", items))
            return
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                self.errors.append(_error(("loras", i, "path"), "missing", "Field required", item))
            elif "scale" in item:
                self.number(("loras", i, "scale"), item["scale"], integer=False, ge=-4, le=4)

    def boolean(self, name: str) -> None:
        if name in self.body and not isinstance(self.body[name], bool):
            self.errors.append(_error((name,), "bool_type", "Input should be a valid boolean", self.body[name]))

    def number(
        self,
        loc: tuple[Any, ...],
        value: Any,
        *,
        integer: bool,
        ge: float | None = None,
        le: float | None = None,
        gt: float | None = None,
    ) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind, msg = (
                ("int_type", "Input should be a valid integer")
                if integer
                else ("float_type", "Input should be a valid number")
            )
            self.errors.append(_error(loc, kind, msg, value))
        elif integer and not float(value).is_integer():
            self.errors.append(
                _error(
                    loc,
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                    value,
                )
            )
        elif gt is not None and value <= gt:
            self.errors.append(_error(loc, "greater_than", f"Input should be greater than {gt:g}", value, {"gt": gt}))
        elif ge is not None and value < ge:
            self.errors.append(
                _error(
                    loc,
                    "greater_than_equal",
                    f"Input should be greater than or equal to {ge:g}",
                    value,
                    {"ge": ge},
                )
            )
        elif le is not None and value > le:
            self.errors.append(
                _error(loc, "less_than_equal", f"Input should be less than or equal to {le:g}", value, {"le": le})
            )

    def field(self, name: str, *, integer: bool, ge: float | None = None, le: float | None = None) -> None:
        if name in self.body:
            self.number((name,), self.body[name], integer=integer, ge=ge, le=le)

    def choice(self, name: str, options: tuple[str, ...]) -> None:
        if name in self.body and self.body[name] not in options:
            expected = _literal(options)
            self.errors.append(
                _error(
                    (name,),
                    "literal_error",
                    f"Input should be {expected}",
                    self.body[name],
                    {"expected": expected},
                )
            )

    def image_size(self) -> None:
        value = self.body.get("image_size")
        if value is None or isinstance(value, str):
            if value is not None:
                self.choice("image_size", tuple(IMAGE_SIZE_PRESETS))
            return
        if not isinstance(value, dict):
            self.errors.append(
                _error(
                    ("image_size",),
                    "model_attributes_type",
                    "Input should be a valid dictionary or object to extract fields from",
                    value,
                )
            )
            return
        before = len(self.errors)
        for side in ("width", "height"):
            self.number(("image_size", side), value.get(side, 512), integer=True, gt=0, le=MAX_SIDE)
        if len(self.errors) == before and value.get("width", 512) * value.get("height", 512) > MAX_PIXELS:
            self.errors.append(
                _error(
                    ("image_size",),
                    "value_error",
                    f"Value error, image_size must be at most {MAX_PIXELS} pixels",
                    value,
                    {"max_pixels": MAX_PIXELS},
                )
            )


def validate(model: FalModel, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return ``(input with defaults, errors)``; errors are 422 ``detail`` items (extras are ignored)."""
    if not isinstance(body, dict):
        return {}, [_error((), "model_attributes_type", "Input should be a valid dictionary", body)]
    check = _Checker(body)
    if model.kind != "redux" and check.required("prompt"):
        check.string("prompt")
    if model.kind != "t2i" and check.required("image_url"):
        check.string("image_url")
    if model.kind == "inpaint" and check.required("mask_url"):
        check.string("mask_url")
    if model.kind in ("i2i", "inpaint"):
        check.field("strength", integer=False, ge=0.01, le=1)
    if model.kind in ("t2i", "redux"):
        check.image_size()
    if model.steps is not None:
        check.field("num_inference_steps", integer=True, ge=model.steps[0], le=model.steps[1])
    if model.default_guidance is not None:
        check.field("guidance_scale", integer=False, ge=1, le=20)
    if "lora" in model.id:
        check.loras()
    check.field("num_images", integer=True, ge=1, le=4)
    check.field("seed", integer=True)
    check.choice("output_format", ("jpeg", "png"))
    check.choice("acceleration", model.accelerations)
    for flag in ("enable_safety_checker", "sync_mode"):
        check.boolean(flag)
    if check.errors:
        return dict(body), check.errors
    body = {key: value for key, value in body.items() if key not in _absent(model)}
    defaults: dict[str, Any] = {
        "num_inference_steps": model.default_steps,
        "guidance_scale": model.default_guidance,
        "num_images": 1,
        "enable_safety_checker": True,
        "output_format": "jpeg",
        "sync_mode": False,
        "acceleration": "none",
    }
    for name in _absent(model):
        del defaults[name]
    if model.kind in ("i2i", "inpaint"):
        defaults["strength"] = 0.95 if model.kind == "i2i" else 0.85
    if model.kind in ("t2i", "redux"):
        defaults["image_size"] = "landscape_4_3"
    return {**defaults, **body}, []


def _absent(model: FalModel) -> tuple[str, ...]:
    """The common fields `model`'s endpoint does not have (dropped from its input, as fal ignores them)."""
    return (("num_inference_steps",) if model.steps is None else ()) + (
        ("guidance_scale",) if model.default_guidance is None else ()
    )


def output_size(image_size: Any) -> tuple[int, int]:
    """Pixel size for a validated t2i ``image_size``."""
    if isinstance(image_size, str):
        return IMAGE_SIZE_PRESETS[image_size]
    return int(image_size.get("width", 512)), int(image_size.get("height", 512))


# --- the upscalers -----------------------------------------------------------------------------------------
# Input schemas and prices from fal's own model pages (llms.txt: fal-ai/seedvr/upscale/image,
# fal-ai/clarity-upscaler, fal-ai/esrgan; fal-ai/aura-sr from its API page as copied into a fal skill, and
# fal-js's generated types). Each answers one `image` object, not an `images` list.
SEEDVR_TARGETS: dict[str, int] = {"720p": 720, "1080p": 1080, "1440p": 1440, "2160p": 2160}
ESRGAN_MODELS = (
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "RealESRGAN_x4_v3",
    "RealESRGAN_x4_wdn_v3",
    "RealESRGAN_x4_anime_v3",
)
UpscalePricing = Literal["per_output_mp", "per_compute_second", "unpublished"]


@dataclass(frozen=True)
class Upscaler:
    """One fal upscaler endpoint: the field that carries its factor, and how the fake bills it.

    `pricing`: "per_output_mp" — `unit_price` per megapixel of the output, rounded up per image like the FLUX
    entries above (fal documents no rounding for these; its seedvr *video* example bills fractional MP);
    "per_compute_second" — `unit_price` times the inference_time the fake reports in the COMPLETED status's
    metrics, exactly; "unpublished" — fal publishes no price: the fake bills `FalFake.aura_sr_price` per request.
    """

    id: str
    factor_field: str
    factor_range: tuple[float, float]
    default_factor: float
    pricing: UpscalePricing
    unit_price: Decimal | None
    default_steps: int = 1  # log lines "step i/N" while it runs (clarity: its num_inference_steps)

    @property
    def owner_app(self) -> str:
        return "/".join(self.id.split("/")[:2])


UPSCALERS: dict[str, Upscaler] = {
    u.id: u
    for u in (
        # $0.001 per megapixel (fal llms.txt); the fake counts the output's megapixels
        Upscaler("fal-ai/seedvr/upscale/image", "upscale_factor", (1, 10), 2, "per_output_mp", Decimal("0.001")),
        # $0.03 per megapixel (fal llms.txt); the fake counts the output's megapixels
        Upscaler("fal-ai/clarity-upscaler", "upscale_factor", (1, 4), 2, "per_output_mp", Decimal("0.03"), 18),
        # $0.00111 per compute second (fal llms.txt)
        Upscaler("fal-ai/esrgan", "scale", (1, 8), 2, "per_compute_second", Decimal("0.00111")),
        # upscale_factor is a constant 4 (older schemas: `upscaling_factor`, the string "4"); no published price
        Upscaler("fal-ai/aura-sr", "upscale_factor", (4, 4), 4, "unpublished", None),
    )
}


def _upscaler_defaults(upscaler: Upscaler) -> dict[str, Any]:
    if upscaler.id == "fal-ai/seedvr/upscale/image":
        return {
            "upscale_mode": "factor",
            "upscale_factor": 2,
            "target_resolution": "1080p",
            "noise_scale": 0.1,
            "output_format": "jpg",
            "sync_mode": False,
        }
    if upscaler.id == "fal-ai/clarity-upscaler":
        return {
            "prompt": "masterpiece, best quality, highres",
            "upscale_factor": 2,
            "negative_prompt": "(worst quality, low quality, normal quality:2)",
            "creativity": 0.35,
            "resemblance": 0.6,
            "guidance_scale": 4,
            "num_inference_steps": 18,
            "enable_safety_checker": True,
        }
    if upscaler.id == "fal-ai/esrgan":
        return {"scale": 2, "tile": 0, "face": False, "model": "RealESRGAN_x4plus", "output_format": "png"}
    return {"upscale_factor": 4, "overlapping_tiles": False, "checkpoint": "v1"}


def validate_upscale(upscaler: Upscaler, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Like `validate`, for an upscaler: ``(input with defaults, errors)``; unknown fields are kept and ignored."""
    if not isinstance(body, dict):
        return {}, [_error((), "model_attributes_type", "Input should be a valid dictionary", body)]
    check = _Checker(body)
    if check.required("image_url"):
        check.string("image_url")
    if upscaler.id == "fal-ai/seedvr/upscale/image":
        check.choice("upscale_mode", ("target", "factor"))
        check.field("upscale_factor", integer=False, ge=1, le=10)
        check.choice("target_resolution", tuple(SEEDVR_TARGETS))
        check.field("seed", integer=True)
        check.field("noise_scale", integer=False, ge=0, le=1)
        check.choice("output_format", ("png", "jpg", "webp"))
        check.boolean("sync_mode")
    elif upscaler.id == "fal-ai/clarity-upscaler":
        for name in ("prompt", "negative_prompt"):
            check.string(name)
        check.field("upscale_factor", integer=False, ge=1, le=4)
        check.field("creativity", integer=False, ge=0, le=1)
        check.field("resemblance", integer=False, ge=0, le=1)
        check.field("guidance_scale", integer=False, ge=0, le=20)
        check.field("num_inference_steps", integer=True, ge=4, le=50)
        check.field("seed", integer=True)
        check.boolean("enable_safety_checker")
    elif upscaler.id == "fal-ai/esrgan":
        check.field("scale", integer=False, ge=1, le=8)
        check.field("tile", integer=True, ge=0)  # "0, that is no tile"; no upper bound documented
        check.boolean("face")
        check.choice("model", ESRGAN_MODELS)
        check.choice("output_format", ("png", "jpeg"))
    else:  # aura-sr: `upscale_factor` is the constant 4 (pydantic's Literal[4])
        value = body.get("upscale_factor", 4)
        if "upscale_factor" in body and (isinstance(value, bool) or value != 4):
            check.errors.append(
                _error(("upscale_factor",), "literal_error", "Input should be 4", value, {"expected": "4"})
            )
        check.boolean("overlapping_tiles")
        check.choice("checkpoint", ("v1", "v2"))
    if check.errors:
        return dict(body), check.errors
    return {**_upscaler_defaults(upscaler), **body}, []


def upscale_output_size(upscaler: Upscaler, params: Mapping[str, Any], width: int, height: int) -> tuple[int, int]:
    """The output's pixel size for an input of ``width`` x ``height``: each side times the factor, rounded half
    up (fal documents no rounding); seedvr's "target" mode scales the shorter side to the target's lines [I]."""
    if upscaler.id == "fal-ai/seedvr/upscale/image" and params.get("upscale_mode") == "target":
        factor = SEEDVR_TARGETS[params["target_resolution"]] / min(width, height)
    else:
        factor = float(params.get(upscaler.factor_field, upscaler.default_factor))
    return max(1, math.floor(width * factor + 0.5)), max(1, math.floor(height * factor + 0.5))


def compute_seconds(width: int, height: int, seconds_per_mp: Decimal) -> Decimal:
    """The inference time the fake reports for an upscale to ``width`` x ``height``: proportional to the output's
    megapixels, in whole milliseconds, at least 1 ms."""
    seconds = (Decimal(width * height) / Decimal(1_000_000) * seconds_per_mp).quantize(
        Decimal("0.001"), rounding=ROUND_HALF_UP
    )
    return max(seconds, Decimal("0.001"))


def upscale_price(
    upscaler: Upscaler, width: int, height: int, *, seconds: Decimal, unpublished_price: Decimal
) -> Decimal:
    """What the fake bills for one upscale to ``width`` x ``height`` that ran ``seconds`` (see `Upscaler`)."""
    if upscaler.pricing == "per_output_mp":
        assert upscaler.unit_price is not None
        return -(-width * height // 1_000_000) * upscaler.unit_price
    if upscaler.pricing == "per_compute_second":
        assert upscaler.unit_price is not None
        return seconds * upscaler.unit_price
    return unpublished_price
