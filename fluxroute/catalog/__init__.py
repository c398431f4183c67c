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
from fluxroute.types import Mode, ProviderName, UpscaleMethod

__all__ = [
    "Catalog",
    "License",
    "ModelInfo",
    "Offer",
    "Price",
    "Range",
    "SizeRule",
    "UpscaleRule",
    "license_duty",
    "license_line",
    "license_refusal",
    "load_catalog",
]

# providers that run open weights on the user's own hardware: the local worker, and a Ray Serve fleet of them
SELF_HOSTED = ("local", "ray")
Wire = Literal["fal", "krea-flux", "krea-2", "local", "upscale"]


class _Data(BaseModel):
    # defer_build: the validators are built on first use (the first load_catalog), not when this module is
    # imported, so importing the package (`fluxroute --version`, `import fluxroute`) pays nothing for them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class License(_Data):
    """Terms of use, as data: whether commercial use is allowed and on what condition, and the content-filter duty.

    `commercial`: "always" (Apache-2.0, hosted terms); "never" unless the user declares their own license
    (settings.local_commercial_license, local offers only); "revenue_below": only for organisations whose
    trailing-twelve-month revenue is below `revenue_limit_usd` (declared as settings.organization_revenue_usd_ttm,
    or settings.revenue_under_1m for a US$1M limit). A boolean (the old form) reads as "always" / "never".
    `content_filter`: "none"; "checker_or_review" (outputs go through local_content_checker, or are marked for
    manual review); "required_when_public" (as checker_or_review, and a local offer is refused outright while the
    server is reachable by others, settings.remote_reachable, with no checker configured).
    """

    name: str
    commercial: Literal["always", "never", "revenue_below"]
    revenue_limit_usd: Decimal | None = Field(default=None, gt=0)
    content_filter: Literal["none", "checker_or_review", "required_when_public"] = "none"
    url: str

    @model_validator(mode="before")
    @classmethod
    def _boolean_commercial(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("commercial"), bool):
            data = {**data, "commercial": "always" if data["commercial"] else "never"}
        return data

    @model_validator(mode="after")
    def _limit_given(self) -> License:
        if (self.commercial == "revenue_below") != (self.revenue_limit_usd is not None):
            raise ValueError('revenue_limit_usd goes with commercial = "revenue_below", and only with it')
        return self


class ModelInfo(_Data):
    id: str
    name: str
    summary: str
    guidance_distilled: bool
    # whether `model: auto` may pick it; false for models a caller should ask for by name (a fast distilled model
    # is cheaper than any full-quality one, and `auto` must not trade quality away silently)
    auto: bool = True


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


class UpscaleRule(_Data):
    """How an upscale endpoint takes its job, as data the `upscale` wire builder follows (providers/wire.py).

    `method`: faithful or generative (requests of the other method are refused). `factor`: the scale factors it
    renders (min = max: that factor only, e.g. aura-sr's x4). `send`: "factor" sends the factor in `factor_field`;
    "size" sends the output size as width/height (Topaz on Krea). `creativity`: the endpoint's own range for a
    generative request's creativity (0-1 is mapped onto it; `integer_creativity` rounds it), sent in
    `creativity_field`. `prompt_field`: where the prompt goes, if the endpoint takes one. `image_field`: the
    input image's field. `fixed`: values sent as they are (a model choice, an output format).
    The output size limits are the offer's size rule (max_side, max_megapixels), applied to the output.
    """

    method: UpscaleMethod
    factor: Range
    send: Literal["factor", "size"] = "factor"
    factor_field: str | None = None
    creativity: Range | None = None
    creativity_field: str | None = None
    integer_creativity: bool = False
    prompt_field: str | None = None
    image_field: str = "image_url"
    fixed: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_named(self) -> UpscaleRule:
        if self.send == "factor" and self.factor_field is None:
            raise ValueError('send = "factor" needs factor_field')
        if (self.creativity is None) != (self.creativity_field is None):
            raise ValueError("creativity and creativity_field go together")
        return self


