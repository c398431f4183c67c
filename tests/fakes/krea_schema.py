"""Request-body rules of the Krea image endpoints the fake serves (``additionalProperties: false``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["string", "number", "integer", "nullable_string", "nullable_number", "enum", "items"]


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
    """One ``POST /generate/image/{vendor}/{model}`` endpoint: its fields, aliases and price."""

    path: str
    fields: Mapping[str, Rule]
    required: tuple[str, ...]
    aliases: Mapping[str, str]
    price: Decimal
    style_ref_price: Decimal | None = None
    moodboard_price: Decimal | None = None
    # the job type ``GET /jobs?types=`` filters by ("flux" is the OpenAPI example's; Krea 2's is assumed)
    job_type: str = "flux"

    def price_for(self, body: Mapping[str, Any]) -> Decimal:
        """Per-job USD price; Krea 2 costs more with style references or a moodboard."""
        if self.moodboard_price is not None and body.get("moodboards"):
            return self.moodboard_price
        if self.style_ref_price is not None and body.get("image_style_references"):
            return self.style_ref_price
        return self.price


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
    """Pixel size of the image a job produces."""
    if endpoint in (FLUX_1_DEV, FLUX_1_KONTEXT_DEV):
        return int(body.get("width", 1024)), int(body.get("height", 1024))
    return KREA_2_SIZES[body["aspect_ratio"]]
