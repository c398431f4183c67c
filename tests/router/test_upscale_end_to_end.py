"""upscale_image end to end: through the fal fake, the Krea fake and the tiny local model; generate -> upscale by
reference with the lineage stored and embedded; the ledger equal to what the fakes billed (prices set apart in
the fake and in the user's config where the provider publishes none); a per-compute-second price settled at the
compute time fal reports, or at the estimate, marked, when it reports none."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.router import Router
from fluxroute.router.input_images import image_file_uri
from fluxroute.settings import Settings
from fluxroute.store.images import read_parameters
from fluxroute.tools import ToolLibrary
from fluxroute.tools.outputs import FinalOutput, GenerateOutput
from fluxroute.types import ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.fakes.tiny_esrgan import build_tiny_esrgan

PROMPT = "a lighthouse on a cliff at dusk"
LOCAL_REF = "ai-forever/Real-ESRGAN/RealESRGAN_x4.pth"
MICRO = Decimal("0.000001")


def upscale(image: str, **fields: object) -> ImageRequest:
    return ImageRequest.parse({"prompt": PROMPT, "init_image": image, "task": "upscale", **fields})


def size_of(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


async def test_generate_then_upscale_by_reference_on_fal_keeps_lineage_source_and_exact_money(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    router = Router(hosted_settings)
    try:
        source = await router.generate(ImageRequest(prompt=PROMPT, provider="krea", seed=7, width=1024, height=768))
        upscaled = await router.generate(upscale(f"job:{source.job_id}/0", upscale_factor=4, model="seedvr2"))
    finally:
        await router.aclose()

    assert upscaled.offer_id == "fal-seedvr-upscale"
    (job,) = [j for j in fal_fake.jobs if j.model == "fal-ai/seedvr/upscale/image"]
    assert job.input["upscale_factor"] == 4.0 and job.input["upscale_mode"] == "factor"
    source_size = size_of(source.images[0].path)
    assert size_of(upscaled.images[0].path) == (source_size[0] * 4, source_size[1] * 4)
    [link] = router.store.lineage(upscaled.job_id)
    assert (link.parent_job_id, link.parent_index, link.relation) == (source.job_id, 0, "upscaled_from")
    embedded = read_parameters(Path(upscaled.images[0].path))
    assert embedded["lineage"] == [f"upscaled_from job:{source.job_id}/0"]
    assert embedded["source"]["prompt"] == PROMPT and embedded["source"]["seed"] == 7  # type: ignore[index]
    assert embedded["source"]["provider"] == "krea"  # type: ignore[index]
    assert embedded["endpoint"] == "fal-ai/seedvr/upscale/image"
    assert router.store.total_charged() == krea_fake.billed + fal_fake.billed
    assert Decimal(str(upscaled.cost_usd)) == fal_fake.billed > 0


async def test_esrgan_is_settled_at_the_compute_time_fal_reports(
    hosted_settings: Settings, fal_fake: FalFake, tmp_path: Path
) -> None:
    source = png_uri(tmp_path / "in.png", (1024, 768))
    router = Router(hosted_settings)
    try:
        result = await router.generate(upscale(source, upscale_factor=2, model="real-esrgan", provider="fal"))
    finally:
        await router.aclose()

    (job,) = fal_fake.jobs
    seconds = fal_fake.reported_inference_time(job.id)
    assert seconds is not None
    assert result.offer_id == "fal-esrgan" and job.input["scale"] == 2.0
    # fal bills 0.00111 x the seconds exactly; the ledger keeps micro-dollars, rounded up, never less
    billed = fal_fake.billed
    assert billed == Decimal("0.00111") * Decimal(str(seconds))
    charged = router.store.total_charged()
    assert Decimal(0) <= charged - billed < Decimal("0.000001")
    assert Decimal(str(result.cost_usd)) == charged
    estimate = Decimal(str(result.plan.candidates[0].cost_usd))
    assert charged != estimate  # settled by fal's own figure, not the reservation
    assert not any("cost estimated" in w for w in result.warnings)
    assert router.store.spend_summary().reserved_today == Decimal(0)


async def test_without_a_reported_compute_time_esrgan_is_charged_its_estimate_and_says_so(
    hosted_settings: Settings, fal_fake: FalFake, tmp_path: Path
) -> None:
    source = png_uri(tmp_path / "in.png", (1024, 768))
    fault = fal_fake.faults.drop_metrics(times=1)
    router = Router(hosted_settings)
    try:
        result = await router.generate(upscale(source, upscale_factor=2, model="real-esrgan", provider="fal"))
    finally:
        await router.aclose()

    assert fal_fake.faults.fired["drop_metrics:submit"] == 1, "the fault did not fire"
    assert fault is not None
    estimate = Decimal(str(result.plan.candidates[0].cost_usd))
    assert router.store.total_charged() == estimate == Decimal(str(result.cost_usd))
    assert any(w.startswith("cost estimated: fal reported no compute time") for w in result.warnings)
    # fal billed what it measured; without that figure the ledger holds the estimate, and the result says so
    print(f"fal billed {fal_fake.billed}; charged at the estimate {estimate}")


async def test_a_generative_upscale_runs_on_fal_clarity_with_creativity_and_prompt(
    hosted_settings: Settings, fal_fake: FalFake, tmp_path: Path
) -> None:
    source = png_uri(tmp_path / "in.png", (640, 480))
    router = Router(hosted_settings)
    try:
        result = await router.generate(
            upscale(source, upscale_factor=2, upscale_method="generative", creativity=0.2, provider="fal")
        )
    finally:
        await router.aclose()

    assert result.offer_id == "fal-clarity-upscaler"
    (job,) = fal_fake.jobs
    assert job.input["creativity"] == 0.2 and job.input["prompt"] == PROMPT and job.input["upscale_factor"] == 2.0
    # $0.03 per output megapixel, rounded up: 1280x960 is 1.2 MP -> 2 MP
    assert router.store.total_charged() == fal_fake.billed == Decimal("0.06")


async def test_krea_upscales_run_once_their_prices_are_set_and_the_ledger_is_what_krea_billed(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    # Krea publishes no enhance prices: the user's config says what the user expects to pay, the fake bills its own
    settings = hosted_settings.model_copy(
        update={"prices": {"krea-topaz-standard": Decimal("0.08"), "krea-enhance": Decimal("0.05")}}
    )
    source = png_uri(tmp_path / "in.png", (800, 600))
    router = Router(settings)
    try:
        faithful = await router.generate(upscale(source, upscale_factor=3, provider="krea"))
        generative = await router.generate(
            upscale(source, upscale_factor=2, upscale_method="generative", creativity=0.5, provider="krea")
        )
    finally:
        await router.aclose()

    assert faithful.offer_id == "krea-topaz-standard"
    assert generative.offer_id == "krea-enhance"  # Topaz Redefine and Bloom: no price set, refused
    topaz, enhance = krea_fake.jobs
    assert topaz.input["width"] == 2400 and topaz.input["height"] == 1800 and topaz.input["model"] == "Standard V2"
    assert enhance.input["image_scaling_factor"] == 2.0 and enhance.input["ai_strength"] == pytest.approx(0.55)
    assert size_of(faithful.images[0].path) == (2400, 1800)
    assert size_of(generative.images[0].path) == (1600, 1200)
    assert "price not published by krea: set [prices] krea-topaz-generative" in generative.plan.explanation
    assert router.store.total_charged() == krea_fake.billed == Decimal("0.13")


async def test_a_local_upscale_runs_the_tiny_model_found_offline(tmp_path: Path) -> None:
    weights = build_tiny_esrgan(tmp_path / "models" / "tiny_x4.safetensors")
    settings = Settings(home=tmp_path / "home", local_upscalers={LOCAL_REF: weights}, local_device="cpu")
    source = png_uri(tmp_path / "in.png", (96, 64))
    router = Router(settings)
    try:
        plan = router.plan(upscale(source, upscale_factor=3), (96, 64))
        assert plan.chosen is not None and plan.chosen.offer_id == "local-realesrgan-x4", plan.explanation
        result = await router.generate(upscale(source, upscale_factor=3))
    finally:
        await router.aclose()

    assert result.offer_id == "local-realesrgan-x4" and result.provider == "local"
    assert size_of(result.images[0].path) == (288, 192)  # the x4 model's output, resized to x3
    assert result.cost_usd == 0 and router.store.total_charged() == 0
    assert read_parameters(Path(result.images[0].path))["params"]["scale"] == 3.0  # type: ignore[index]


async def test_upscale_image_and_finalize_with_upscale_through_the_tools(
    hosted_settings: Settings, fal_fake: FalFake, krea_fake: KreaFake
) -> None:
    library = ToolLibrary(Router(hosted_settings))
    try:
        made = await library.dispatch("generate_image", {"prompt": PROMPT, "provider": "fal"})
        assert isinstance(made, GenerateOutput)
        up = await library.dispatch("upscale_image", {"image": f"job:{made.job_id}/0", "factor": 2, "provider": "fal"})
        assert isinstance(up, GenerateOutput) and up.status == "succeeded", up
        assert up.offer_id == "fal-esrgan"  # x2: cheaper by compute-seconds than seedvr's 5 MP rounded up
        # no prompt given: the source's own (what a prompt-reading upscaler is told, and what names the file)
        assert up.images[0].path is not None and read_parameters(Path(up.images[0].path))["prompt"] == PROMPT
        drafts = await library.dispatch("draft_images", {"prompt": PROMPT, "n": 2, "provider": "fal"})
        final = await library.dispatch(
            "finalize_image",
            {"draft_set_id": drafts.draft_set_id, "index": 2, "upscale": 2, "idempotency_key": "final-2"},  # type: ignore[attr-defined]
        )
        again = await library.dispatch(
            "finalize_image",
            {"draft_set_id": drafts.draft_set_id, "index": 2, "upscale": 2, "idempotency_key": "final-2"},  # type: ignore[attr-defined]
        )
        store = library.router.store  # type: ignore[attr-defined]
    finally:
        await library.aclose()

    assert isinstance(final, FinalOutput) and final.upscaled is not None
    assert final.upscaled.status == "succeeded"
    [link] = store.lineage(final.upscaled.job_id)
    assert (link.parent_job_id, link.relation) == (final.job_id, "upscaled_from")
    assert isinstance(again, FinalOutput) and again.upscaled is not None
    assert (again.job_id, again.upscaled.job_id) == (final.job_id, final.upscaled.job_id)  # the key: paid once
    # esrgan's micro-dollar rounding up (once per job) is the one difference allowed between ledger and bills
    esrgan_jobs = sum(job.model == "fal-ai/esrgan" for job in fal_fake.jobs)
    assert esrgan_jobs >= 2
    assert Decimal(0) <= store.total_charged() - (fal_fake.billed + krea_fake.billed) < esrgan_jobs * MICRO


def test_the_cli_upscales_by_reference_and_plans_a_dry_run(
    hosted_settings: Settings, fal_fake: FalFake, tmp_path: Path
) -> None:
    source = png_file(tmp_path / "in.png", (800, 600))
    env = cli_env(hosted_settings)

    dry = run_cli(env, "upscale", source, "--size", "3200x3200", "--dry-run", "--provider", "fal")
    assert dry.returncode == 0, dry.stderr
    assert "fal esrgan" in dry.stdout and "3200x2400" in dry.stdout  # the largest 4:3 within 3200x3200
    assert fal_fake.jobs == []  # a dry run spends nothing

    done = run_cli(env, "upscale", source, "--factor", "2", "--model", "seedvr2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["offer_id"] == "fal-seedvr-upscale" and Decimal(str(result["cost_usd"])) == fal_fake.billed

    bad = run_cli(env, "upscale", source, "--method", "faithful", "--creativity", "0.4")
    assert bad.returncode == 2 and "creativity, upscale_method" in bad.stderr and "Traceback" not in bad.stderr
    for size in ("12x", "16:9"):
        odd = run_cli(env, "upscale", source, "--size", size)
        assert odd.returncode == 2 and "--size" in odd.stderr and "WxH" in odd.stderr, odd.stderr
        assert "Traceback" not in odd.stderr
    assert len(fal_fake.jobs) == 1  # refused before any provider was called


# --- helpers -------------------------------------------------------------------------------------------------


def png_file(path: Path, size: tuple[int, int]) -> str:
    Image.linear_gradient("L").resize(size).convert("RGB").save(path)
    return str(path)


def png_uri(path: Path, size: tuple[int, int]) -> str:
    """A PNG of `size` as the data: URI a library caller sends (the CLI makes one of a file)."""
    return image_file_uri(Path(png_file(path, size)), 20 * 1024 * 1024)


def cli_env(settings: Settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXROUTE_", "FAL_", "KREA_"))}
    return env | {
        "FLUXROUTE_CONFIG": "none",
        "FLUXROUTE_HOME": str(settings.home),
        "FAL_KEY": settings.fal_key.get_secret_value() if settings.fal_key else "",
        "FLUXROUTE_FAL_BASE_URL": settings.fal_base_url,
        "FLUXROUTE_FAL_REST_URL": settings.fal_rest_url,
        "FLUXROUTE_FAL_CDN_URL": settings.fal_cdn_url,
        "FLUXROUTE_FAL_JWKS_URL": settings.fal_jwks_url,
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxroute", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(autouse=True)
def _image_sizes(hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake) -> None:
    """Full-size fake images (hosted_settings makes them an eighth): the sizes upscales are checked by."""
    krea_fake.image_scale = 1.0
    fal_fake.image_scale = 1.0