class Price(_Data):
    """A price with its unit, the date it was read and where. Units: per image; per megapixel of each output,
    rounded up per image; per GPU-second (local, estimated from the offer's latency); per compute-second (a
    hosted endpoint billed by its run time: reserved at the estimate, settled at the compute time the provider
    reports)."""

    unit: Literal["image", "megapixel_ceil", "gpu_second", "compute_second"]
    # None: not published by the provider; the offer is refused until the user sets one ([prices])
    usd: Decimal | None = Field(default=None, ge=0)
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
    # LoRAs: "krea-style" takes Krea style ids (krea:<id>), "weights" takes weights by URL or repo, "offline" takes
    # weights by repo found on this machine (local_loras, the Hugging Face cache), never by URL; None: no LoRA
    lora: Literal["krea-style", "weights", "offline"] | None = None
    max_loras: int = Field(default=0, ge=0)
    # the draft policy (fluxroute.router.drafts): `draft` marks a fast, cheap offer that makes drafts as it is;
    # `draft_steps` makes drafts on this offer at that many steps (the same model, so a finalize at full steps with
    # the same size and seed usually keeps the composition); `seeds_per_image`: in one call of n images, image i
    # uses seed + i (documented by the endpoint), so a draft set is one call instead of one call per image
    draft: bool = False
    draft_steps: int | None = Field(default=None, ge=1)
    seeds_per_image: bool = False
    # an upscale endpoint (mode upscale, wire "upscale"): how it takes its job
    upscale: UpscaleRule | None = None

    @property
    def self_hosted(self) -> bool:
        """Whether the offer runs open weights on the user's own hardware (this machine, or a Ray fleet): their
        license's own terms and content-filter duty then apply to the user, not a provider's commercial terms."""
        return self.provider in SELF_HOSTED

    @model_validator(mode="after")
    def _output_follows_an_input(self) -> Offer:
        if self.size.output == "input" and self.modes == ("text-to-image",):
            raise ValueError('size.output = "input" needs a mode with an input image to follow')
        upscales = self.modes == ("upscale",)
        if upscales != (self.upscale is not None) or upscales != (self.wire == "upscale"):
            raise ValueError('an upscale offer has modes = ["upscale"], wire = "upscale" and an upscale rule; no other')
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


def _usd(amount: Decimal) -> str:
    """US$1M, US$250K, US$1,234: amounts as a license states them."""
    if amount >= 1_000_000 and amount % 100_000 == 0:
        return f"US${amount / 1_000_000:g}M"
    if amount >= 1_000 and amount % 100 == 0:
        return f"US${amount / 1_000:g}K"
    return f"US${amount:,}"


def license_refusal(license_: License, offer: Offer, settings: Settings, usage: str) -> str | None:
    """Why `offer` may not serve a request of `usage` under `license_` and the user's declarations in `settings`,
    naming what to declare or configure; None when it may."""
    reasons = []
    if (
        license_.content_filter == "required_when_public"
        and offer.self_hosted
        and settings.remote_reachable
        and settings.local_content_checker is None
    ):
        reasons.append(
            f"{license_.name} requires content filtering wherever end users can reach the deployment, and this "
            "server is reachable by others (serve --allow-remote); configure local_content_checker"
        )
    if usage == "commercial":
        if license_.commercial == "never" and not (offer.self_hosted and settings.local_commercial_license):
            reason = f"{license_.name} and usage=commercial"
            if offer.self_hosted:
                reason += "; set local_commercial_license = true only if you hold your own commercial license"
            reasons.append(reason)
        elif license_.commercial == "revenue_below":
            limit = license_.revenue_limit_usd
            assert limit is not None
            revenue = settings.organization_revenue_usd_ttm
            under = f"{license_.name} allows commercial use only below {_usd(limit)} revenue (TTM)"
            if revenue is not None:
                if revenue >= limit:
                    reasons.append(f"{under}; declared organization_revenue_usd_ttm {_usd(revenue)} is not below it")
            elif settings.revenue_under_1m is None or limit < 1_000_000:
                declare = " (or revenue_under_1m = true)" if limit >= 1_000_000 else ""
                reasons.append(f"{under}; declare organization_revenue_usd_ttm{declare}")
            elif not settings.revenue_under_1m:
                reasons.append(f"{under}; declared revenue_under_1m = false")
    return "; ".join(reasons) or None


