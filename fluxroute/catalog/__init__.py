"""The catalog: models, licenses and offers loaded from data and validated; user overrides applied."""

from __future__ import annotations

import copy
import functools
import tomllib
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fluxroute.errors import ConfigError
from fluxroute.settings import Settings, summarize
from fluxroute.types import ProviderName

__all__ = ["Catalog", "License", "ModelInfo", "Offer", "Price", "Range", "SizeRule", "load_catalog"]

Mode = Literal["text-to-image", "image-to-image"]
Wire = Literal["fal", "krea-flux", "krea-2", "local"]


class _Data(BaseModel):
    # defer_build: the validators are built on first use (the first load_catalog), not when this module is
    # imported, so importing the package (`fluxroute --version`, `import fluxroute`) pays nothing for them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class License(_Data):
    name: str
    commercial: bool
    url: str


class ModelInfo(_Data):
    id: str
    name: str
    summary: str
    guidance_distilled: bool


class Range(_Data):
    """A numeric parameter's allowed range and the endpoint's default."""

    min: float
    max: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.min <= self.default <= self.max:
            raise ValueError(f"need min <= default <= max, got {self.min}, {self.default}, {self.max}")
        return self


class SizeRule(_Data):
    """How an offer takes a size: named presets, a custom range, or a fixed table of aspect ratios.

    `output` says where the size of what the endpoint renders (and bills) comes from:
    "requested" (default): the request's size, delivered through these rules (preset, snapped custom size,
    nearest aspect ratio) or rejected;
    "input": the input image's size (image-to-image endpoints that ignore any requested size, e.g. fal's
    flux/krea/image-to-image). The router reads the input image's pixel size before planning, puts it through
    these same rules (snap, side and megapixel limits) instead of the requested size, and prices the offer
    by it, so a per-megapixel price is billed on the size the provider really outputs.
    """

    presets: bool = False
    custom: bool = False
    multiple: int = Field(default=1, ge=1)
    min_side: int = Field(default=1, ge=1)
    max_side: int = Field(default=14142, ge=1)
    max_megapixels: float | None = Field(default=None, gt=0)
    aspect_sizes: dict[str, tuple[int, int]] = Field(default_factory=dict)
    output: Literal["requested", "input"] = "requested"

    @model_validator(mode="after")
    def _some_way(self) -> SizeRule:
        if not (self.presets or self.custom or self.aspect_sizes):
            raise ValueError("a size rule needs presets, custom sizes or aspect_sizes")
        return self


class Price(_Data):
    """A price with its unit, the date it was read and where."""

    unit: Literal["image", "megapixel_ceil", "gpu_second"]
    usd: Decimal = Field(ge=0)
    with_style_references_usd: Decimal | None = Field(default=None, ge=0)
    as_of: str
    source: str


class Offer(_Data):
    """One way to serve a model: provider x endpoint, with limits, price and license."""

    id: str
    label: str
    model: str
    provider: ProviderName
    endpoint: str
    wire: Wire
    license: str
    modes: tuple[Mode, ...]
    max_images: int = Field(ge=1)
    latency_s: float = Field(gt=0)
    size: SizeRule
    price: Price
    steps: Range | None = None
    guidance: Range | None = None
    strength: Range | None = None
    negative_prompt: bool = False
    max_prompt_chars: int | None = None
    max_style_references: int = 0

    @model_validator(mode="after")
    def _output_follows_an_input(self) -> Offer:
        if self.size.output == "input" and "image-to-image" not in self.modes:
            raise ValueError('size.output = "input" needs the image-to-image mode (an input image to follow)')
        return self


class Catalog(_Data):
    presets: dict[str, tuple[int, int]]
    licenses: dict[str, License]
    models: tuple[ModelInfo, ...]
    offers: tuple[Offer, ...]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        model_ids = {m.id for m in self.models}
        seen: set[str] = set()
        for offer in self.offers:
            if offer.id in seen:
                raise ValueError(f"offer id {offer.id!r} appears twice")
            seen.add(offer.id)
            if offer.model not in model_ids:
                raise ValueError(f"offer {offer.id!r}: unknown model {offer.model!r}")
            if offer.license not in self.licenses:
                raise ValueError(f"offer {offer.id!r}: unknown license {offer.license!r}")
        return self

    def model(self, model_id: str) -> ModelInfo:
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(model_id)

    def offer(self, offer_id: str) -> Offer:
        for o in self.offers:
            if o.id == offer_id:
                return o
        raise KeyError(offer_id)


@functools.cache
def _parsed_builtin_data() -> dict[str, Any]:
    text = resources.files("fluxroute.catalog").joinpath("offers.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _builtin_data() -> dict[str, Any]:
    """offers.toml as data: read and parsed once per process, a fresh copy each call (callers edit it)."""
    return copy.deepcopy(_parsed_builtin_data())


@functools.cache
def _builtin_catalog() -> Catalog:
    """The built-in catalog without user changes, validated once per process (it is frozen: safe to share)."""
    return _validate(_builtin_data())


def load_catalog(settings: Settings | None = None) -> Catalog:
    """The built-in catalog with the user's price overrides and extra offers applied.

    Raises:
        ConfigError: an override names an unknown offer, or an added offer is malformed.
    """
    if settings is None or not (settings.offers or settings.prices):
        return _builtin_catalog()
    data = _builtin_data()
    offers: list[dict[str, Any]] = list(data.get("offers", []))
    offers.extend(dict(o) for o in settings.offers)
    known = {o["id"] for o in offers if "id" in o}
    for offer_id, usd in settings.prices.items():
        if offer_id not in known:
            raise ConfigError(f"prices.{offer_id}: no such offer; known offers: {', '.join(sorted(known))}")
        for o in offers:
            if o.get("id") == offer_id:
                o["price"] = {**o["price"], "usd": str(usd), "source": "user override (fluxroute.toml)"}
    data["offers"] = offers
    return _validate(data)


def _validate(data: dict[str, Any]) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid catalog: {summarize(exc)}") from None
