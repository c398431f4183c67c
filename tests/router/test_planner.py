"""Planning scenarios: license, resolution, features, budget, pins, availability, explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxroute.errors import InvalidRequest
from fluxroute.router import Router
from fluxroute.types import ImageRequest

from .conftest import make_router


def plan(router: Router, **fields: object):  # type: ignore[no-untyped-def]
    return router.plan(ImageRequest.parse({"prompt": "a lighthouse at dusk", **fields}))


def rejection(p, offer_id: str) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(next(r.reasons for r in p.rejections if r.offer_id == offer_id))


def test_commercial_use_never_routes_to_noncommercial_weights(router: Router) -> None:
    p = plan(router, usage="commercial", model="flux-krea-dev")
    assert p.chosen is not None and p.chosen.provider != "local"
    assert "FLUX.1 [dev] Non-Commercial License and usage=commercial" in rejection(p, "local-flux-krea-dev")


def test_commercial_is_the_default_usage(router: Router) -> None:
    p = plan(router)
    assert p.usage == "commercial"
    assert not [c for c in p.candidates if c.provider == "local"]  # no local weights allow it with nothing declared
    # of the local weights, only FLUX.1 [schnell] (Apache-2.0) may serve commercial use with nothing declared
    schnell = plan(router, model="flux-schnell")
    assert {c.offer_id for c in schnell.candidates if c.provider == "local"} == {"local-flux-schnell"}


def test_non_commercial_use_picks_free_local_weights(router: Router) -> None:
    p = plan(router, usage="non-commercial", model="flux-krea-dev")
    assert p.chosen is not None and p.chosen.offer_id == "local-flux-krea-dev"
    assert p.chosen.cost_usd == 0


def test_declared_own_commercial_license_allows_local_weights(tmp_path: Path) -> None:
    router = make_router(tmp_path, local_commercial_license=True)
    p = plan(router, usage="commercial", model="flux-dev")
    assert p.chosen is not None and p.chosen.provider == "local"


def test_six_megapixels_rejects_fal_flux_krea_with_the_reason(router: Router) -> None:
    p = plan(router, width=3000, height=2000)
    assert "6.0 MP exceeds 4 MP" in rejection(p, "fal-flux-krea")
    assert "width 3000 outside 512-2368 px" in rejection(p, "krea-flux-1-dev")
    assert p.chosen is None


def test_wide_aspect_ratio_maps_to_the_krea_2_enum(router: Router) -> None:
    p = plan(router, model="krea-2", provider="krea", aspect_ratio="2.35:1")
    assert p.chosen is not None
    assert p.chosen.params["aspect_ratio"] == "2.35:1"
    assert p.chosen.params["resolution"] == "1K"
    assert (p.chosen.width, p.chosen.height) == (1568, 672)


def test_krea_2_snaps_to_nearest_ratio_and_says_so(router: Router) -> None:
    p = plan(router, model="krea-2", provider="krea", width=1200, height=800)
    assert p.chosen is not None and p.chosen.params["aspect_ratio"] == "3:2"
    assert [a.field for a in p.chosen.adjustments] == ["aspect_ratio", "size"]


def test_local_snaps_to_multiples_of_16_explicitly(router: Router) -> None:
    p = plan(router, usage="non-commercial", model="flux-dev", provider="local", width=1000, height=750)
    assert p.chosen is not None
    assert (p.chosen.width, p.chosen.height) == (1008, 752)
    assert p.chosen.adjustments[0].reason == "snapped to multiples of 16"


def test_fal_preset_size_is_sent_by_name(router: Router) -> None:
    p = plan(router, model="flux-krea-dev", width=1024, height=768)
    assert p.chosen is not None and p.chosen.params["image_size"] == "landscape_4_3"
    assert p.chosen.adjustments == []


def test_steps_out_of_endpoint_range_are_clamped_and_recorded(router: Router) -> None:
    p = plan(router, model="flux-krea-dev", steps=80)
    assert p.chosen is not None and p.chosen.params["num_inference_steps"] == 50
    assert any(a.field == "steps" and a.sent == 50 for a in p.chosen.adjustments)


def test_max_cost_rejects_offers_above_it(router: Router) -> None:
    p = plan(router, model="krea-2", provider="krea", max_cost_usd=0.05)
    assert p.chosen is not None and p.chosen.offer_id == "krea-2-medium"
    assert "costs $0.06 > max_cost_usd $0.05" in rejection(p, "krea-2-large")


def test_per_call_budget_from_settings_rejects_expensive_offers(tmp_path: Path) -> None:
    router = make_router(tmp_path, budget_per_call_usd="0.01")
    p = plan(router, model="krea-2", provider="krea")
    assert p.chosen is None
    assert "per-call budget $0.01" in rejection(p, "krea-2-medium")


def test_provider_pin_and_exclusion(router: Router) -> None:
    pinned = plan(router, provider="fal")
    assert pinned.chosen is not None and pinned.chosen.provider == "fal"
    assert "pinned to provider=fal" in rejection(pinned, "krea-flux-1-dev")
    excluded = plan(router, model="flux-dev", exclude_providers=["krea"])
    assert excluded.chosen is not None and excluded.chosen.provider == "fal"


def test_prefer_speed_reverses_the_ranking(router: Router) -> None:
    cheap = plan(router, model="flux-dev")
    fast = plan(router, model="flux-dev", prefer="speed")
    assert cheap.chosen is not None and fast.chosen is not None
    assert cheap.chosen.offer_id == "krea-flux-1-dev"
    assert fast.chosen.latency_s <= cheap.chosen.latency_s
    assert fast.chosen.offer_id == "fal-flux-dev"


def test_several_images_rule_out_one_image_per_job_endpoints(router: Router) -> None:
    p = plan(router, model="flux-dev", num_images=4)
    assert "one image per job; num_images=4" in rejection(p, "krea-flux-1-dev")
    assert p.chosen is not None and p.chosen.params["num_images"] == 4


def test_negative_prompt_is_refused_by_guidance_distilled_endpoints(router: Router) -> None:
    p = plan(router, negative_prompt="blurry", usage="non-commercial")
    assert "ignores negative_prompt" in rejection(p, "fal-flux-krea")
    assert p.chosen is not None and p.chosen.provider == "local"
    assert p.chosen.params["true_cfg_scale"] > 1


def test_image_to_image_uses_endpoints_that_take_an_init_image(router: Router) -> None:
    p = plan(router, init_image="https://example.com/a.png", strength=0.6, model="flux-krea-dev")
    assert p.chosen is not None and p.chosen.offer_id == "fal-flux-krea-i2i"
    assert p.chosen.params["image_url"] == "https://example.com/a.png"
    assert p.chosen.params["strength"] == 0.6
    assert "text-to-image only" in rejection(p, "fal-flux-krea")


def test_long_prompts_rule_out_krea_flux(router: Router) -> None:
    p = router.plan(ImageRequest(prompt="word " * 400, model="flux-dev"))
    assert "prompt is 2000 characters; at most 1800" in rejection(p, "krea-flux-1-dev")


def test_without_keys_the_plan_still_says_what_would_run(tmp_path: Path) -> None:
    router = make_router(tmp_path, available=False)
    p = plan(router, model="flux-dev")
    assert p.chosen is None
    assert p.unavailable[0].offer_id == "krea-flux-1-dev"
    assert "KREA_API_TOKEN is not set" in (p.unavailable[0].unavailable_reason or "")
    assert "with it configured, krea flux-1-dev at $0.007" in p.explanation


def test_unknown_model_is_a_field_error(router: Router) -> None:
    with pytest.raises(InvalidRequest, match="model: got 'flux-pro'; allowed: auto, flux-krea-dev"):
        plan(router, model="flux-pro")


def test_exact_parameters_are_in_the_plan(router: Router) -> None:
    p = plan(router, model="flux-dev", seed=7, guidance=2.5, steps=30, aspect_ratio="16:9")
    assert p.chosen is not None
    assert p.chosen.params == {
        "prompt": "a lighthouse at dusk",
        "width": 1280,
        "height": 720,
        "steps": 30,
        "guidance_scale": 2.5,
        "seed": 7,
    }


def test_auto_never_trades_full_quality_for_a_model_asked_for_by_name(router: Router) -> None:
    # FLUX.1 [schnell] is the cheapest fit for a commercial 1 MP image, and the catalog says auto may not pick it
    auto = router.plan(ImageRequest.parse({"prompt": "a heron at dawn"}))
    named = router.plan(ImageRequest.parse({"prompt": "a heron at dawn", "model": "flux-schnell"}))
    assert auto.chosen is not None and auto.chosen.model != "flux-schnell"
    assert all(c.model != "flux-schnell" for c in [*auto.candidates, *auto.unavailable])
    assert named.chosen is not None and named.chosen.model == "flux-schnell"
    assert named.chosen.cost_usd < auto.chosen.cost_usd
