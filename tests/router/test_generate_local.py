"""Router.generate on local weights (a tiny FLUX pipeline on the CPU): license gate, progress, review mark, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import Cancelled, NoRouteError
from fluxroute.providers.base import Progress
from fluxroute.providers.local import UNFILTERED, LocalProvider, LocalWorker
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.tiny_flux import StepGate

SMALL = {"prompt": "a lighthouse at dusk", "provider": "local", "width": 64, "height": 64, "steps": 2}


def local_router(settings: Settings, worker: LocalWorker) -> Router:
    return Router(settings, providers={"local": LocalProvider(settings, worker=worker)})


async def generate(router: Router, progress: object = None, **fields: object) -> GenerationResult:
    try:
        return await router.generate(ImageRequest.parse({**SMALL, **fields}), progress=progress)  # type: ignore[arg-type]
    finally:
        await router.aclose()


async def test_non_commercial_use_generates_locally_with_progress_and_a_review_mark(
    local_settings: Settings, local_worker: LocalWorker
) -> None:
    events: list[Progress] = []

    async def progress(event: Progress) -> None:
        events.append(event)

    router = local_router(local_settings, local_worker)
    result = await generate(router, progress, seed=11)
    assert (result.provider, result.offer_id, result.cost_usd, result.seed) == ("local", "local-flux-krea-dev", 0, 11)
    image = result.images[0]
    assert image.path is not None and Image.open(image.path).size == (64, 64)
    assert events[0].status == "IN_QUEUE"
    assert [e.step for e in events if e.step is not None] == [1, 2]
    assert any(w.startswith(UNFILTERED) for w in result.warnings)
    assert read_parameters(Path(image.path))["review"] == UNFILTERED
    assert router.store.get_job(result.job_id).status == "succeeded"
    assert "inference_s" in result.timings


async def test_commercial_use_never_routes_to_the_non_commercial_weights(
    local_settings: Settings, local_worker: LocalWorker
) -> None:
    router = local_router(local_settings, local_worker)
    with pytest.raises(NoRouteError) as info:
        await generate(router, usage="commercial", model="flux-krea-dev")
    assert "local flux-krea-dev: FLUX.1 [dev] Non-Commercial License and usage=commercial" in str(info.value)


async def test_a_declared_commercial_license_lets_commercial_use_run_locally(
    local_settings: Settings, local_worker: LocalWorker
) -> None:
    settings = local_settings.model_copy(update={"local_commercial_license": True})
    result = await generate(local_router(settings, local_worker), usage="commercial")
    assert result.provider == "local" and result.plan.usage == "commercial"


async def test_the_same_seed_through_the_router_gives_the_same_pixels(
    local_settings: Settings, local_worker: LocalWorker
) -> None:
    first = await generate(local_router(local_settings, local_worker), seed=7, model="flux-dev")
    second = await generate(local_router(local_settings, local_worker), seed=7, model="flux-dev")
    assert first.offer_id == "local-flux-dev"
    paths = [r.images[0].path for r in (first, second)]
    assert paths[0] != paths[1]
    assert Image.open(str(paths[0])).tobytes() == Image.open(str(paths[1])).tobytes()


async def test_cancelling_a_generation_stops_the_local_job_and_the_next_one_runs(
    local_settings: Settings, local_worker: LocalWorker, step_gate: StepGate
) -> None:
    reached = asyncio.Event()

    async def progress(event: Progress) -> None:
        if event.step == 1:
            reached.set()

    router = local_router(local_settings, local_worker)
    step_gate.hold_at(1)
    task = asyncio.create_task(router.generate(ImageRequest.parse({**SMALL, "steps": 4}), progress=progress))
    await asyncio.wait_for(reached.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    step_gate.release()
    jobs = router.store.list_jobs(limit=1)
    assert jobs[0].status == "cancelled"
    attempts = router.store.attempts_for(jobs[0].id)
    assert [a.status for a in attempts] == ["cancelled"]
    result = await generate(router, seed=2)  # queued behind the cancelled job, so that one has ended
    assert len(result.images) == 1
    stopped = local_worker.job(str(attempts[0].provider_job_id))
    assert stopped is not None and isinstance(stopped.outcome, Cancelled)


async def test_each_saved_image_carries_its_own_seed(local_settings: Settings, local_worker: LocalWorker) -> None:
    router = local_router(local_settings, local_worker)
    result = await generate(router, seed=21, model="flux-krea-dev", num_images=2)
    assert [image.seed for image in result.images] == [21, 22]
    assert [read_parameters(Path(str(image.path)))["seed"] for image in result.images] == [21, 22]
    assert result.seed == 21


def test_a_local_offer_is_available_only_where_its_own_weights_are(local_settings: Settings) -> None:
    # local_model serves FLUX.1 Krea [dev] and FLUX.1 [dev]; nothing is configured or cached for schnell
    router = Router(local_settings)
    asked = {"prompt": "a heron", "provider": "local", "width": 64, "height": 64}
    plan = router.plan(ImageRequest.parse(asked))
    assert "local-flux-krea-dev" in {c.offer_id for c in plan.candidates}
    schnell = router.plan(ImageRequest.parse({**asked, "model": "flux-schnell"}))
    assert schnell.chosen is None
    assert [(c.offer_id, bool(c.unavailable_reason)) for c in schnell.unavailable] == [("local-flux-schnell", True)]
