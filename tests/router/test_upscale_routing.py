"""Upscale routing: factor, output size, faithful vs generative and license, across every upscale offer of every
backend; each request gets a chosen offer or an explained refusal per offer. Nothing here calls a provider."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fluxroute.catalog import load_catalog
from fluxroute.errors import InvalidRequest
from fluxroute.providers.base import Availability
from fluxroute.router.planner import Planner
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest, Plan

SOURCE = "https://images.example/photo.png"
INPUT = (1024, 768)
# Krea publishes no enhance prices, fal none for aura-sr: the user's own, set as a user would ([prices])
USER_PRICES = {
    "krea-topaz-standard": "0.08",
    "krea-topaz-generative": "0.16",
    "krea-topaz-bloom": "0.16",
    "krea-enhance": "0.05",
    "fal-aura-sr": "0.0012",
}
ALL = {name: Availability(True) for name in ("krea", "fal", "local")}


def plan(request: ImageRequest, settings: Settings | None = None, input_size: tuple[int, int] | None = INPUT) -> Plan:
    settings = settings or Settings(prices={k: Decimal(v) for k, v in USER_PRICES.items()})
    return Planner(load_catalog(settings), settings, ALL).plan(request, input_size)


def upscale(**fields: object) -> ImageRequest:
    return ImageRequest.parse({"prompt": "a harbour at dawn", "init_image": SOURCE, "task": "upscale", **fields})


def reasons(p: Plan) -> dict[str, str]:
    return {r.offer_id: "; ".join(r.reasons) for r in p.rejections}


def test_a_faithful_x4_goes_to_the_cheapest_faithful_offer_and_every_other_says_why() -> None:
    p = plan(upscale(upscale_factor=4))

    assert [c.offer_id for c in p.candidates][:1] == ["local-realesrgan-x4"]  # own GPU, priced at 0
    chosen = {c.offer_id: c for c in p.candidates}
    assert set(chosen) == {
        "local-realesrgan-x4",
        "fal-esrgan",
        "fal-seedvr-upscale",
        "fal-aura-sr",
        "krea-topaz-standard",
    }
    assert all((c.width, c.height) == (4096, 3072) for c in p.candidates)
    # seedvr: $0.001 per output megapixel, 12.6 MP rounded up to 13
    assert chosen["fal-seedvr-upscale"].cost_usd == pytest.approx(0.013)
    assert chosen["fal-seedvr-upscale"].params == {
        "image_url": SOURCE,
        "upscale_factor": 4.0,
        "upscale_mode": "factor",
        "output_format": "png",
    }
    # Topaz is sent the output size, not a factor; the local upscaler both
    assert chosen["krea-topaz-standard"].params == {
        "image_url": SOURCE,
        "width": 4096,
        "height": 3072,
        "model": "Standard V2",
        "output_format": "png",
    }
    assert chosen["local-realesrgan-x4"].params["scale"] == 4.0
    why = reasons(p)
    assert why["fal-clarity-upscaler"] == "generative upscaler; request is faithful"
    assert why["krea-enhance"] == "generative upscaler; request is faithful"
    assert "size: the input image's 1024x768 x4 -> 4096x3072" in p.explanation
    # generation offers are not upscalers: not listed at all
    assert all(r.offer_id in {o.id for o in load_catalog().offers if o.upscale} for r in p.rejections)


def test_unpublished_prices_are_refused_naming_the_setting_until_the_user_sets_one() -> None:
    p = plan(upscale(upscale_factor=4), Settings())
    why = reasons(p)
    assert why["krea-topaz-standard"] == (
        "price not published by krea: set [prices] krea-topaz-standard (USD per image) to use it"
    )
    assert (
        why["fal-aura-sr"] == "price not published by fal: set [prices] fal-aura-sr (USD per compute-second) to use it"
    )
    assert "rejected krea topaz standard-enhance: price not published by krea: set [prices] krea-topaz-standard" in (
        p.explanation
    )


@pytest.mark.parametrize(
    ("factor", "refused"),
    [
        (2, {"fal-aura-sr": "x4 only; request is x2"}),
        (6, {"local-realesrgan-x4": "factor 1-4; request is x6", "fal-aura-sr": "x4 only; request is x6"}),
        (
            12,
            {
                "local-realesrgan-x4": "factor 1-4; request is x12",
                "fal-esrgan": "factor 1-8; request is x12",
                "fal-seedvr-upscale": "factor 1-10; request is x12",
                "fal-aura-sr": "x4 only; request is x12",
            },
        ),
    ],
)
def test_each_offer_takes_its_own_factor_range(factor: float, refused: dict[str, str]) -> None:
    p = plan(upscale(upscale_factor=factor), input_size=(256, 256))
    why = reasons(p)
    for offer_id, reason in refused.items():
        assert why[offer_id] == reason
    faithful = {"local-realesrgan-x4", "fal-esrgan", "fal-seedvr-upscale", "fal-aura-sr", "krea-topaz-standard"}
    assert {c.offer_id for c in p.candidates} == faithful - set(refused)


def test_an_output_size_is_the_largest_of_the_input_shape_that_fits() -> None:
    p = plan(upscale(width=4096, height=4096))
    assert (p.target_width, p.target_height) == (4096, 3072)  # x4: the width decides
    assert "to fit 4096x4096" in p.explanation
    with pytest.raises(InvalidRequest, match="an upscale does not shrink") as info:
        plan(upscale(width=800, height=600))
    assert info.value.errors[0].field == "width, height"


def test_outputs_past_an_offer_side_or_the_accepted_pixels_are_refused_with_the_numbers() -> None:
    p = plan(upscale(upscale_factor=20), input_size=(1000, 800))  # 20000x16000
    why = reasons(p)
    assert "output 20000x16000 is over its largest side, 16384 px" in why["fal-seedvr-upscale"]
    assert (
        "output 20000x16000 is more than 25,000,000 pixels (max_image_pixels: the result would be refused; raise "
        "FLUXROUTE_MAX_IMAGE_PIXELS)"
    ) in why["krea-topaz-standard"]
    assert not p.candidates
    roomy = Settings(prices={k: Decimal(v) for k, v in USER_PRICES.items()}, max_image_pixels=400_000_000)
    # past Pillow's own limit (89.5 MP) no image is decoded here, whatever max_image_pixels says
    assert (
        "(Pillow's decompression-bomb limit: no larger image is decoded here)"
        in reasons(plan(upscale(upscale_factor=20), roomy, (1000, 800)))["krea-topaz-standard"]
    )
    assert [c.offer_id for c in plan(upscale(upscale_factor=16), roomy, (500, 400)).candidates] == [
        "krea-topaz-standard"  # 8000x6400: x16 is past every other faithful offer's factor
    ]


def test_generative_requests_go_to_generative_offers_with_creativity_on_each_endpoint_scale() -> None:
    p = plan(upscale(upscale_method="generative", creativity=0.5))
    params = {c.offer_id: c.params for c in p.candidates}
    assert set(params) == {"fal-clarity-upscaler", "krea-topaz-generative", "krea-topaz-bloom", "krea-enhance"}
    assert params["fal-clarity-upscaler"]["creativity"] == 0.5  # 0-1
    assert params["krea-topaz-generative"]["creativity"] == 4  # integers 1-6: 3.5 rounds to 4
    assert params["krea-topaz-bloom"]["creativity"] == 5  # integers 1-9
    assert params["krea-enhance"]["ai_strength"] == pytest.approx(0.55)  # 0.1-1
    assert params["krea-enhance"]["prompt"] == params["fal-clarity-upscaler"]["prompt"] == "a harbour at dawn"
    assert reasons(p)["fal-esrgan"] == "faithful upscaler; request is generative"
    # without creativity each endpoint's own default is sent
    defaults = {c.offer_id: c.params for c in plan(upscale(upscale_method="generative")).candidates}
    assert defaults["fal-clarity-upscaler"]["creativity"] == 0.35
    assert defaults["krea-topaz-generative"]["creativity"] == 3


def test_a_non_commercial_upscaler_is_refused_for_commercial_use_and_chosen_for_non_commercial() -> None:
    """An upscaler under a non-commercial license (as many community ESRGAN weights are), added as catalog data the
    way a user adds offers: the license rule routes it like any model's."""
    added = {
        "id": "local-nc-upscaler",
        "label": "local NC upscaler",
        "model": "real-esrgan",
        "provider": "local",
        "endpoint": "someone/nc-esrgan/4x.safetensors",
        "wire": "upscale",
        "license": "flux-dev-non-commercial",
        "modes": ["upscale"],
        "max_images": 1,
        "latency_s": 0.1,
        "size": {"custom": True, "max_side": 16384},
        "upscale": {"method": "faithful", "factor": {"min": 1, "max": 4, "default": 2}, "send": "size"},
        "price": {"unit": "gpu_second", "usd": "0", "as_of": "2026-12-01", "source": "own"},
    }
    settings = Settings(offers=[added], prices={"fal-aura-sr": Decimal("0.0012")})
    commercial = plan(upscale(upscale_factor=2, usage="commercial"), settings)
    assert "FLUX.1 [dev] Non-Commercial License and usage=commercial" in reasons(commercial)["local-nc-upscaler"]
    non_commercial = plan(upscale(upscale_factor=2, usage="non-commercial"), settings)
    assert "local-nc-upscaler" in {c.offer_id for c in non_commercial.candidates}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"upscale_method": "faithful", "creativity": 0.5}, "creativity, upscale_method"),
        ({"upscale_factor": 2, "width": 2048, "height": 2048}, "upscale_factor, width, height"),
        ({"num_images": 2}, "num_images, task"),
        ({"steps": 20}, "steps, task"),
        ({"strength": 0.5}, "strength, task"),
    ],
)
def test_what_an_upscale_does_not_take_is_refused_naming_the_fields(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        upscale(**fields)
    assert info.value.errors[0].field == named


def test_upscale_fields_without_task_upscale_are_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        ImageRequest.parse({"prompt": "x", "init_image": SOURCE, "upscale_factor": 2})
    assert info.value.errors[0].field == "upscale_factor, task"
    assert "goes with task upscale" in str(info.value)


def test_a_generation_lists_no_upscaler() -> None:
    p = plan(ImageRequest(prompt="a harbour at dawn"))
    upscalers = {o.id for o in load_catalog().offers if o.upscale}
    assert not upscalers & {c.offer_id for c in [*p.candidates, *p.unavailable]}
    assert not upscalers & {r.offer_id for r in p.rejections}
