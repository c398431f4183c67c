"""The late-2026 lineup as data: FLUX.1 [schnell] on fal and locally, Krea 2 open weights locally and on fal, and
licenses that say when commercial use is allowed (always, never, below a revenue limit) and what filtering they ask."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.catalog import License, load_catalog
from fluxroute.errors import ConfigError
from fluxroute.router.pricing import estimate_cost
from fluxroute.settings import Settings

CATALOG = load_catalog()


def test_flux_schnell_is_a_model_with_a_fal_and_a_local_offer() -> None:
    assert CATALOG.model("flux-schnell").name == "FLUX.1 [schnell]"
    fal = CATALOG.offer("fal-flux-schnell")
    assert (fal.provider, fal.endpoint, fal.wire, fal.license) == ("fal", "fal-ai/flux/schnell", "fal", "fal-terms")
    assert fal.steps is not None and (fal.steps.min, fal.steps.max, fal.steps.default) == (1, 12, 4)
    assert fal.guidance is None  # the endpoint has no guidance_scale
    assert (fal.price.unit, fal.price.usd, fal.max_images) == ("megapixel_ceil", Decimal("0.003"), 4)
    assert fal.size.presets and fal.size.custom
    local = CATALOG.offer("local-flux-schnell")
    assert (local.endpoint, local.wire, local.license) == ("black-forest-labs/FLUX.1-schnell", "local", "apache-2.0")
    assert local.steps is not None and (local.steps.min, local.steps.max, local.steps.default) == (1, 12, 4)
    assert local.guidance is not None and (local.guidance.min, local.guidance.max) == (0, 0)
    assert (local.price.unit, local.price.usd) == ("gpu_second", Decimal(0))


def test_krea_2_keeps_its_krea_api_offers_and_gains_open_weight_offers() -> None:
    krea_2 = [o.id for o in CATALOG.offers if o.model == "krea-2"]
    assert krea_2 == ["krea-2-medium", "krea-2-large", "fal-krea-2-turbo", "local-krea-2-raw", "local-krea-2-turbo"]
    turbo = CATALOG.offer("fal-krea-2-turbo")
    assert (turbo.endpoint, turbo.license, turbo.price.usd) == ("fal-ai/krea-2/turbo", "fal-terms", Decimal("0.008"))
    assert turbo.steps is None and turbo.guidance is None  # the distilled 8 steps, no guidance: nothing to send
    assert turbo.size.max_side == 2048
    raw = CATALOG.offer("local-krea-2-raw")
    assert (raw.endpoint, raw.license) == ("krea/Krea-2-Raw", "krea-2-community")
    assert raw.steps is not None and raw.steps.default == 52
    assert raw.guidance is not None and raw.guidance.default == 3.5
    local_turbo = CATALOG.offer("local-krea-2-turbo")
    assert (local_turbo.endpoint, local_turbo.license) == ("krea/Krea-2-Turbo", "krea-2-community")
    assert local_turbo.steps is not None and local_turbo.steps.default == 8
    assert local_turbo.guidance is not None and local_turbo.guidance.max == 0
    assert (local_turbo.size.max_side, local_turbo.size.multiple) == (2048, 16)


def test_every_new_price_is_dated_and_sourced() -> None:
    for offer_id in ("fal-flux-schnell", "local-flux-schnell", "fal-krea-2-turbo", "local-krea-2-raw"):
        price = CATALOG.offer(offer_id).price
        assert price.as_of.startswith("2026-") and price.source


@pytest.mark.parametrize(
    ("offer_id", "size", "images", "usd"),
    [
        ("fal-flux-schnell", (1024, 768), 1, "0.003"),
        ("fal-flux-schnell", (1500, 1000), 4, "0.024"),  # 1.5 MP rounds up to 2, per image
        ("fal-krea-2-turbo", (1024, 1024), 1, "0.016"),  # 1.05 MP bills 2
        ("fal-krea-2-turbo", (2048, 2048), 2, "0.080"),  # 4.19 MP rounds up to 5
    ],
)
def test_new_fal_prices_round_megapixels_up_per_image(
    offer_id: str, size: tuple[int, int], images: int, usd: str
) -> None:
    price = CATALOG.offer(offer_id).price
    assert estimate_cost(price, width=size[0], height=size[1], num_images=images, gpu_seconds=0) == Decimal(usd)


def test_licenses_say_when_commercial_use_is_allowed_and_what_filtering_they_ask() -> None:
    licenses = CATALOG.licenses
    assert (licenses["apache-2.0"].commercial, licenses["apache-2.0"].content_filter) == ("always", "none")
    dev = licenses["flux-dev-non-commercial"]
    assert (dev.commercial, dev.content_filter) == ("never", "checker_or_review")
    krea = licenses["krea-2-community"]
    assert (krea.commercial, krea.revenue_limit_usd, krea.content_filter) == (
        "revenue_below",
        Decimal(1_000_000),
        "required_when_public",
    )
    assert {licenses[name].commercial for name in ("fal-terms", "krea-api-terms")} == {"always"}


def test_flux_kontext_dev_weights_are_expressible_non_commercial_locally_and_commercial_hosted() -> None:
    # the same weights under two licenses, by where they run: offers name their own license
    local = License(name="FLUX.1 [dev] Non-Commercial License", commercial="never", url="https://example.com/l")
    hosted = CATALOG.licenses["fal-terms"]
    assert (local.commercial, hosted.commercial) == ("never", "always")


def test_the_old_boolean_commercial_still_reads() -> None:
    assert License.model_validate({"name": "x", "commercial": True, "url": "u"}).commercial == "always"
    assert License.model_validate({"name": "x", "commercial": False, "url": "u"}).commercial == "never"


def test_a_revenue_limit_goes_with_revenue_below_only() -> None:
    with pytest.raises(ValueError, match="revenue_limit_usd"):
        License.model_validate({"name": "x", "commercial": "revenue_below", "url": "u"})
    with pytest.raises(ValueError, match="revenue_limit_usd"):
        License.model_validate({"name": "x", "commercial": "always", "revenue_limit_usd": 5, "url": "u"})


def test_revenue_declarations_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.load(
        environ={
            "FLUXROUTE_CONFIG": "none",
            "FLUXROUTE_ORGANIZATION_REVENUE_USD_TTM": "420000",
            "FLUXROUTE_REVENUE_UNDER_1M": "true",
        },
        home=tmp_path,
    )
    assert (settings.organization_revenue_usd_ttm, settings.revenue_under_1m) == (Decimal(420000), True)
    assert settings.remote_reachable is False


def test_revenue_declarations_that_disagree_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="organization_revenue_usd_ttm 2000000 and revenue_under_1m = true disagree"):
        Settings.load(
            environ={
                "FLUXROUTE_CONFIG": "none",
                "FLUXROUTE_ORGANIZATION_REVENUE_USD_TTM": "2000000",
                "FLUXROUTE_REVENUE_UNDER_1M": "true",
            },
            home=tmp_path,
        )
