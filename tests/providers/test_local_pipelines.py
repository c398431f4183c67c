"""The local provider on each pipeline class it runs (tiny random-weight folders on the CPU): FLUX.1 [schnell]-style
FluxPipeline (4 steps, guidance 0) and Krea2Pipeline (Krea 2 Turbo-style); per-image seeds; weights found per
offer through `local_models`; a folder declaring a class fluxroute does not run is refused."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import ConfigError, ProviderUnavailable
from fluxroute.providers.availability import local_availability_by_repo
from fluxroute.providers.base import Progress, ProviderResult
from fluxroute.providers.local import LocalProvider
from fluxroute.providers.local_weights import find_weights
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import Candidate, ImageRequest

SCHNELL = "black-forest-labs/FLUX.1-schnell"
TURBO = "krea/Krea-2-Turbo"
RAW = "krea/Krea-2-Raw"
KREA_DEV = "black-forest-labs/FLUX.1-Krea-dev"
DEV = "black-forest-labs/FLUX.1-dev"


class Steps:
    def __init__(self) -> None:
        self.events: list[Progress] = []

    async def __call__(self, event: Progress) -> None:
        self.events.append(event)

    @property
    def steps(self) -> list[int]:
        return [e.step for e in self.events if e.step is not None]


def planned(settings: Settings, **fields: object) -> Candidate:
    request = ImageRequest.parse({"prompt": "a lighthouse at dusk", "provider": "local", **fields})
    chosen = Router(settings).plan(request).chosen
    assert chosen is not None
    return chosen


def with_params(candidate: Candidate, **params: object) -> Candidate:
    return candidate.model_copy(update={"params": {**candidate.params, **params}})


def at_64(candidate: Candidate, **params: object) -> Candidate:
    """The planned call at 64x64 (the catalog's Krea 2 offers start at 512 px; the tiny weights need no more)."""
    return with_params(candidate, width=64, height=64, **params)


async def run(settings: Settings, candidate: Candidate, progress: Steps | None = None) -> ProviderResult:
    provider = LocalProvider(settings)
    try:
        job_id = await provider.submit(candidate)
        return await provider.wait(job_id, candidate, progress, timeout_s=60)
    finally:
        await provider.aclose()


def pixels(result: ProviderResult, index: int) -> bytes:
    return Image.open(io.BytesIO(result.images[index].data)).tobytes()


@pytest.fixture
def schnell_settings(tiny_schnell_path: Path, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", local_models={SCHNELL: tiny_schnell_path}, local_device="cpu")


@pytest.fixture
def krea2_settings(tiny_krea2_path: Path, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", local_models={TURBO: tiny_krea2_path}, local_device="cpu", usage="non-commercial"
    )


async def test_schnell_weights_run_four_steps_without_guidance_and_seed_each_image(
    schnell_settings: Settings,
) -> None:
    candidate = planned(schnell_settings, model="flux-schnell", width=64, height=64, num_images=2, seed=5)
    assert candidate.offer_id == "local-flux-schnell"
    assert (candidate.params["num_inference_steps"], candidate.params["guidance_scale"]) == (4, 0)
    progress = Steps()
    result = await run(schnell_settings, candidate, progress)
    assert progress.steps == [1, 2, 3, 4]
    assert all(e.total_steps == 4 for e in progress.events if e.step is not None)
    assert (result.seed, result.seeds, len(result.images)) == (5, [5, 6], 2)
    assert pixels(result, 0) != pixels(result, 1)
    # image 1 of the batch is made again alone from its own seed
    alone = await run(schnell_settings, with_params(candidate, seed=6, num_images_per_prompt=1))
    assert alone.seeds == [6] and Image.open(io.BytesIO(alone.images[0].data)).size == (64, 64)


async def test_krea_2_weights_load_as_krea2pipeline_and_report_every_step(krea2_settings: Settings) -> None:
    turbo = planned(krea2_settings, model="krea-2", num_images=2, seed=3)
    assert turbo.offer_id == "local-krea-2-turbo"
    assert (turbo.params["num_inference_steps"], turbo.params["guidance_scale"]) == (8, 0)
    candidate = at_64(turbo, num_inference_steps=3)  # fewer steps than Turbo's 8: the tiny weights run on a CPU
    progress = Steps()
    result = await run(krea2_settings, candidate, progress)
    assert progress.events[0].status == "IN_QUEUE" and progress.events[-1].status == "COMPLETED"
    assert any("loading" in e.message for e in progress.events)
    assert progress.steps == [1, 2, 3] and {e.total_steps for e in progress.events if e.step} == {3}
    assert (result.seed, result.seeds) == (3, [3, 4])
    assert [(i.width, i.height, i.content_type) for i in result.images] == [(64, 64, "image/png")] * 2
    # the review mark applies to every local pipeline (no content checker configured)
    assert result.review is not None
    # image 1 of the batch, made again alone from its own seed, is the same image
    alone = await run(krea2_settings, with_params(candidate, seed=4, num_images_per_prompt=1))
    assert pixels(alone, 0) == pixels(result, 1)


def test_only_the_arguments_a_pipeline_takes_are_passed(tiny_krea2_path: Path) -> None:
    import diffusers

    from fluxroute.providers.local_pipeline import accepted_arguments, pipeline_arguments

    # the local wire adds FluxPipeline's true_cfg_scale with a negative prompt; Krea2Pipeline has no such argument
    params: dict[str, object] = {"prompt": "a fox", "negative_prompt": "blur", "true_cfg_scale": 4.0, "seed": 9}
    krea2 = pipeline_arguments({**params, "num_images_per_prompt": 3}, 9, accepted_arguments(diffusers.Krea2Pipeline))
    assert set(krea2) == {"prompt", "negative_prompt", "num_images_per_prompt", "generator"}
    assert [g.initial_seed() for g in krea2["generator"]] == [9, 10, 11]
    flux = pipeline_arguments(params, 9, accepted_arguments(diffusers.FluxPipeline))
    assert flux["true_cfg_scale"] == 4.0 and len(flux["generator"]) == 1


async def test_a_folder_declaring_an_unknown_pipeline_class_is_refused_with_the_reason(
    tiny_schnell_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "sdxl"
    shutil.copytree(tiny_schnell_path, folder)
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    (folder / "model_index.json").write_text(
        json.dumps({**index, "_class_name": "StableDiffusionXLPipeline"}), encoding="utf-8"
    )
    settings = Settings(home=tmp_path / "home", local_models={SCHNELL: folder}, local_device="cpu")
    path, reason = find_weights(settings, [SCHNELL])
    assert path is None
    assert reason.startswith(f"the weights at {folder} declare StableDiffusionXLPipeline")
    assert "fluxroute runs: FluxPipeline" in reason and "Krea2Pipeline" in reason
    assert not local_availability_by_repo(settings, [SCHNELL])[SCHNELL].ok
    candidate = planned(
        settings.model_copy(update={"local_models": {SCHNELL: tiny_schnell_path}}),
        model="flux-schnell",
        width=64,
        height=64,
    )
    with pytest.raises(ProviderUnavailable, match="StableDiffusionXLPipeline"):
        await LocalProvider(settings).submit(candidate)
    # and the loader itself refuses it, should a folder change after it was found
    from fluxroute.providers.local_pipeline import pipeline_class

    with pytest.raises(ConfigError, match="StableDiffusionXLPipeline"):
        pipeline_class(folder)


def test_local_models_maps_each_offer_to_its_own_weights(
    tiny_schnell_path: Path, tiny_krea2_path: Path, tiny_flux_path: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        local_models={SCHNELL: tiny_schnell_path, TURBO: tiny_krea2_path},
        local_model=tiny_flux_path,
        local_device="cpu",
    )
    assert find_weights(settings, [SCHNELL]) == (tiny_schnell_path, "")
    assert find_weights(settings, [TURBO]) == (tiny_krea2_path, "")
    # FLUXROUTE_LOCAL_MODEL keeps serving FLUX.1 Krea [dev] and [dev], and only them
    assert find_weights(settings, [KREA_DEV]) == (tiny_flux_path, "")
    assert find_weights(settings, [DEV]) == (tiny_flux_path, "")
    by_repo = local_availability_by_repo(settings, [SCHNELL, TURBO, RAW, KREA_DEV])
    assert {repo: a.ok for repo, a in by_repo.items()} == {SCHNELL: True, TURBO: True, RAW: False, KREA_DEV: True}
    assert "the Hugging Face cache holds none of: krea/Krea-2-Raw" in by_repo[RAW].reason
    # a mapping wins over FLUXROUTE_LOCAL_MODEL for the repo it names
    mapped = settings.model_copy(update={"local_models": {DEV: tiny_schnell_path}})
    assert find_weights(mapped, [DEV]) == (tiny_schnell_path, "")
    missing = settings.model_copy(update={"local_models": {RAW: tmp_path / "nowhere"}})
    path, reason = find_weights(missing, [RAW])
    nowhere = tmp_path / "nowhere"
    assert (
        path is None
        and reason == f"no diffusers pipeline at {nowhere} (local_models['{RAW}']; model_index.json missing)"
    )


def test_local_models_is_read_from_the_environment_as_json_and_from_the_file_as_a_table(tmp_path: Path) -> None:
    env = {"FLUXROUTE_CONFIG": "none", "FLUXROUTE_LOCAL_MODELS": json.dumps({TURBO: "/models/turbo"})}
    assert Settings.load(env).local_models == {TURBO: Path("/models/turbo")}
    config = tmp_path / "fluxroute.toml"
    config.write_text(f'[local_models]\n"{SCHNELL}" = "/models/schnell"\n', encoding="utf-8")
    assert Settings.load({}, config_file=config).local_models == {SCHNELL: Path("/models/schnell")}
    with pytest.raises(ConfigError, match=r"FLUXROUTE_LOCAL_MODELS: .*not a JSON object"):
        Settings.load({"FLUXROUTE_CONFIG": "none", "FLUXROUTE_LOCAL_MODELS": "/models/turbo"})


async def test_the_router_runs_krea_2_turbo_where_only_its_weights_are_mapped(
    krea2_settings: Settings, tmp_path: Path
) -> None:
    router = Router(krea2_settings)
    assert router.availability["local"].ok
    try:
        request = {"prompt": "a fox in the snow", "provider": "local", "model": "krea-2", "steps": 1, "seed": 2}
        result = await router.generate(ImageRequest.parse({**request, "width": 512, "height": 512}))
    finally:
        await router.aclose()
    assert (result.offer_id, result.seed, result.cost_usd) == ("local-krea-2-turbo", 2, 0)
    assert Image.open(str(result.images[0].path)).size == (512, 512)
