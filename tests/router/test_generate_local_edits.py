"""Local edits end to end on tiny random-weight pipelines (CPU): image-to-image and inpaint on FLUX.1 Krea [dev] /
[dev] weights (FluxImg2ImgPipeline / FluxInpaintPipeline made with from_pipe), instruction edits on FLUX.1 Kontext
[dev] weights (FluxKontextPipeline), through Router.generate and edit_image; license routing and a $0 ledger."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import ConfigError, JobFailed, NoRouteError
from fluxroute.providers.local import LocalProvider, LocalWorker
from fluxroute.providers.local_inputs import decode_input
from fluxroute.providers.wire import ResolvedCall, local_kwargs
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.tools import ToolLibrary
from fluxroute.tools.outputs import GenerateOutput
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.tiny_flux import require_local_extra

KONTEXT_REPO = "black-forest-labs/FLUX.1-Kontext-dev"


def png_uri(width: int, height: int, color: tuple[int, int, int], *, mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color if mode == "RGB" else color[0]).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def half_mask(width: int, height: int, *, left: bool = True) -> str:
    """White (repaint) on one half, black (keep) on the other."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height) if left else (width // 2, 0, width, height))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def edit_settings(local_settings: Settings, tiny_kontext_path: Path) -> Settings:
    return local_settings.model_copy(update={"local_models": {KONTEXT_REPO: tiny_kontext_path}})


def local_router(settings: Settings, worker: LocalWorker) -> Router:
    return Router(settings, providers={"local": LocalProvider(settings, worker=worker)})


async def generate(settings: Settings, worker: LocalWorker, **fields: object) -> tuple[GenerationResult, Router]:
    router = local_router(settings, worker)
    asked = {"prompt": "a red door", "provider": "local", "steps": 2, **fields}
    try:
        return await router.generate(ImageRequest.parse(asked)), router
    finally:
        await router.aclose()


def pixels(result: GenerationResult, index: int = 0) -> bytes:
    return Image.open(str(result.images[index].path)).tobytes()


async def test_image_to_image_renders_at_the_input_size_with_the_offer_guidance_and_costs_nothing(
    edit_settings: Settings, local_worker: LocalWorker
) -> None:
    result, router = await generate(edit_settings, local_worker, init_image=png_uri(96, 64, (200, 30, 30)), seed=3)
    assert (result.offer_id, result.cost_usd) == ("local-flux-krea-dev", 0)
    chosen = result.plan.chosen
    assert chosen is not None
    # FluxImg2ImgPipeline's own default guidance is 7.0: the offer's 4.5 is always sent, with its strength
    assert chosen.params["guidance_scale"] == 4.5 and chosen.params["strength"] == 0.6
    assert chosen.params["mode"] == "image-to-image" and "mask_image" not in chosen.params
    assert Image.open(str(result.images[0].path)).size == (96, 64)
    assert any(a.field == "size" and "input image" in a.reason for a in chosen.adjustments)
    assert router.store.spend_summary().spent_total == Decimal(0)
    # the input image is named in the embedded parameters, not copied into them
    embedded = read_parameters(Path(str(result.images[0].path)))
    assert str(embedded["params"]["image"]).startswith("data:image/png;base64,... (")
    # the edit pipeline shares the loaded components: no second copy of the weights
    loaded = local_worker._loaded
    variant = loaded.variants["FluxImg2ImgPipeline"]
    assert variant.transformer is loaded.pipe.transformer and variant.vae is loaded.pipe.vae
    assert variant.text_encoder_2 is loaded.pipe.text_encoder_2


async def test_an_input_size_off_the_grid_is_snapped_and_the_output_follows_it(
    edit_settings: Settings, local_worker: LocalWorker
) -> None:
    result, _ = await generate(
        edit_settings, local_worker, init_image=png_uri(70, 90, (10, 120, 200)), model="flux-dev"
    )
    chosen = result.plan.chosen
    assert chosen is not None and chosen.offer_id == "local-flux-dev"
    assert (chosen.width % 16, chosen.height % 16) == (0, 0)
    assert Image.open(str(result.images[0].path)).size == (chosen.width, chosen.height)


