"""`completion/complete` through the SDK's in-memory client, in both protocol eras: the prompts' aspect_ratio and
style, the guide, job and image templates, prefix filtering, and nothing for what fluxroute does not know."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.types import Completion, PromptReference, ResourceTemplateReference

from fluxroute.catalog import load_catalog
from fluxroute.prompts import FAMILIES as GUIDED
from fluxroute.prompts import guide
from fluxroute.router import Router
from fluxroute.server import build_server
from fluxroute.server.completions import STYLES
from fluxroute.settings import Settings
from tests.fakes.krea import KreaFake
from tests.server.conftest import Connect

# the models with a prompting guide (upscalers have none)
FAMILIES = [model.id for model in load_catalog().models if model.id in GUIDED]
KREA_2_SHAPES = ["1:1", "4:3", "3:2", "16:9", "2.35:1", "4:5", "2:3", "9:16"]


async def complete(
    client: Client, ref: PromptReference | ResourceTemplateReference, name: str, value: str = ""
) -> Completion:
    return (await client.complete(ref, {"name": name, "value": value})).completion


def prompt(family: str) -> PromptReference:
    return PromptReference(type="ref/prompt", name=f"{family}-prompt")


def template(uri: str) -> ResourceTemplateReference:
    return ResourceTemplateReference(type="ref/resource", uri=uri)


async def test_the_server_advertises_completions(connect: Connect) -> None:
    async with connect() as client:
        assert client.server_capabilities.completions is not None


async def test_krea_2_aspect_ratios_are_its_fixed_table_first_filtered_by_what_was_typed(connect: Connect) -> None:
    async with connect() as client:
        every = await complete(client, prompt("krea-2"), "aspect_ratio")
        twos = await complete(client, prompt("krea-2"), "aspect_ratio", "2")
        none = await complete(client, prompt("krea-2"), "aspect_ratio", "7:")

    # the Krea API's fixed table, then the shapes of the free-size routes (open weights on fal and locally)
    assert every.values == [*KREA_2_SHAPES, "3:4"]
    assert every.total == len(KREA_2_SHAPES) + 1 and every.has_more is False
    assert twos.values == ["2.35:1", "2:3"] and twos.total == 2
    assert none.values == [] and none.total == 0


async def test_free_size_families_get_every_shape_the_catalog_names(connect: Connect) -> None:
    async with connect() as client:
        shapes = await complete(client, prompt("flux-dev"), "aspect_ratio")
        threes = await complete(client, prompt("flux-krea-dev"), "aspect_ratio", "3")

    # Krea 2's table, then fal's presets as W:H (portrait_4_3 is 768x1024: 3:4)
    assert shapes.values == [*KREA_2_SHAPES, "3:4"]
    assert threes.values == ["3:2", "3:4"]


@pytest.mark.parametrize("family", FAMILIES)
async def test_style_suggestions_are_the_guides_own_words(connect: Connect, family: str) -> None:
    async with connect() as client:
        styles = await complete(client, prompt(family), "style")

    assert styles.values == list(STYLES[family]) and styles.values
    text = " ".join(guide(family).lower().split())
    for style in styles.values:
        assert style.lower() in text, f"{style!r} is not in the {family} guide"


async def test_style_matches_a_prefix_first_then_a_later_word(connect: Connect) -> None:
    async with connect() as client:
        film = await complete(client, prompt("flux-dev"), "style", "FILM")
        water = await complete(client, prompt("flux-dev"), "style", "wat")
        lino = await complete(client, prompt("krea-2"), "style", "lino")

    assert film.values == ["35mm film photograph"]
    assert water.values == ["watercolor illustration"]
    assert lino.values == ["linocut"]


async def test_the_subject_has_no_suggestions(connect: Connect) -> None:
    async with connect() as client:
        subject = await complete(client, prompt("flux-krea-dev"), "subject", "a light")

    assert subject.values == []


async def test_the_guide_template_completes_model_families(connect: Connect) -> None:
    async with connect() as client:
        every = await complete(client, template("fluxroute://guides/{model}"), "model")
        flux = await complete(client, template("fluxroute://guides/{model}"), "model", "flux-")
        krea = await complete(client, template("fluxroute://guides/{model}"), "model", "KREA")

    assert every.values == FAMILIES
    assert flux.values == ["flux-krea-dev", "flux-dev", "flux-schnell", "flux-kontext-dev"]
    assert krea.values == ["krea-2"]


async def test_job_and_image_ids_come_from_the_store_newest_first(connect: Connect, krea_fake: KreaFake) -> None:
    async with connect() as client:
        made = []
        for subject in ("a fox", "a heron"):
            result = await client.call_tool("generate_image", {"prompt": subject, "provider": "krea"})
            assert result.structured_content is not None, result
            made.append(result.structured_content["job_id"])
        jobs = await complete(client, template("fluxroute://jobs/{job_id}"), "job_id")
        one = await complete(client, template("fluxroute://jobs/{job_id}"), "job_id", made[0][:12])
        pngs = await complete(client, template("fluxroute://images/{image_id}.png"), "image_id")
        jpegs = await complete(client, template("fluxroute://images/{image_id}.jpeg"), "image_id")
        read = await client.read_resource(f"fluxroute://images/{pngs.values[0]}.png")

    assert jobs.values == made[::-1] and jobs.total == 2
    assert one.values == [made[0]]
    assert pngs.values == [f"{job_id}-0" for job_id in made[::-1]]
    assert jpegs.values == []  # the fake's images were saved as png
    assert read.contents  # a completed image id names an image the server serves


async def test_job_ids_are_filtered_by_prefix_among_the_recent_jobs(hosted_settings: Settings) -> None:
    router = Router(hosted_settings)
    made = [router.store.create_job({"prompt": f"a fox {n}"})[0].id for n in range(5)]
    target = made[2]
    prefix = next(target[:n] for n in range(1, 33) if sum(job.startswith(target[:n]) for job in made) == 1)

    async with Client(build_server(hosted_settings, router), mode="legacy") as client:
        found = await complete(client, template("fluxroute://jobs/{job_id}"), "job_id", prefix)
        upper = await complete(client, template("fluxroute://jobs/{job_id}"), "job_id", prefix.upper())
        nothing = await complete(client, template("fluxroute://jobs/{job_id}"), "job_id", "not-hex")

    assert found.values == [target] and found.total == 1
    assert upper.values == [target]
    assert nothing.values == []


@pytest.mark.parametrize(
    ("ref", "argument"),
    [
        (PromptReference(type="ref/prompt", name="test_prompt_with_arguments"), "arg1"),
        (PromptReference(type="ref/prompt", name="no-such-family-prompt"), "style"),
        (PromptReference(type="ref/prompt", name="krea-2-prompt"), "colour"),
        (ResourceTemplateReference(type="ref/resource", uri="fluxroute://nothing/{x}"), "x"),
        (ResourceTemplateReference(type="ref/resource", uri="fluxroute://guides/{model}"), "family"),
        (ResourceTemplateReference(type="ref/resource", uri="fluxroute://models"), "model"),
    ],
)
async def test_an_unknown_prompt_template_or_argument_completes_to_nothing(
    connect: Connect, ref: PromptReference | ResourceTemplateReference, argument: str
) -> None:
    async with connect() as client:
        result = await complete(client, ref, argument, "a")

    assert result.values == [] and result.total == 0 and result.has_more is False
