"""MCP prompts (one per model family's guide) and resources (catalog, guides, jobs), read with the SDK client."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from mcp import types
from mcp.shared.exceptions import MCPError

from fluxroute.catalog import load_catalog
from fluxroute.prompts import FAMILIES as GUIDED
from fluxroute.prompts import guide
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect

# the models with a prompting guide (upscalers have none)
FAMILIES = [model.id for model in load_catalog().models if model.id in GUIDED]


async def test_each_model_family_has_a_prompt_taking_subject_style_and_aspect_ratio(connect: Connect) -> None:
    async with connect() as client:
        prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}

    assert sorted(prompts) == sorted(f"{family}-prompt" for family in FAMILIES)
    for prompt in prompts.values():
        arguments = {argument.name: argument.required for argument in prompt.arguments or []}
        assert arguments == {"subject": True, "style": False, "aspect_ratio": False}


async def test_getting_a_prompt_fills_in_the_subject_and_carries_the_guide(connect: Connect) -> None:
    async with connect() as client:
        result = await client.get_prompt(
            "flux-krea-dev-prompt", {"subject": "a lighthouse at dusk", "style": "35mm film", "aspect_ratio": "16:9"}
        )

    (message,) = result.messages
    assert message.role == "user" and isinstance(message.content, types.TextContent)
    text = message.content.text
    assert "a lighthouse at dusk" in text and "35mm film" in text and "16:9" in text
    assert "FLUX.1 Krea [dev]" in text


@pytest.mark.parametrize("family", FAMILIES)
async def test_each_guide_is_a_markdown_resource(connect: Connect, family: str) -> None:
    async with connect() as client:
        read = await client.read_resource(f"fluxroute://guides/{family}")

    (contents,) = read.contents
    assert isinstance(contents, types.TextResourceContents)
    assert contents.mime_type == "text/markdown" and contents.text == guide(family)


async def test_an_unknown_guide_is_an_error_naming_the_families(connect: Connect) -> None:
    async with connect() as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("fluxroute://guides/sdxl")

    assert "flux-krea-dev" in str(caught.value)


async def test_the_models_resource_lists_every_offer_with_availability(connect: Connect) -> None:
    async with connect() as client:
        read = await client.read_resource("fluxroute://models")

    models = json.loads(read.contents[0].text)["models"]  # type: ignore[union-attr]
    offers = {offer["offer_id"]: offer for model in models for offer in model["offers"]}
    assert set(offers) == {offer.id for offer in load_catalog().offers}
    assert offers["fal-flux-krea"]["available"] is True


async def test_job_resources_show_the_request_result_and_attempts(connect: Connect, krea_fake: KreaFake) -> None:
    async with connect() as client:
        generated = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "krea"})
        assert generated.structured_content is not None
        job_id = generated.structured_content["job_id"]
        recent = json.loads((await client.read_resource("fluxroute://jobs")).contents[0].text)  # type: ignore[union-attr]
        job = json.loads((await client.read_resource(f"fluxroute://jobs/{job_id}")).contents[0].text)  # type: ignore[union-attr]

    recent = recent["jobs"]
    assert recent[0]["job_id"] == job_id and recent[0]["images"] == [f"fluxroute://images/{job_id}-0.png"]
    assert job["request"]["prompt"] == "a fox" and job["status"] == "succeeded"
    (attempt,) = job["attempts"]
    assert attempt["provider"] == "krea" and attempt["status"] == "succeeded"


async def test_the_jobs_resource_shows_charged_reserved_and_at_risk_money_and_each_at_risk_job(
    connect: Connect, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    dropped = fal_fake.faults.drop_after_accept()  # fal accepted the job; its answer was lost: at risk
    async with connect() as client:
        charged = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "krea", "model": "flux-dev"})
        lost = await client.call_tool(
            "generate_image", {"prompt": "a fox", "provider": "fal", "model": "flux-krea-dev"}
        )
        read = await client.read_resource("fluxroute://jobs")
    assert charged.structured_content is not None and lost.is_error and dropped.hits == 1
    assert isinstance(read.contents[0], types.TextResourceContents)
    listed = json.loads(read.contents[0].text)

    spend = listed["spend"]  # the store's spend summary, the one `fluxroute spend --json` prints
    assert spend["spent_today"] == "0.007" and spend["at_risk_today"] == "0.025" and spend["reserved_today"] == "0"
    rows = {row["provider"]: row for row in spend["days"]}
    assert (rows["krea"]["charged"], rows["krea"]["at_risk"]) == ("0.007", "0")
    assert (rows["fal"]["charged"], rows["fal"]["at_risk"]) == ("0", "0.025")
    [held] = listed["at_risk"]
    assert held["provider"] == "fal" and held["amount_usd"] == "0.025" and held["provider_job_id"] is None
    assert "fluxroute jobs settle" in held["what_to_do"]
    jobs = {job["job_id"]: job for job in listed["jobs"]}
    assert jobs[held["job_id"]]["at_risk_usd"] == "0.025"
    assert jobs[charged.structured_content["job_id"]]["at_risk_usd"] is None
    assert krea_fake.billed == Decimal("0.007") and fal_fake.billed == 0  # fal's job may still run and bill


@pytest.mark.parametrize("uri", ["fluxroute://images/../../etc/passwd.png", f"fluxroute://images/{'0' * 32}-0.png"])
async def test_an_image_resource_outside_the_saved_images_cannot_be_read(connect: Connect, uri: str) -> None:
    async with connect() as client:
        with pytest.raises(MCPError):
            await client.read_resource(uri)