async def test_strength_reaches_the_pipeline(edit_settings: Settings, local_worker: LocalWorker) -> None:
    image = png_uri(64, 64, (30, 160, 60))
    low, _ = await generate(edit_settings, local_worker, init_image=image, seed=5, strength=0.3, steps=4)
    again, _ = await generate(edit_settings, local_worker, init_image=image, seed=5, strength=0.3, steps=4)
    high, _ = await generate(edit_settings, local_worker, init_image=image, seed=5, strength=0.9, steps=4)
    assert pixels(low) == pixels(again) != pixels(high)


async def test_inpaint_reads_the_mask(edit_settings: Settings, local_worker: LocalWorker) -> None:
    image = png_uri(64, 64, (200, 200, 40))
    left, _ = await generate(edit_settings, local_worker, init_image=image, mask_image=half_mask(64, 64), seed=9)
    chosen = left.plan.chosen
    assert chosen is not None and (chosen.offer_id, chosen.params["mode"]) == ("local-flux-krea-dev", "inpaint")
    assert chosen.params["mask_image"] == half_mask(64, 64) and chosen.params["guidance_scale"] == 4.5
    same, _ = await generate(edit_settings, local_worker, init_image=image, mask_image=half_mask(64, 64), seed=9)
    right, _ = await generate(
        edit_settings, local_worker, init_image=image, mask_image=half_mask(64, 64, left=False), seed=9
    )
    assert pixels(left) == pixels(same) != pixels(right)
    assert "FluxInpaintPipeline" in local_worker._loaded.variants
    assert left.cost_usd == 0


async def test_an_instruction_edit_runs_on_kontext_weights_at_the_input_size(
    edit_settings: Settings, local_worker: LocalWorker
) -> None:
    result, router = await generate(
        edit_settings, local_worker, init_image=png_uri(96, 64, (90, 90, 90)), task="instruction-edit", seed=1
    )
    chosen = result.plan.chosen
    assert chosen is not None and (chosen.offer_id, chosen.model) == ("local-flux-kontext-dev", "flux-kontext-dev")
    assert chosen.params["guidance_scale"] == 2.5 and chosen.params["max_area"] == 96 * 64
    assert "strength" not in chosen.params
    assert Image.open(str(result.images[0].path)).size == (96, 64)
    assert type(local_worker._loaded.pipe).__name__ == "FluxKontextPipeline"
    assert result.cost_usd == 0 and router.store.spend_summary().spent_total == Decimal(0)


async def test_edit_image_runs_locally_through_the_tool_library(
    edit_settings: Settings, local_worker: LocalWorker
) -> None:
    library = ToolLibrary(local_router(edit_settings, local_worker))
    try:
        output = await library.dispatch(
            "edit_image",
            {
                "image": png_uri(80, 64, (120, 40, 200)),
                "prompt": "the same door, painted",
                "strength": 0.2,
                "provider": "local",
                "seed": 4,
            },
        )
        kontext = await library.dispatch(
            "edit_image",
            {
                "image": f"job:{output.job_id}/0",
                "prompt": "make the door green",
                "task": "instruction-edit",  # type: ignore[attr-defined]
                "provider": "local",
            },
        )
    finally:
        await library.aclose()
    assert isinstance(output, GenerateOutput) and isinstance(kontext, GenerateOutput)
    assert (output.status, output.offer_id, output.cost_usd) == ("succeeded", "local-flux-krea-dev", 0)
    assert (kontext.status, kontext.offer_id, kontext.cost_usd) == ("succeeded", "local-flux-kontext-dev", 0)
    assert Image.open(str(kontext.images[0].path)).size == (80, 64)
    embedded = read_parameters(Path(str(kontext.images[0].path)))
    assert embedded["lineage"] == [f"edited_from job:{output.job_id}/0"]


async def test_commercial_use_refuses_local_kontext_with_the_license_reason(
    edit_settings: Settings, local_worker: LocalWorker
) -> None:
    with pytest.raises(NoRouteError) as info:
        await generate(
            edit_settings,
            local_worker,
            init_image=png_uri(64, 64, (1, 2, 3)),
            task="instruction-edit",
            model="flux-kontext-dev",
            usage="commercial",
        )
    assert "local flux-kontext-dev: FLUX.1 [dev] Non-Commercial License and usage=commercial" in str(info.value)


