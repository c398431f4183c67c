"""The new hosted offers run end to end through the fal fake: what is sent, what is billed, what the ledger holds."""

from __future__ import annotations

from decimal import Decimal

from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake


async def test_flux_schnell_on_fal_is_billed_what_the_fake_billed(hosted_settings: Settings, fal_fake: FalFake) -> None:
    router = Router(hosted_settings)
    try:
        request = ImageRequest(prompt="a fox in the snow", model="flux-schnell", num_images=2, seed=5, guidance=3.5)
        result = await router.generate(request)
    finally:
        await router.aclose()
    assert (result.offer_id, result.provider) == ("fal-flux-schnell", "fal")
    sent = fal_fake.jobs[-1].input
    assert sent["num_inference_steps"] == 4 and "guidance_scale" not in sent
    assert any(a.field == "guidance" and a.sent is None for a in result.plan.candidates[0].adjustments)
    assert fal_fake.billed == Decimal("0.006")  # the default 1 MP square: 1 MP per image, two images
    assert router.store.total_charged() == fal_fake.billed
    assert result.cost_usd == float(fal_fake.billed)
    assert len(result.images) == 2


async def test_krea_2_turbo_on_fal_sends_neither_steps_nor_guidance(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        result = await router.generate(ImageRequest(prompt="a fox", model="krea-2", provider="fal", steps=20))
    finally:
        await router.aclose()
    assert result.offer_id == "fal-krea-2-turbo"
    assert not {"num_inference_steps", "guidance_scale"} & set(fal_fake.jobs[-1].input)
    assert any(a.field == "steps" and a.sent is None for a in result.plan.candidates[0].adjustments)
    assert router.store.total_charged() == fal_fake.billed == Decimal("0.008")  # the default 1 MP square
