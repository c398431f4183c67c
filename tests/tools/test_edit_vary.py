"""edit_image and vary_image end to end through the provider fakes: the mode each call takes, the offer the router
picks for it (or the reason it refuses), the ledger against what the fakes billed, and the lineage of a chain
generate -> edit -> vary by reference, stored and embedded in the images."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import NoRouteError
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.tools import ToolLibrary
from fluxroute.tools.outputs import GenerateOutput
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake


def png_uri(width: int, height: int, color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def spent(router: Router) -> Decimal:
    return router.store.spend_summary().spent_total


async def test_generate_then_edit_then_vary_by_reference_keeps_the_lineage_and_the_ledger(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    library = ToolLibrary(router)
    try:
        first = await router.generate(ImageRequest(prompt="a lighthouse on rocks", provider="krea"))
        edited = await library.dispatch(
            "edit_image", {"image": f"job:{first.job_id}/0", "prompt": "make the sky stormy", "provider": "krea"}
        )
        varied = await library.dispatch("vary_image", {"image": f"job:{edited.job_id}/0", "n": 2, "provider": "fal"})
    finally:
        await library.aclose()

    assert isinstance(edited, GenerateOutput) and isinstance(varied, GenerateOutput)
    assert (edited.status, edited.offer_id) == ("succeeded", "krea-flux-1-kontext-dev")
    assert (varied.status, varied.offer_id, len(varied.images)) == ("succeeded", "fal-flux-dev-redux", 2)
    # Krea got the instruction with the image as an uploaded asset; fal's Redux got the image and no prompt
    (kontext,) = [job for job in krea_fake.jobs if job.model == "bfl/flux-1-kontext-dev"]
    assert kontext.input["prompt"] == "make the sky stormy" and kontext.input["image_url"].startswith("http")
    (redux,) = [job for job in fal_fake.jobs if job.model == "fal-ai/flux/dev/redux"]
    assert "prompt" not in redux.input and redux.input["num_images"] == 2

    edit_links = [link for link in router.store.lineage(edited.job_id) if link.job_id == edited.job_id]
    assert [(link.parent_job_id, link.parent_index, link.relation) for link in edit_links] == [
        (first.job_id, 0, "edited_from")
    ]
    varied_links = router.store.lineage(varied.job_id)
    assert sorted((link.image_index, link.relation, link.parent_job_id) for link in varied_links) == [
        (0, "varied_from", edited.job_id),
        (1, "varied_from", edited.job_id),
    ]
    embedded = read_parameters(Path(str(edited.images[0].path)))
    assert embedded["lineage"] == [f"edited_from job:{first.job_id}/0"]
    # the input image is named, not copied into the metadata
    assert str(embedded["params"]["image_url"]).startswith("data:image/png;base64,... (")
    assert read_parameters(Path(str(varied.images[1].path)))["lineage"] == [f"varied_from job:{edited.job_id}/0"]

    assert krea_fake.billed == Decimal("0.007") + Decimal("0.0128")
    assert spent(router) == krea_fake.billed + fal_fake.billed > krea_fake.billed


async def test_an_inpaint_runs_on_fal_once_its_unpublished_price_is_set(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    image, mask = png_uri(640, 512, (40, 90, 160)), png_uri(640, 512, (255, 255, 255))
    arguments = {"image": image, "mask": mask, "prompt": "a red kite in the sky", "strength": 0.9}

    unpriced = ToolLibrary(Router(hosted_settings))
    with pytest.raises(NoRouteError) as refused:
        await unpriced.dispatch("edit_image", arguments)
    await unpriced.aclose()
    reasons = "\n".join(refused.value.reasons)
    assert "fal flux-krea-lora/inpainting: price not published by fal: set [prices] fal-flux-krea-inpaint" in reasons
    assert "krea flux-1-dev: text-to-image and image-to-image and variation only; request is inpaint" in reasons
    assert fal_fake.billed == krea_fake.billed == 0

    # the user's price and the fake's own table are set apart: $0.035 per megapixel in both
    priced = ToolLibrary(Router(hosted_settings.model_copy(update={"prices": {"fal-flux-krea-inpaint": "0.035"}})))
    try:
        output = await priced.dispatch("edit_image", arguments)
    finally:
        await priced.aclose()
    assert isinstance(output, GenerateOutput) and output.offer_id == "fal-flux-krea-inpaint"
    (job,) = fal_fake.jobs
    assert job.input["mask_url"] and job.input["image_url"] and job.input["strength"] == 0.9
    assert fal_fake.billed == Decimal("0.035") == Decimal(str(output.cost_usd))
    # the edit follows the input's size (the fakes here serve their images at 1/8 scale)
    assert (output.images[0].width * 8, output.images[0].height * 8) == (640, 512)


@pytest.mark.parametrize(
    ("arguments", "mode", "chosen"),
    [
        ({"prompt": "make it night"}, "instruction-edit", "krea-flux-1-kontext-dev"),
        ({"prompt": "a night scene", "strength": 0.6}, "image-to-image", "krea-flux-1-dev"),
        ({"prompt": "a kite", "task": "inpaint", "mask": "MASK"}, "inpaint", None),
        ({"prompt": "make it night", "provider": "fal"}, "instruction-edit", None),
    ],
)
async def test_each_edit_takes_the_mode_its_inputs_say_and_routes_or_says_why_not(
    hosted_settings: Settings, arguments: dict[str, object], mode: str, chosen: str | None
) -> None:
    image = png_uri(512, 512, (10, 10, 10))
    given = {**arguments, "image": image}
    if given.get("mask") == "MASK":
        given["mask"] = png_uri(512, 512, (255, 255, 255))
    library = ToolLibrary(Router(hosted_settings))
    try:
        request = library.image_request(_edit_args(given))
        plan = library.router.plan(request, (512, 512))
    finally:
        await library.aclose()
    assert request.mode == mode
    assert (plan.chosen.offer_id if plan.chosen else None) == chosen
    if chosen is None:
        assert plan.rejections and all(rejection.reasons for rejection in plan.rejections)
        # local offers say what they do not do; unpublished prices say how to set one
        said = "\n".join(str(rejection) for rejection in plan.rejections)
        assert f"request is {mode}" in said


def _edit_args(given: dict[str, object]) -> object:
    from fluxroute.tools.image_args import EditArgs

    return EditArgs.model_validate(given).generate_args()


async def test_a_variation_on_krea_sends_the_image_as_an_image_prompt(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    library = ToolLibrary(Router(hosted_settings))
    try:
        output = await library.dispatch(
            "vary_image", {"image": png_uri(512, 512, (200, 120, 40)), "prompt": "keep the colors", "provider": "krea"}
        )
    finally:
        await library.aclose()
    assert isinstance(output, GenerateOutput) and output.offer_id == "krea-flux-1-dev"
    (job,) = krea_fake.jobs
    assert "image_url" not in job.input and len(job.input["style_images"]) == 1
    assert job.input["style_images"][0]["strength"] == 1.0 and job.input["prompt"] == "keep the colors"
    assert krea_fake.billed == Decimal("0.007") == Decimal(str(output.cost_usd))


async def test_a_kontext_edit_on_fal_once_its_price_is_set_is_billed_by_the_input_size(
    hosted_settings: Settings, fal_fake: FalFake
) -> None:
    # fal publishes no Kontext price: the fake bills its own $0.025 per megapixel, the user sets the same apart
    settings = hosted_settings.model_copy(update={"prices": {"fal-flux-kontext-dev": "0.025"}})
    library = ToolLibrary(Router(settings))
    try:
        output = await library.dispatch(
            "edit_image",
            {"image": png_uri(1280, 1024, (90, 90, 90)), "prompt": "make it snow", "provider": "fal"},
        )
    finally:
        await library.aclose()
    assert isinstance(output, GenerateOutput) and output.offer_id == "fal-flux-kontext-dev"
    (job,) = fal_fake.jobs
    assert job.input["prompt"] == "make it snow" and "image_size" not in job.input and "strength" not in job.input
    assert fal_fake.billed == Decimal("0.050") == Decimal(str(output.cost_usd))  # 1.3 MP, rounded up to 2


async def test_an_image_to_image_edit_on_krea_takes_style_references(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    library = ToolLibrary(Router(hosted_settings))
    style = {"url": png_uri(256, 256, (250, 200, 10)), "strength": 0.4}
    try:
        output = await library.dispatch(
            "edit_image",
            {"image": png_uri(512, 512, (5, 5, 5)), "prompt": "the same street", "strength": 0.5,
             "style_references": [style], "provider": "krea"},
        )  # fmt: skip
    finally:
        await library.aclose()
    assert isinstance(output, GenerateOutput) and output.offer_id == "krea-flux-1-dev"
    (job,) = krea_fake.jobs
    assert job.input["strength"] == 0.5 and len(job.input["image_style_references"]) == 1
    assert job.input["image_style_references"][0]["strength"] == 0.4
