"""Local upscaling through LocalProvider, the way users run it: a tiny random spandrel model
(tests/fakes/tiny_esrgan.py) named in local_upscalers or found in the Hugging Face cache, a Candidate carrying the
router's upscale params, then submit / wait. Exact output sizes, tiled = untiled, refusals before anything runs,
cancel between tiles, memory."""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from fluxroute.errors import Cancelled, ConfigError, ProviderUnavailable
from fluxroute.providers.availability import local_availability, local_availability_by_repo
from fluxroute.providers.base import Progress, ProviderResult
from fluxroute.providers.local import LocalProvider, LocalWorker
from fluxroute.providers.local_weights import CPU_UPSCALE_TILE, find_upscaler
from fluxroute.settings import Settings
from fluxroute.types import Candidate
from tests.fakes.tiny_esrgan import build_tiny_compact, build_tiny_denoiser, build_tiny_esrgan, require_spandrel
from tests.fakes.tiny_flux import StepGate
from tests.security.test_pixel_bombs import peak_growth

REF = "ai-forever/Real-ESRGAN/RealESRGAN_x4.pth"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_esrgan(tmp_path_factory.mktemp("upscalers") / "tiny_x4.safetensors")


@pytest.fixture
def settings(weights: Path, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", local_upscalers={REF: weights}, local_device="cpu")


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "empty-hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def image_uri(width: int, height: int, *, noise: bool = True) -> str:
    """A deterministic PNG as a data: URI: a gradient, with seeded noise so tiles see detail."""
    gradient = Image.linear_gradient("L").resize((width, height))
    if noise:
        import random

        rng = random.Random(7)
        pixels = bytes(rng.randrange(256) for _ in range(width * height * 3))
        image = Image.blend(Image.frombytes("RGB", (width, height), pixels), Image.merge("RGB", [gradient] * 3), 0.5)
    else:
        image = Image.merge("RGB", [gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def candidate(uri: str, size: tuple[int, int], factor: float, endpoint: str = REF) -> Candidate:
    """The candidate the router makes for the local-realesrgan-x4 offer (its params exactly as agreed)."""
    width, height = round(size[0] * factor), round(size[1] * factor)
    return Candidate(
        offer_id="local-realesrgan-x4",
        label="local Real-ESRGAN x4",
        provider="local",
        model="real-esrgan-x4",
        endpoint=endpoint,
        width=width,
        height=height,
        num_images=1,
        cost_usd=0.0,
        latency_s=1.0,
        license="BSD-3-Clause",
        params={
            "mode": "upscale",
            "image": uri,
            "width": width,
            "height": height,
            "scale": factor,
            "output_format": "png",
        },
    )


class Recorder:
    def __init__(self, at_step: int | None = None) -> None:
        self.events: list[Progress] = []
        self.at_step = at_step
        self.reached = asyncio.Event()

    async def __call__(self, event: Progress) -> None:
        self.events.append(event)
        if event.step is not None and event.step == self.at_step:
            self.reached.set()

    @property
    def steps(self) -> list[tuple[int, int | None]]:
        return [(e.step, e.total_steps) for e in self.events if e.step is not None]


async def upscale(
    settings: Settings, job: Candidate, *, tile: int | None = None, progress: Recorder | None = None
) -> ProviderResult:
    provider = LocalProvider(settings, worker=LocalWorker(settings, upscale_tile=tile))
    try:
        job_id = await provider.submit(job)
        return await provider.wait(job_id, job, progress, timeout_s=60)
    finally:
        await provider.aclose()


def decoded(result: ProviderResult) -> Image.Image:
    [image] = result.images
    with Image.open(io.BytesIO(image.data)) as opened:
        assert opened.format == "PNG" and opened.size == (image.width, image.height)
        return opened.convert("RGB")


async def test_x4_comes_out_at_exactly_the_size_asked_in_one_tile_with_progress_and_no_review(
    settings: Settings,
) -> None:
    progress = Recorder()
    result = await upscale(settings, candidate(image_uri(40, 30), (40, 30), 4), progress=progress)
    assert decoded(result).size == (160, 120)
    assert result.images[0].content_type == "image/png" and not result.images[0].flagged
    assert progress.steps == [(1, 1)]  # one tile: smaller than the CPU tile
    assert progress.events[-1].status == "COMPLETED"
    assert result.seeds == [] and result.seed is None
    assert result.review is None and result.warnings == []  # no content-filter duty on an upscaler
    assert result.timings["upscale_s"] >= 0 and result.timings["load_s"] >= 0 and "queue_s" in result.timings


async def test_x2_with_a_x4_model_is_the_x4_result_resized_with_lanczos_to_the_exact_size(settings: Settings) -> None:
    uri = image_uri(41, 29)
    x4 = decoded(await upscale(settings, candidate(uri, (41, 29), 4)))
    x2 = decoded(await upscale(settings, candidate(uri, (41, 29), 2)))
    assert x2.size == (82, 58)
    assert x2.tobytes() == x4.resize((82, 58), Image.Resampling.LANCZOS).tobytes()


async def test_a_tiled_upscale_equals_the_untiled_one(settings: Settings) -> None:
    uri, size = image_uri(96, 80), (96, 80)
    progress = Recorder()
    tiled = decoded(await upscale(settings, candidate(uri, size, 4), tile=32, progress=progress))
    whole = decoded(await upscale(settings, candidate(uri, size, 4)))
    assert progress.steps == [(i, 9) for i in range(1, 10)]  # 3 x 3 tiles of 32 px
    assert tiled.size == whole.size == (384, 320)
    differences = [abs(a - b) for a, b in zip(tiled.tobytes(), whole.tobytes(), strict=True)]
    # the 32 px overlap covers all the tiny ESRGAN looks at (about 18 input px): equal but for float rounding
    assert max(differences) <= 1 and sum(differences) / len(differences) < 0.01


async def test_missing_weights_are_refused_unbilled_before_anything_runs(
    weights: Path, tmp_path: Path, empty_cache: Path
) -> None:
    settings = Settings(home=tmp_path / "home", local_device="cpu")
    worker = LocalWorker(settings)
    provider = LocalProvider(settings, worker=worker)
    with pytest.raises(ProviderUnavailable, match="FLUXROUTE_LOCAL_UPSCALERS") as info:
        await provider.submit(candidate(image_uri(8, 8), (8, 8), 4))
    assert info.value.billing == "unbilled" and "not on this machine" in str(info.value)
    assert worker._jobs == {}  # nothing queued
    elsewhere = settings.model_copy(update={"local_upscalers": {REF: tmp_path / "nowhere.pth"}})
    with pytest.raises(ProviderUnavailable, match=r"no file at .*FLUXROUTE_LOCAL_UPSCALERS") as info:
        await LocalProvider(elsewhere, worker=worker).submit(candidate(image_uri(8, 8), (8, 8), 4))
    assert info.value.billing == "unbilled"
    assert not local_availability(settings, [REF]).ok
    assert "FLUXROUTE_LOCAL_UPSCALERS" in local_availability(settings, [REF]).reason


async def test_a_pth_file_in_the_hugging_face_cache_is_found_and_runs(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from safetensors.torch import load_file

    cache = tmp_path / "hub"
    repo = cache / "models--ai-forever--Real-ESRGAN"
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40, encoding="utf-8")
    torch.save(load_file(str(weights)), snapshot / "RealESRGAN_x4.pth")  # a pickled state dict, as published
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(home=tmp_path / "home", local_device="cpu")
    assert find_upscaler(settings, REF) == (snapshot / "RealESRGAN_x4.pth", "")
    by_repo = local_availability_by_repo(settings, [REF])
    assert by_repo[REF].ok and "on the CPU" in by_repo[REF].reason
    result = await upscale(settings, candidate(image_uri(20, 12), (20, 12), 4))
    assert decoded(result).size == (80, 48)


@pytest.mark.parametrize("kind", ["denoiser", "unknown", "forbidden pickle"])
async def test_a_file_that_is_not_a_supported_super_resolution_model_is_refused_unbilled(
    kind: str, tmp_path: Path
) -> None:
    require_spandrel()
    import torch
    from safetensors.torch import save_file

    if kind == "denoiser":
        path, reason = build_tiny_denoiser(tmp_path / "dncnn.safetensors"), r"for Restoration .*super-resolution"
    elif kind == "unknown":
        path, reason = tmp_path / "random.safetensors", "of no architecture spandrel knows"
        save_file({"some.weight": torch.zeros(4, 4)}, str(path))
    else:  # a pickle naming a global beyond tensors and dicts: spandrel's restricted unpickler refuses it
        path, reason = tmp_path / "odd.pth", r"cannot be loaded .*forbidden"
        torch.save({"when": datetime.date(2020, 1, 1)}, path)
    settings = Settings(home=tmp_path / "home", local_upscalers={REF: path}, local_device="cpu")
    with pytest.raises(ProviderUnavailable, match=reason) as info:
        await upscale(settings, candidate(image_uri(8, 8), (8, 8), 4))
    assert info.value.billing == "unbilled" and "nothing was run" in str(info.value)


async def test_cancel_stops_between_tiles_and_the_worker_stays_usable(settings: Settings) -> None:
    gate = StepGate()
    worker = LocalWorker(settings, step_hook=gate, upscale_tile=16)
    provider = LocalProvider(settings, worker=worker)
    job = candidate(image_uri(64, 64), (64, 64), 4)  # 16 tiles
    gate.hold_at(2)
    progress = Recorder(at_step=2)
    try:
        job_id = await provider.submit(job)
        waiting = asyncio.create_task(provider.wait(job_id, job, progress, timeout_s=60))
        await asyncio.wait_for(progress.reached.wait(), 30)
        await provider.cancel(job_id, job)
        gate.release()
        with pytest.raises(Cancelled):
            await waiting
        assert progress.steps == [(1, 16), (2, 16)]
        again = candidate(image_uri(16, 16), (16, 16), 4)
        result = await provider.wait(await provider.submit(again), again, None, timeout_s=60)
        assert decoded(result).size == (64, 64)
    finally:
        gate.release()
        await provider.aclose()


async def test_a_1024_to_4096_cpu_upscale_holds_no_whole_image_float_tensor(tmp_path: Path) -> None:
    """Peak memory of a 1 MP -> 16.8 MP x4 upscale on the CPU (default tile policy), with the cheap tiny Compact.

    One whole-output float32 tensor is 4096 x 4096 x 3 x 4 B = 192 MiB, and an untiled run holds several at once
    (the pixel-shuffled output, the upsampled input it is added to, the last convolution's 48 channels before the
    shuffle). A tiled run needs the 8-bit result (Pillow: 4 B a pixel, 64 MiB) and one padded tile's float tensors
    (320² px in, at 4x: three of 1280² x 3 x 4 B = 20 MiB, about 65 MiB with the 48-channel one): about 130 MiB, so
    the bound, 192 MiB, is crossed by any whole-output float32 tensor beside the result. Tensors that large are
    always mapped afresh (glibc maps blocks over 32 MiB), so a warm-up on a smaller image, which only fills the
    allocator with tile-sized blocks, hides none of them. The control, the same job in one tile, must cross it."""
    weights = build_tiny_compact(tmp_path / "compact_x4.safetensors")
    settings = Settings(home=tmp_path / "home", local_upscalers={REF: weights}, local_device="cpu")
    job = candidate(image_uri(1024, 1024, noise=False), (1024, 1024), 4)
    worker = LocalWorker(settings)
    provider = LocalProvider(settings, worker=worker)
    try:
        warm_up = candidate(image_uri(576, 576, noise=False), (576, 576), 4)  # a middle tile as large as measured
        await provider.wait(await provider.submit(warm_up), warm_up, None, timeout_s=60)
        with peak_growth() as tiled:
            result = await provider.wait(await provider.submit(job), job, None, timeout_s=60)
        assert (result.images[0].width, result.images[0].height) == (4096, 4096)
        del result
        worker.upscale_tile = 4096
        with peak_growth() as untiled:
            await provider.wait(await provider.submit(job), job, None, timeout_s=60)
    finally:
        await provider.aclose()
    whole_float_output = 4096 * 4096 * 3 * 4
    print(
        f"1024² -> 4096² on the CPU: tiled ({CPU_UPSCALE_TILE} px) peak +{tiled[0] / MB:.0f} MiB, "
        f"untiled +{untiled[0] / MB:.0f} MiB; a whole-output float32 tensor is {whole_float_output / MB:.0f} MiB"
    )
    assert tiled[0] < whole_float_output
    # the measurement sees what tiling saves: the untiled run holds more than one whole-output tensor (alone in a
    # process about 2.5 of them; after the router and provider suites in the same process, +365 MiB was seen once)
    assert untiled[0] > 1.5 * whole_float_output


def test_spandrel_is_imported_without_torchvision_and_its_placeholders_are_gone(settings: Settings) -> None:
    require_spandrel()
    try:
        import torchvision  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torchvision is installed here: spandrel was imported normally")
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)
    lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
    with pytest.raises(RuntimeError, match=r"torchvision.*super-resolution models only"):
        lama.rotate(None, 0)


def test_the_setting_reads_a_json_object_from_the_environment(weights: Path) -> None:
    other = weights.parent / "other.pth"
    value = f'{{"{REF}": "{weights}", "me/x2/x2.pth": "{other}"}}'
    loaded = Settings.load({"FLUXROUTE_CONFIG": "none", "FLUXROUTE_LOCAL_UPSCALERS": value})
    assert loaded.local_upscalers == {REF: weights, "me/x2/x2.pth": other}
    with pytest.raises(ConfigError, match=r"FLUXROUTE_LOCAL_UPSCALERS.*not a JSON object"):
        Settings.load({"FLUXROUTE_CONFIG": "none", "FLUXROUTE_LOCAL_UPSCALERS": f"{REF}={weights}"})
    shutil.copy(weights, other)
    assert find_upscaler(loaded, "me/x2/x2.pth") == (other, "")


@pytest.mark.parametrize(
    ("mode", "said"),
    [("upscale", "while upscaling (a smaller tile"), (None, "(try FLUXROUTE_LOCAL_MEMORY_PLAN=model_offload")],
)
def test_out_of_gpu_memory_releases_the_model_that_ran_and_says_what_helps(
    settings: Settings, weights: Path, mode: str | None, said: str
) -> None:
    import torch

    from fluxroute.errors import JobFailed
    from fluxroute.providers.local_upscale import load_upscaler
    from fluxroute.providers.local_worker import LocalJob

    worker = LocalWorker(settings)
    other = object()  # the model that did not run: kept
    try:
        if mode == "upscale":
            worker._upscaler, worker._loaded = load_upscaler(weights, "cpu"), other  # type: ignore[assignment]
        else:
            worker._upscaler = other  # type: ignore[assignment]
        params: dict[str, object] = {} if mode is None else {"mode": mode}
        error = worker._map_error(LocalJob("job-1", params, weights), torch.cuda.OutOfMemoryError("CUDA oom"))
        assert isinstance(error, JobFailed) and f"out of GPU memory {said}" in str(error)
        released, kept = (worker._upscaler, worker._loaded) if mode == "upscale" else (worker._loaded, worker._upscaler)
        assert released is None and kept is other
    finally:
        worker._upscaler = worker._loaded = None
        worker.close()
