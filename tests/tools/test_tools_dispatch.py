"""Tests for ToolLibrary.dispatch: validated calls reach the router and come back as output models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import BaseModel, SecretStr

from fluxroute.errors import InvalidRequest
from fluxroute.providers.base import Availability, Progress, ProgressCallback
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.tools import GenerateOutput, ModelsOutput, PlanOutput, ToolLibrary, get_tool
from fluxroute.types import GeneratedImage, GenerationResult, ImageRequest

EVERYTHING_AVAILABLE = {"krea": Availability(True), "fal": Availability(True), "local": Availability(True)}
LICENSE_REASON = (
    "FLUX.1 [dev] Non-Commercial License and usage=commercial; "
    "set local_commercial_license = true only if you hold your own commercial license"
)


class RecordingRouter(Router):
    """A Router whose generate records the request and answers from the plan, calling no provider."""

    def __init__(self, settings: Settings, availability: dict[str, Availability]) -> None:
        super().__init__(settings, availability=availability)
        self.generated: list[ImageRequest] = []

    async def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
        on_job: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        self.generated.append(request)
        if on_job is not None:
            on_job("job-1")
        if progress is not None:
            await progress(Progress(provider="krea", status="running", message="step 1/25"))
        plan = self.plan(request)
        assert plan.chosen is not None
        chosen = plan.chosen
        image = GeneratedImage(path="/images/a.png", width=chosen.width, height=chosen.height, format="png", seed=7)
        return GenerationResult(
            job_id="job-1",
            images=[image],
            provider=chosen.provider,
            model=chosen.model,
            offer_id=chosen.offer_id,
            cost_usd=chosen.cost_usd,
            seed=7,
            plan=plan,
            warnings=["prompt rewritten"],
        )


@pytest.fixture
def router(tmp_path: Path) -> RecordingRouter:
    return RecordingRouter(Settings(home=tmp_path), availability=dict(EVERYTHING_AVAILABLE))


@pytest.fixture
def library(router: RecordingRouter) -> ToolLibrary:
    return ToolLibrary(router)


def assert_matches_output_schema(tool: str, output: BaseModel) -> None:
    """The structured content an MCP client receives must validate against the tool's outputSchema."""
    Draft202012Validator(get_tool(tool).output_schema).validate(output.model_dump(mode="json"))


async def test_plan_image_route_returns_the_offer_the_router_would_choose(
    library: ToolLibrary, router: RecordingRouter
) -> None:
    output = await library.dispatch("plan_image_route", {"prompt": "a fox at dusk", "size": "16:9"})

    expected = router.plan(ImageRequest(prompt="a fox at dusk", aspect_ratio="16:9"))
    assert isinstance(output, PlanOutput)
    assert output.chosen is not None and expected.chosen is not None
    assert (output.chosen.offer_id, output.chosen.cost_usd) == (expected.chosen.offer_id, expected.chosen.cost_usd)
    assert (output.chosen.width, output.chosen.height) == (expected.chosen.width, expected.chosen.height)
    assert [f.label for f in output.fallbacks] == [c.label for c in expected.candidates[1:]]
    assert output.explanation == expected.explanation
    assert_matches_output_schema("plan_image_route", output)


async def test_commercial_use_never_routes_to_non_commercial_local_weights_and_says_why(library: ToolLibrary) -> None:
    output = await library.dispatch("plan_image_route", {"prompt": "a fox", "usage": "commercial"})

    assert isinstance(output, PlanOutput)
    # model auto never picks FLUX.1 [schnell]; no other local weights allow commercial use undeclared
    assert output.chosen is not None and output.chosen.provider != "local"
    rejected = {r.label: r.reasons for r in output.rejections}
    assert rejected["local flux-dev"] == [LICENSE_REASON]
    assert rejected["local flux-krea-dev"] == [LICENSE_REASON]


async def test_non_commercial_use_may_run_on_free_local_weights(library: ToolLibrary) -> None:
    output = await library.dispatch("plan_image_route", {"prompt": "a fox", "usage": "non-commercial"})

    assert isinstance(output, PlanOutput)
    assert output.chosen is not None and output.chosen.provider == "local"
    assert output.chosen.cost_usd == 0


async def test_a_plan_with_nothing_configured_lists_what_would_fit_and_why_not(tmp_path: Path) -> None:
    library = ToolLibrary(Router(Settings(home=tmp_path), availability={}))

    output = await library.dispatch("plan_image_route", {"prompt": "a fox"})

    assert isinstance(output, PlanOutput)
    assert output.chosen is None
    assert output.unavailable and all(u.reason == "provider not registered" for u in output.unavailable)
    assert_matches_output_schema("plan_image_route", output)


async def test_plan_image_route_refuses_a_model_the_catalog_lacks(library: ToolLibrary) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await library.dispatch("plan_image_route", {"prompt": "a fox", "model": "sdxl"})

    (error,) = caught.value.errors
    assert (error.field, error.value) == ("model", "sdxl")
    assert "flux-krea-dev" in error.allowed


