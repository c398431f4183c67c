"""The catalog is data: every price dated and sourced, user overrides and added offers need no code."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.catalog import load_catalog
from fluxroute.errors import ConfigError
from fluxroute.providers.base import Availability
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest


def test_every_offer_has_a_dated_sourced_price_and_a_known_license() -> None:
    catalog = load_catalog()
    assert {o.model for o in catalog.offers} == {
        "flux-krea-dev",
        "flux-dev",
        "krea-2",
        "flux-schnell",
        "flux-kontext-dev",
        *("real-esrgan", "seedvr2", "aura-sr", "topaz", "clarity-upscaler", "krea-enhance"),
    }
    for offer in catalog.offers:
        assert offer.price.as_of and offer.price.source
        # an unpublished price says so, and how to set one
        assert offer.price.usd is not None or f"set [prices] {offer.id}" in offer.price.source
        assert offer.license in catalog.licenses


def test_issue_prices_and_ranges_are_in_the_data() -> None:
    catalog = load_catalog()
    fal_krea = catalog.offer("fal-flux-krea")
    assert (fal_krea.price.unit, fal_krea.price.usd) == ("megapixel_ceil", Decimal("0.025"))
    assert fal_krea.steps is not None and (fal_krea.steps.min, fal_krea.steps.max, fal_krea.steps.default) == (
        1,
        50,
        28,
    )
    assert fal_krea.guidance is not None and fal_krea.guidance.default == 4.5
    krea_flux = catalog.offer("krea-flux-1-dev")
    assert krea_flux.price.usd == Decimal("0.007") and krea_flux.max_images == 1
    assert (krea_flux.size.min_side, krea_flux.size.max_side) == (512, 2368)
    assert catalog.offer("krea-2-large").price.usd == Decimal("0.06")
    assert set(catalog.offer("krea-2-medium").size.aspect_sizes) == {
        "1:1",
        "4:3",
        "3:2",
        "16:9",
        "2.35:1",
        "4:5",
        "2:3",
        "9:16",
    }
    assert catalog.licenses[catalog.offer("local-flux-krea-dev").license].commercial == "never"


def test_price_override_changes_the_plan_without_code(tmp_path: Path) -> None:
    config = tmp_path / "fluxroute.toml"
    config.write_text("[prices]\nkrea-flux-1-dev = 0.5\n", encoding="utf-8")
    settings = Settings.load(environ={}, config_file=config, home=tmp_path)
    router = Router(settings, availability={"krea": Availability(True), "fal": Availability(True)})
    plan = router.plan(ImageRequest(prompt="a cat", model="flux-dev"))
    assert plan.chosen is not None and plan.chosen.offer_id == "fal-flux-dev"
    assert router.catalog.offer("krea-flux-1-dev").price.source == "user override (fluxroute.toml)"


def test_added_offer_is_routed_to(tmp_path: Path) -> None:
    extra = {
        "id": "fal-flux-dev-cheap",
        "label": "fal flux/dev cheap",
        "model": "flux-dev",
        "provider": "fal",
        "endpoint": "fal-ai/flux/dev",
        "wire": "fal",
        "license": "fal-terms",
        "modes": ["text-to-image"],
        "max_images": 4,
        "latency_s": 6.0,
        "size": {"presets": True, "custom": True, "max_megapixels": 4.0},
        "price": {"unit": "image", "usd": "0.001", "as_of": "2026-11-01", "source": "contract"},
    }
    router = Router(Settings(home=tmp_path, offers=[extra]), availability={"fal": Availability(True)})
    plan = router.plan(ImageRequest(prompt="a cat", model="flux-dev"))
    assert plan.chosen is not None and plan.chosen.offer_id == "fal-flux-dev-cheap"


def test_override_of_unknown_offer_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prices\.nope: no such offer"):
        load_catalog(Settings(home=tmp_path, prices={"nope": Decimal(1)}))


def test_malformed_added_offer_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    added = len(load_catalog().offers)  # the added offer comes after the built-in ones
    with pytest.raises(ConfigError, match=rf"invalid catalog: offers\.{added}\.label: Field required"):
        load_catalog(Settings(home=tmp_path, offers=[{"id": "x"}]))


def test_upscale_offers_carry_their_rule_and_price_units_as_data() -> None:
    catalog = load_catalog()
    upscalers = {o.id: o for o in catalog.offers if o.upscale is not None}
    assert all(o.modes == ("upscale",) and o.wire == "upscale" for o in upscalers.values())
    assert {o.provider for o in upscalers.values()} == {"krea", "fal", "local"}
    esrgan = upscalers["fal-esrgan"]
    assert (esrgan.price.unit, esrgan.price.usd) == ("compute_second", Decimal("0.00111"))
    aura = upscalers["fal-aura-sr"].upscale
    assert aura is not None and (aura.factor.min, aura.factor.max) == (4, 4)
    topaz = upscalers["krea-topaz-standard"]
    assert topaz.upscale is not None and topaz.upscale.send == "size" and topaz.price.usd is None


def test_an_upscale_rule_on_a_generation_offer_is_refused_by_the_catalog() -> None:
    bad = {
        **_offer_data("fal-flux-krea"),
        "id": "odd",
        "upscale": {"method": "faithful", "factor": {"min": 1, "max": 2, "default": 2}, "factor_field": "f"},
    }
    with pytest.raises(ConfigError, match='an upscale offer has modes = \\["upscale"\\]'):
        load_catalog(Settings(offers=[bad]))


def _offer_data(offer_id: str) -> dict[str, object]:
    return load_catalog().offer(offer_id).model_dump(mode="json", exclude_none=True)
