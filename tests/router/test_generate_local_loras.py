"""Local LoRAs end to end on the tiny FLUX pipeline (CPU): a LoRA registered in local_loras changes the image, is
unloaded after its job (the next job gives a fresh run's pixels), applies to edits made with from_pipe too; an https
URL or a LoRA not on this machine is refused before anything runs, and the router moves on to an offer that can take
it. Local costs $0 in the ledger."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import AllProvidersFailed, NoRouteError
from fluxroute.providers.local import LocalProvider, LocalWorker
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.fal import FalFake
from tests.router.test_generate_local_edits import png_uri

INK = "tests/tiny-ink"
SMALL = {"prompt": "a lighthouse at dusk", "provider": "local", "width": 64, "height": 64, "steps": 2, "seed": 5}


@pytest.fixture
def lora_settings(local_settings: Settings, tiny_flux_lora: Path, tiny_flux_lora_2: Path) -> Settings:
    loras = {INK: tiny_flux_lora, "tests/tiny-folder": tiny_flux_lora_2.parent}
    return local_settings.model_copy(update={"local_loras": loras})


async def generate(settings: Settings, worker: LocalWorker, **fields: object) -> tuple[GenerationResult, Router]:
    router = Router(settings, providers={"local": LocalProvider(settings, worker=worker)})
    try:
        return await router.generate(ImageRequest.parse({**SMALL, **fields})), router
    finally:
        await router.aclose()


def pixels(result: GenerationResult) -> bytes:
    return Image.open(str(result.images[0].path)).tobytes()


async def test_a_registered_lora_changes_the_image_and_is_unloaded_after_its_job(
    lora_settings: Settings, local_worker: LocalWorker
) -> None:
    base, _ = await generate(lora_settings, local_worker)
    styled, router = await generate(lora_settings, local_worker, loras=[{"ref": INK, "scale": 1.0}])
    assert (styled.provider, styled.offer_id, styled.cost_usd) == ("local", "local-flux-krea-dev", 0)
    chosen = styled.plan.chosen
    assert chosen is not None and chosen.params["loras"] == [{"ref": INK, "scale": 1.0}]
    # the tiny LoRA touches only to_q / to_k / to_v: it shows only if the fused QKV projections were unfused for it
    assert pixels(styled) != pixels(base)
    assert router.store.spend_summary().spent_total == Decimal(0)
    after, _ = await generate(lora_settings, local_worker)
    assert pixels(after) == pixels(base)  # unloaded: the same pixels as a run that never saw the LoRA


async def test_scales_and_several_loras_are_applied_together(
    lora_settings: Settings, local_worker: LocalWorker
) -> None:
    full, _ = await generate(lora_settings, local_worker, loras=[{"ref": INK, "scale": 1.0}])
    half, _ = await generate(lora_settings, local_worker, loras=[{"ref": INK, "scale": 0.5}])
    # a folder in local_loras: its pytorch_lora_weights.safetensors
    both, _ = await generate(
        lora_settings, local_worker, loras=[{"ref": INK, "scale": 1.0}, {"ref": "tests/tiny-folder", "scale": 1.0}]
    )
    assert len({pixels(full), pixels(half), pixels(both)}) == 3
    again, _ = await generate(lora_settings, local_worker, loras=[{"ref": INK, "scale": 0.5}])
    assert pixels(again) == pixels(half)


async def test_an_edit_made_with_from_pipe_takes_the_lora_too(
    lora_settings: Settings, local_worker: LocalWorker
) -> None:
    image = png_uri(64, 64, (200, 30, 30))
    plain, _ = await generate(lora_settings, local_worker, init_image=image)
    styled, router = await generate(lora_settings, local_worker, init_image=image, loras=[{"ref": INK}])
    chosen = styled.plan.chosen
    assert chosen is not None and chosen.params["mode"] == "image-to-image"
    assert pixels(styled) != pixels(plain)
    again, _ = await generate(lora_settings, local_worker, init_image=image)
    assert pixels(again) == pixels(plain)
    assert router.store.spend_summary().spent_total == Decimal(0)


async def test_a_lora_by_url_is_refused_by_the_plan_for_every_local_offer(lora_settings: Settings) -> None:
    request = ImageRequest.parse({**SMALL, "loras": [{"ref": "https://example.com/ink.safetensors?token=secret"}]})
    with pytest.raises(NoRouteError) as refused:
        await Router(lora_settings).generate(request)
    local = [reason for reason in refused.value.reasons if reason.startswith("local ")]
    assert local and all("loads LoRAs found on this machine only" in reason for reason in local)
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("someone/not-here", "not on this machine"),
        ("tests/tiny-folder/../../../etc/passwd", "no '.' or '..' parts"),
    ],
)
async def test_a_lora_not_on_this_machine_is_refused_before_anything_runs(
    lora_settings: Settings, local_worker: LocalWorker, monkeypatch: pytest.MonkeyPatch, ref: str, reason: str
) -> None:
    def never(*args: object) -> None:
        raise AssertionError("a job was queued")

    monkeypatch.setattr(local_worker, "submit", never)
    router = Router(lora_settings, providers={"local": LocalProvider(lora_settings, worker=local_worker)})
    try:
        with pytest.raises(AllProvidersFailed) as failed:
            await router.generate(ImageRequest.parse({**SMALL, "loras": [{"ref": ref}]}))
    finally:
        await router.aclose()
    # each local offer the request could run on (FLUX.1 Krea [dev], then FLUX.1 [dev]) says why, unbilled
    for error in failed.value.failures:
        assert reason in str(error) and "nothing was run" in str(error) and error.billing == "unbilled"
        assert "secret" not in str(error)
    (job,) = router.store.list_jobs(limit=1)
    assert {a.status for a in router.store.attempts_for(job.id)} == {"failed"}
    assert router.store.spend_summary().spent_total == Decimal(0)


async def test_a_lora_url_goes_to_an_offer_that_downloads_it(
    hosted_settings: Settings, fal_fake: FalFake, lora_settings: Settings, local_worker: LocalWorker
) -> None:
    local = {k: getattr(lora_settings, k) for k in ("local_model", "local_device", "usage", "local_loras")}
    prices = {"fal-flux-krea-lora": "0.035"}
    settings = hosted_settings.model_copy(update={**local, "prices": prices})
    router = Router(settings, providers={"local": LocalProvider(settings, worker=local_worker)})
    url = "https://example.com/ink.safetensors"
    try:
        request = ImageRequest(prompt="a fox in the snow", model="flux-krea-dev", loras=({"ref": url},))  # type: ignore[arg-type]
        plan = router.plan(request)
        assert [c.offer_id for c in plan.candidates] == ["fal-flux-krea-lora"]  # local is refused by the plan
        result = await router.generate(request)
    finally:
        await router.aclose()
    assert result.offer_id == "fal-flux-krea-lora"
    (job,) = fal_fake.jobs
    assert job.input["loras"] == [{"path": url, "scale": 1.0}]
    attempts = router.store.attempts_for(result.job_id)
    assert [(a.provider, a.status) for a in attempts] == [("fal", "succeeded")]
    assert router.store.spend_summary().spent_total == fal_fake.billed == Decimal("0.035")