def license_duty(license_: License, offer: Offer, settings: Settings) -> str | None:
    """The content-filter duty `offer`'s outputs carry under `license_` (local offers only; None: none)."""
    if not offer.self_hosted or license_.content_filter == "none":
        return None
    if settings.local_content_checker is not None:
        return f"{license_.name}: outputs screened by content checker {settings.local_content_checker}"
    return (
        f"{license_.name} asks for a content filter or manual review; no local_content_checker is configured, "
        "so results are marked for manual review"
    )


def license_line(license_: License, offer: Offer) -> str:
    """`license_` in one line a person can act on: what it allows, and what to declare for more."""
    if license_.commercial == "always":
        use = "commercial use allowed"
    elif license_.commercial == "never":
        use = "non-commercial only"
        if offer.self_hosted:
            use += "; set local_commercial_license = true if you hold your own license"
    else:
        assert license_.revenue_limit_usd is not None
        use = f"commercial use below {_usd(license_.revenue_limit_usd)} revenue; declare organization_revenue_usd_ttm"
    if offer.self_hosted and license_.content_filter == "checker_or_review":
        use += "; outputs need local_content_checker or manual review"
    elif offer.self_hosted and license_.content_filter == "required_when_public":
        use += "; local_content_checker required when others can reach the server"
    return f"{license_.name} — {use}"


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
    """The built-in catalog with the user's price overrides and extra offers applied, and the fleet's offers when a
    fleet is set (FLUXROUTE_RAY_URL). A price set for a fleet offer is kept unused while no fleet is set (one
    fluxroute.toml serves machines with and without one).

    Raises:
        ConfigError: an override names an unknown offer, or an added offer is malformed.
    """
    if settings is None or not (settings.offers or settings.prices or settings.ray_url):
        return _builtin_catalog()
    data = _builtin_data()
    offers: list[dict[str, Any]] = list(data.get("offers", []))
    fleet = [fleet_offer(o) for o in offers if o["provider"] == "local"]
    if settings.ray_url:
        offers.extend(fleet)
    offers.extend(dict(o) for o in settings.offers)
    known = {o["id"] for o in offers if "id" in o}
    for offer_id, usd in settings.prices.items():
        if offer_id not in known:
            if any(o["id"] == offer_id for o in fleet):
                continue  # a fleet offer, and no fleet is set
            known |= {o["id"] for o in fleet}
            raise ConfigError(f"prices.{offer_id}: no such offer; known offers: {', '.join(sorted(known))}")
        for o in offers:
            if o.get("id") == offer_id:
                o["price"] = {**o["price"], "usd": str(usd), "source": "user override (fluxroute.toml)"}
    data["offers"] = offers
    return _validate(data)


def fleet_offer(local: dict[str, Any]) -> dict[str, Any]:
    """A local offer as a Ray fleet (fluxroute ray deploy, FLUXROUTE_RAY_URL) serves it: the same weights on the
    fleet's replicas, so the same modes, limits, license and duties; its own id (`ray-<model>`) and price, per
    GPU-second as the replica that ran the job reports it."""
    name = local["id"].removeprefix("local-")
    offer_id = f"ray-{name}"
    return {
        **local,
        "id": offer_id,
        "label": f"ray {name}",
        "provider": "ray",
        "price": {
            **local["price"],
            "unit": "gpu_second",
            "source": f"own hardware (a Ray fleet); set [prices] {offer_id} to your cost per GPU-second",
        },
    }


def _validate(data: dict[str, Any]) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid catalog: {summarize(exc)}") from None