async def test_list_image_models_lists_every_offer_with_availability_and_reason(tmp_path: Path) -> None:
    availability = {**EVERYTHING_AVAILABLE, "local": Availability(False, "no CUDA GPU found")}
    router = Router(
        Settings(home=tmp_path, fal_key=SecretStr("k"), krea_api_token=SecretStr("t")), availability=availability
    )

    output = await ToolLibrary(router).dispatch("list_image_models", {})

    assert isinstance(output, ModelsOutput)
    offers = {offer.offer_id: offer for model in output.models for offer in model.offers}
    assert set(offers) == {offer.id for offer in router.catalog.offers}
    assert [m.id for m in output.models] == [
        "flux-krea-dev",
        "flux-dev",
        "krea-2",
        "flux-schnell",
        "flux-kontext-dev",
        *("real-esrgan", "seedvr2", "aura-sr", "topaz", "clarity-upscaler", "krea-enhance"),  # the upscalers
    ]
    assert offers["fal-esrgan"].modes == ["upscale"]
    assert offers["fal-esrgan"].price_unit == "per compute-second (settled at the compute time the provider reports)"
    assert offers["krea-flux-1-dev"].modes == ["text-to-image", "image-to-image", "variation"]
    assert offers["fal-flux-kontext-dev"].price_usd is None  # not published: set [prices] to use it
    local = offers["local-flux-dev"]
    assert (local.available, local.reason, local.commercial_use) == (False, "no CUDA GPU found", False)
    krea = offers["krea-flux-1-dev"]
    assert (krea.available, krea.reason, krea.commercial_use) == (True, None, True)
    assert (krea.price_usd, krea.price_unit, krea.price_as_of) == (0.007, "per image", "2026-08-01")
    assert offers["fal-flux-dev"].price_unit == "per megapixel, rounded up per image"
    assert_matches_output_schema("list_image_models", output)


async def test_list_image_models_says_why_a_provider_without_a_key_is_unavailable(tmp_path: Path) -> None:
    router = Router(Settings(home=tmp_path, krea_api_token=SecretStr("t")))

    output = await ToolLibrary(router).dispatch("list_image_models", {"model": "flux-krea-dev"})

    assert isinstance(output, ModelsOutput)
    (model,) = output.models
    fal = next(offer for offer in model.offers if offer.offer_id == "fal-flux-krea")
    assert fal.available is False
    assert fal.reason is not None and "FAL_KEY is not set" in fal.reason


async def test_list_image_models_can_hide_offers_that_cannot_run_here(tmp_path: Path) -> None:
    availability = {**EVERYTHING_AVAILABLE, "fal": Availability(False, "FAL_KEY is not set")}
    library = ToolLibrary(Router(Settings(home=tmp_path), availability=availability))

    output = await library.dispatch("list_image_models", {"include_unavailable": False})

    assert isinstance(output, ModelsOutput)
    providers = {offer.provider for model in output.models for offer in model.offers}
    assert providers == {"krea", "local"}


async def test_list_image_models_refuses_an_unknown_model_filter(library: ToolLibrary) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await library.dispatch("list_image_models", {"model": "sdxl"})

    (error,) = caught.value.errors
    assert (error.field, error.value, error.allowed) == (
        "model",
        "sdxl",
        "one of: flux-krea-dev, flux-dev, krea-2, flux-schnell, flux-kontext-dev, real-esrgan, seedvr2, aura-sr, "
        "topaz, clarity-upscaler, krea-enhance",
    )


async def test_an_unknown_tool_name_is_an_invalid_request(library: ToolLibrary) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await library.dispatch("delete_everything", {})

    assert caught.value.errors[0].field == "name"


async def test_generate_image_refuses_invalid_arguments_before_anything_runs(
    library: ToolLibrary, router: RecordingRouter
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await library.dispatch("generate_image", {"prompt": "a fox", "num_images": 5, "colour": "red"})

    assert [e.field for e in caught.value.errors] == ["num_images", "colour"]
    assert router.generated == []


async def test_generate_image_hands_the_request_and_progress_to_the_router_and_reports_the_result(
    library: ToolLibrary, router: RecordingRouter
) -> None:
    heard: list[Progress] = []

    async def listen(event: Progress) -> None:
        heard.append(event)

    output = await library.dispatch(
        "generate_image", {"prompt": "a fox", "model": "flux-dev", "seed": None, "usage": "commercial"}, progress=listen
    )

    assert [event.message for event in heard] == ["step 1/25"]
    assert router.generated == [ImageRequest(prompt="a fox", model="flux-dev", usage="commercial")]
    assert isinstance(output, GenerateOutput)
    assert (output.job_id, output.provider, output.seed, output.warnings) == ("job-1", "krea", 7, ["prompt rewritten"])
    assert output.images[0].path == "/images/a.png"
    assert output.explanation.startswith("size: ")
    assert_matches_output_schema("generate_image", output)
