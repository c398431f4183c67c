"""Request-body rules of the Krea image and enhance endpoints the fake serves (``additionalProperties: false``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["string", "number", "integer", "boolean", "nullable_string", "nullable_number", "enum", "items"]


class KreaBadRequest(ValueError):
    """A body the real API would answer with 400 ``{"error": "<field>: <problem>"}``."""


@dataclass(frozen=True)
class Rule:
    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    max_items: int | None = None
    item: Mapping[str, Rule] | None = None
    item_required: tuple[str, ...] = ()


def _weighted(low: float, high: float, required: tuple[str, ...]) -> Rule:
    return Rule("items", item={"url": Rule("string"), "strength": Rule("number", low, high)}, item_required=required)


STYLES = Rule("items", item={"id": Rule("string"), "strength": Rule("number", -2, 2)}, item_required=("id", "strength"))
ASPECT_RATIOS = ("1:1", "4:3", "3:2", "16:9", "2.35:1", "4:5", "2:3", "9:16")
KREA_2_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "4:3": (1184, 896),
    "3:2": (1248, 832),
    "16:9": (1376, 768),
    "2.35:1": (1568, 672),
    "4:5": (928, 1152),
    "2:3": (832, 1248),
    "9:16": (768, 1376),
}


@dataclass(frozen=True)
class Endpoint:
    """One ``POST /generate/image/{vendor}/{model}`` endpoint (``path`` is ``{vendor}/{model}``) or
    ``POST /generate/enhance/{vendor}/{model}`` one (``path`` is ``enhance/{vendor}/{model}``): its fields,
    aliases and price."""

    path: str
    fields: Mapping[str, Rule]
    required: tuple[str, ...]
    aliases: Mapping[str, str]
    price: Decimal
    style_ref_price: Decimal | None = None
    moodboard_price: Decimal | None = None
    # the job type ``GET /jobs?types=`` filters by ("flux" is the OpenAPI example's; Krea 2's is assumed)
    job_type: str = "flux"

    # enhance endpoints: the output is ``width`` x ``height`` (Topaz) or the input's size times
    # ``image_scaling_factor`` (krea/enhance)
    enhance: bool = False

    def price_for(self, body: Mapping[str, Any], base: Decimal | None = None) -> Decimal:
        """Per-job USD price (``base`` in place of ``price`` when given: the fake's settable table); Krea 2
        costs more with style references or a moodboard."""
        if self.moodboard_price is not None and body.get("moodboards"):
            return self.moodboard_price
        if self.style_ref_price is not None and body.get("image_style_references"):
            return self.style_ref_price
        return self.price if base is None else base


FLUX_1_DEV = Endpoint(
    path="bfl/flux-1-dev",
    fields={
        "prompt": Rule("string", max_length=1800),
        "width": Rule("number", 512, 2368),
        "height": Rule("number", 512, 2368),
        "steps": Rule("integer", 1, 100),
        "seed": Rule("number"),
        "strength": Rule("number"),
        "guidance_scale": Rule("number", 0, 24),
        "guidance_scale_flux": Rule("number", 0, 24),
        "image_url": Rule("nullable_string"),
        "styles": STYLES,
        "style_images": _weighted(-2, 2, ("strength",)),
        "image_style_references": _weighted(-2, 2, ("strength",)),
    },
    required=("prompt",),
    aliases={
        "imageUrl": "image_url",
        "presetStyles": "styles",
        "styleImages": "style_images",
        "imageStyleRefs": "image_style_references",
        "guidance_scale_flux": "guidance_scale",
    },
    price=Decimal("0.007"),
)


# bfl/flux-1-kontext-dev: flux-1-dev's fields less `styles` and `image_style_references`, at most one image prompt;
# $0.0128 per job (Krea's API docs)
FLUX_1_KONTEXT_DEV = Endpoint(
    path="bfl/flux-1-kontext-dev",
    fields={
        name: rule
        for name, rule in FLUX_1_DEV.fields.items()
        if name not in ("styles", "image_style_references", "style_images")
    }
    | {"style_images": Rule("items", max_items=1, item=_weighted(-2, 2, ()).item, item_required=("strength",))},
    required=("prompt",),
    aliases={key: value for key, value in FLUX_1_DEV.aliases.items() if value != "image_style_references"},
    price=Decimal("0.0128"),
)


def _krea_2(size: str, price: str, style_refs: str, moodboards: str) -> Endpoint:
    return Endpoint(
        path=f"krea/krea-2/{size}",
        fields={
            "prompt": Rule("string"),
            "aspect_ratio": Rule("enum", choices=ASPECT_RATIOS),
            "resolution": Rule("enum", choices=("1K",)),
            "seed": Rule("nullable_number"),
            "styles": STYLES,
            "image_style_references": Rule(
                "items", max_items=10, item={"url": Rule("string"), "strength": Rule("number", 0, 1)}
            ),
            "creativity": Rule("enum", choices=("raw", "low", "medium", "high")),
            "moodboards": Rule("items", max_items=1, item={}),
        },
        required=("prompt", "aspect_ratio", "resolution"),
        aliases={},
        price=Decimal(price),
        style_ref_price=Decimal(style_refs),
        moodboard_price=Decimal(moodboards),
        job_type="krea-2",
    )


ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in (
        FLUX_1_DEV,
        FLUX_1_KONTEXT_DEV,
        _krea_2("medium", "0.03", "0.035", "0.04"),
        _krea_2("large", "0.06", "0.065", "0.07"),
    )
}


# --- enhance (upscale) endpoints ---------------------------------------------------------------------------------
# Krea publishes no price for its enhance endpoints (capabilities-facts §1.1: "n/d"). These flat per-job prices
# are the fake's own — loosely after the Comfy partner nodes' Topaz anchor ($0.08 up to 24 MP) — and a test sets
# another with ``KreaFake.set_price(path, Decimal(...))``; they are not Krea's.
ENHANCE_PRICES: dict[str, Decimal] = {
    "enhance/topaz/standard-enhance": Decimal("0.08"),
    "enhance/topaz/generative-enhance": Decimal("0.16"),
    "enhance/topaz/bloom-enhance": Decimal("0.16"),
    "enhance/krea/enhance": Decimal("0.05"),
}
# The ``GET /jobs?types=`` names of enhance jobs are not documented: these are the fake's guesses, chosen to
# match nothing fluxroute asks for (its provider lists no type for enhance endpoints, see providers/krea.py).
TOPAZ_JOB_TYPE = "topaz-enhance"
KREA_ENHANCE_JOB_TYPE = "krea-enhance"
OUTPUT_FORMATS = ("png", "jpg", "webp")
SUBJECTS = ("All", "Foreground", "Background")


def _unit() -> Rule:
    return Rule("number", 0, 1)


def _topaz(path: str, max_side: int, fields: Mapping[str, Rule], required: tuple[str, ...]) -> Endpoint:
    """A Topaz endpoint of the OpenAPI file (2026-05): the shared fields, then the model's own."""
    return Endpoint(
        path=path,
        fields={
            "prompt": Rule("string"),
            "width": Rule("number", 1, max_side),
            "height": Rule("number", 1, max_side),
            "seed": Rule("number"),
            "image_url": Rule("string"),
            "output_format": Rule("enum", choices=OUTPUT_FORMATS),
            "crop_to_fill": Rule("boolean"),
            "upscaling_activated": Rule("boolean"),
            "image_scaling_factor": Rule("number", 1, 32),
            **fields,
        },
        required=required,
        aliases={"imageUrl": "image_url"},  # deprecated, accepted until 2026-06-19
        price=ENHANCE_PRICES[path],
        job_type=TOPAZ_JOB_TYPE,
        enhance=True,
    )


_FACES = {
    "subject_detection": Rule("enum", choices=SUBJECTS),
    "face_enhancement": Rule("boolean"),
    "face_enhancement_creativity": _unit(),
    "face_enhancement_strength": _unit(),
}
TOPAZ_STANDARD = _topaz(
    "enhance/topaz/standard-enhance",
    32000,  # the schema's maximum; the description says "Up to 22K resolution"
    {
        "model": Rule("enum", choices=("Standard V2", "Low Resolution V2", "CGI", "High Fidelity V2", "Text Refine")),
        **_FACES,
        "sharpen": _unit(),
        "denoise": _unit(),
        "fix_compression": _unit(),
        "strength": Rule("number", 0.01, 1),
    },
    ("width", "height", "image_url", "model"),
)
TOPAZ_GENERATIVE = _topaz(
    "enhance/topaz/generative-enhance",
    32000,  # the schema's maximum; the description says "Max 16K"
    {
        "model": Rule("enum", choices=("Redefine", "Recovery", "Recovery V2", "Reimagine")),
        **_FACES,
        "creativity": Rule("integer", 1, 6),
        "texture": Rule("integer", 1, 5),
        "sharpen": _unit(),
        "denoise": _unit(),
        "detail": _unit(),
    },
    ("width", "height", "image_url"),  # model defaults to "Redefine"
)
TOPAZ_BLOOM = _topaz(
    "enhance/topaz/bloom-enhance",
    10000,
    {
        "model": Rule("enum", choices=("Reimagine",)),  # `const` in the schema
        "creativity": Rule("integer", 1, 9),
        "face_preservation": Rule("boolean"),
        "color_preservation": Rule("boolean"),
    },
    ("width", "height", "image_url", "model"),
)
# Not in the OpenAPI file; from Krea's docs page (capabilities-facts §0.2). Assumed: `additionalProperties: false`
# like every other generation endpoint, `image_url` the one required field, `rescale_color` a boolean, and no
# upper bound on `image_scaling_factor` or `sharpness` (none documented; the fake refuses outputs over
# KREA_ENHANCE_MAX_SIDE instead, see tests/fakes/krea.py).
KREA_ENHANCE = Endpoint(
    path="enhance/krea/enhance",
    fields={
        "image_url": Rule("string", max_length=1024),
        "prompt": Rule("string"),
        "image_scaling_factor": Rule("number", 0.1),
        "ai_strength": Rule("number", 0.1, 1),
        "clarity_strength": Rule("number", 1, 12),
        "resemblance_strength": Rule("number", 0, 2.5),
        "sharpness": Rule("number", 0),
        "rescale_color": Rule("boolean"),
        "seed": Rule("number"),
    },
    required=("image_url",),
    aliases={},
    price=ENHANCE_PRICES["enhance/krea/enhance"],
    job_type=KREA_ENHANCE_JOB_TYPE,
    enhance=True,
)
KREA_ENHANCE_DEFAULT_FACTOR = 2.0  # the docs' default `image_scaling_factor`

ENHANCE_ENDPOINTS: dict[str, Endpoint] = {
    e.path: e for e in (TOPAZ_STANDARD, TOPAZ_GENERATIVE, TOPAZ_BLOOM, KREA_ENHANCE)
}


def validate(endpoint: Endpoint, body: Any) -> dict[str, Any]:
    """Check ``body`` like the API does and return it with deprecated aliases renamed.

    Raises:
        KreaBadRequest: naming the first offending field.
    """
    if not isinstance(body, dict):
        raise KreaBadRequest("body: must be a JSON object")
    normalized: dict[str, Any] = {}
    for name, value in body.items():
        if name not in endpoint.fields and name not in endpoint.aliases:
            raise KreaBadRequest(f"{name}: unknown field (additional properties are not allowed)")
        rule = endpoint.fields.get(name) or endpoint.fields[endpoint.aliases[name]]
        _check(name, value, rule)
        target = endpoint.aliases.get(name, name)
        if target in normalized or (target != name and target in body):
            raise KreaBadRequest(f"{name}: cannot be combined with {target}")
        normalized[target] = value
    for name in endpoint.required:
        if name not in normalized:
            raise KreaBadRequest(f"{name}: required")
    return normalized


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(name: str, value: Any, rule: Rule) -> None:
    kind = rule.kind
    if value is None and kind in ("nullable_string", "nullable_number"):
        return
    if kind in ("string", "nullable_string"):
        if not isinstance(value, str):
            raise KreaBadRequest(f"{name}: expected string")
        if rule.max_length is not None and len(value) > rule.max_length:
            raise KreaBadRequest(f"{name}: must be at most {rule.max_length} characters")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise KreaBadRequest(f"{name}: expected boolean")
    elif kind in ("number", "integer", "nullable_number"):
        if not _is_number(value):
            raise KreaBadRequest(f"{name}: expected number")
        if kind == "integer" and not float(value).is_integer():
            raise KreaBadRequest(f"{name}: expected integer")
        if rule.minimum is not None and value < rule.minimum:
            raise KreaBadRequest(f"{name}: must be >= {rule.minimum:g}")
        if rule.maximum is not None and value > rule.maximum:
            raise KreaBadRequest(f"{name}: must be <= {rule.maximum:g}")
    elif kind == "enum":
        if value not in rule.choices:
            raise KreaBadRequest(f"{name}: must be one of {', '.join(rule.choices)}")
    else:
        if not isinstance(value, list):
            raise KreaBadRequest(f"{name}: expected array")
        if rule.max_items is not None and len(value) > rule.max_items:
            raise KreaBadRequest(f"{name}: must have at most {rule.max_items} items")
        for index, item in enumerate(value):
            where = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise KreaBadRequest(f"{where}: expected object")
            for key in rule.item_required:
                if key not in item:
                    raise KreaBadRequest(f"{where}.{key}: required")
            for key, sub in (rule.item or {}).items():
                if key in item:
                    _check(f"{where}.{key}", item[key], sub)


def output_size(endpoint: Endpoint, body: Mapping[str, Any]) -> tuple[int, int]:
    """Pixel size of the image a job produces (not for krea/enhance: its output follows the input's size,
    see ``enhanced_size``)."""
    if endpoint.enhance:
        if endpoint is KREA_ENHANCE:
            raise ValueError("krea/enhance: the output size follows the input image's (enhanced_size)")
        return int(body["width"]), int(body["height"])  # the schema's `number`: a fraction is cut off
    if endpoint in (FLUX_1_DEV, FLUX_1_KONTEXT_DEV):
        return int(body.get("width", 1024)), int(body.get("height", 1024))
    return KREA_2_SIZES[body["aspect_ratio"]]


def enhanced_size(input_size: tuple[int, int], body: Mapping[str, Any]) -> tuple[int, int]:
    """krea/enhance's output: the input's size times ``image_scaling_factor`` (default 2), at least 1 px."""
    factor = float(body.get("image_scaling_factor", KREA_ENHANCE_DEFAULT_FACTOR))
    width, height = input_size
    return max(1, round(width * factor)), max(1, round(height * factor))
