"""LoRAs as a routed option: Krea styles (krea:<id>) go only to Krea's flux-1-dev as `styles`, weights by repo or URL
only to fal's flux-krea-lora endpoints as `loras` (usable once their unpublished price is set); every other offer says
why not. Ledger = what the fakes billed."""

from __future__ import annotations

import base64
import io
from decimal import Decimal

import pytest
from PIL import Image

from fluxroute.cli import _lora
from fluxroute.errors import InvalidRequest, NoRouteError
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import ToolLibrary
from fluxroute.tools.outputs import GenerateOutput
from fluxroute.types import ImageRequest, LoraRef
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake

LORA_PRICES = {"fal-flux-krea-lora": "0.035", "fal-flux-krea-lora-i2i": "0.035"}


async def test_a_krea_style_runs_on_krea_flux_1_dev_as_styles(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    router = Router(hosted_settings)
    request = ImageRequest(prompt="a fox in the snow", loras=(LoraRef(ref="krea:st-123", scale=0.8),))
    result = await router.generate(request)
    await router.aclose()

    assert result.offer_id == "krea-flux-1-dev"
    (job,) = krea_fake.jobs
    assert job.input["styles"] == [{"id": "st-123", "strength": 0.8}]
    assert router.store.spend_summary().spent_total == krea_fake.billed == Decimal("0.007")


async def test_lora_weights_need_the_fal_lora_price_then_run_there_as_loras(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    request = ImageRequest(prompt="a fox in the snow", loras=(LoraRef(ref="someone/fox-style", scale=1.2),))
    with pytest.raises(NoRouteError) as refused:
        await Router(hosted_settings).generate(request)
    reasons = "\n".join(refused.value.reasons)
    assert "krea flux-1-dev: takes Krea styles (krea:<id>) only, not LoRA weights by URL or repo" in reasons
    assert "fal flux/krea: takes no LoRA" in reasons
    assert "fal flux-krea-lora: price not published by fal: set [prices] fal-flux-krea-lora" in reasons
    assert fal_fake.billed == krea_fake.billed == 0

    router = Router(hosted_settings.model_copy(update={"prices": LORA_PRICES}))
    result = await router.generate(request)
    await router.aclose()
    assert result.offer_id == "fal-flux-krea-lora"
    (job,) = fal_fake.jobs
    assert job.model == "fal-ai/flux-krea-lora" and job.input["loras"] == [{"path": "someone/fox-style", "scale": 1.2}]
    assert router.store.spend_summary().spent_total == fal_fake.billed == Decimal("0.035")


async def test_an_edit_with_lora_weights_runs_on_the_lora_image_to_image_endpoint(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (20, 40, 60)).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    library = ToolLibrary(Router(hosted_settings.model_copy(update={"prices": LORA_PRICES})))
    try:
        output = await library.dispatch(
            "edit_image",
            {"image": image, "prompt": "the same fox, as ink", "strength": 0.6, "loras": [{"ref": "someone/ink"}]},
        )
    finally:
        await library.aclose()
    assert isinstance(output, GenerateOutput) and output.offer_id == "fal-flux-krea-lora-i2i"
    (job,) = fal_fake.jobs
    assert job.input["loras"] == [{"path": "someone/ink", "scale": 1.0}] and job.input["strength"] == 0.6
    assert fal_fake.billed == Decimal("0.035") == Decimal(str(output.cost_usd))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("krea:abc", {"ref": "krea:abc"}),
        ("krea:abc=0.7", {"ref": "krea:abc", "scale": 0.7}),
        ("owner/name=-1", {"ref": "owner/name", "scale": -1.0}),
        ("https://e.com/w.safetensors?download=1", {"ref": "https://e.com/w.safetensors?download=1"}),
    ],
)
def test_the_cli_takes_a_scale_only_from_a_trailing_number(given: str, expected: dict[str, object]) -> None:
    assert _lora(0, given) == expected


def test_a_lora_reference_of_no_known_form_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        ImageRequest.parse({"prompt": "a fox", "loras": [{"ref": "http://e.com/w.safetensors"}]})
    assert "loras.0.ref" in str(refused.value) and "krea:<style id>" in str(refused.value)