def test_local_offers_plan_only_the_modes_their_weights_run(edit_settings: Settings) -> None:
    router = Router(edit_settings)
    image = png_uri(64, 64, (5, 5, 5))
    base = {"prompt": "x", "provider": "local", "init_image": image}
    variation = router.plan(ImageRequest.parse({**base, "task": "variation"}))
    assert variation.chosen is None  # no local Redux offer: the reason is the mode
    kontext_i2i = router.plan(ImageRequest.parse({**base, "model": "flux-kontext-dev", "task": "image-to-image"}))
    assert kontext_i2i.chosen is None
    assert any("instruction-edit only; request is image-to-image" in str(r) for r in kontext_i2i.rejections)


def test_local_kwargs_carry_the_mode_the_image_and_the_offer_guidance() -> None:
    call = ResolvedCall(
        prompt="p",
        width=80,
        height=48,
        preset=None,
        aspect_key=None,
        num_images=1,
        steps=28,
        guidance=4.5,
        seed=None,
        output_format="png",
        negative_prompt=None,
        init_image="data:image/png;base64,AAAA",
        strength=0.6,
        style_references=(),
        mode="image-to-image",
    )
    kwargs = local_kwargs(call)
    assert (kwargs["mode"], kwargs["image"], kwargs["strength"], kwargs["guidance_scale"]) == (
        "image-to-image",
        "data:image/png;base64,AAAA",
        0.6,
        4.5,
    )
    assert (kwargs["width"], kwargs["height"]) == (80, 48)
    text = local_kwargs(
        ResolvedCall(**{**_fields(call), "mode": "text-to-image", "init_image": None, "strength": None})
    )
    assert not {"mode", "image", "strength", "mask_image", "max_area"} & set(text)


def _fields(call: ResolvedCall) -> dict[str, object]:
    return {name: getattr(call, name) for name in ResolvedCall.__slots__}  # type: ignore[attr-defined]


def test_input_images_are_bounded_before_they_are_decoded(local_settings: Settings) -> None:
    require_local_extra()
    small = local_settings.model_copy(update={"max_image_pixels": 64 * 64})
    assert decode_input(png_uri(64, 64, (1, 2, 3)), "RGB", small, field="image", provider="local").size == (64, 64)
    with pytest.raises(JobFailed) as info:
        decode_input(png_uri(80, 64, (1, 2, 3)), "RGB", small, field="image", provider="local")
    assert "max_image_pixels" in str(info.value) and info.value.billing == "unbilled"
    with pytest.raises(JobFailed):
        decode_input(
            "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode(),
            "RGB",
            small,
            field="image",
            provider="local",
        )
    mask = decode_input(half_mask(64, 64), "L", small, field="mask_image", provider="local")
    assert mask.mode == "L" and mask.getpixel((0, 0)) == 255 and mask.getpixel((63, 0)) == 0


def test_weights_that_cannot_run_a_mode_say_so(tiny_kontext_path: Path, tiny_flux_path: Path) -> None:
    from fluxroute.providers import local_pipeline
    from fluxroute.providers.local_weights import MemoryPlan

    plan = MemoryPlan("cpu", "test")
    options = local_pipeline.PipelineOptions(fuse_qkv=False)
    kontext = local_pipeline.load_pipeline(tiny_kontext_path, "cpu", plan, options)
    with pytest.raises(ConfigError, match="cannot run image-to-image"):
        local_pipeline.pipeline_for_mode(kontext, "image-to-image")
    flux = local_pipeline.load_pipeline(tiny_flux_path, "cpu", plan, options)
    with pytest.raises(ConfigError, match="FluxKontextPipeline does"):
        local_pipeline.pipeline_for_mode(flux, "instruction-edit")
    assert local_pipeline.pipeline_for_mode(flux, "inpaint") is local_pipeline.pipeline_for_mode(flux, "inpaint")
