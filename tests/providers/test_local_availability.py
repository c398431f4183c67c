"""Local availability with reasons, weights found in a folder or the Hugging Face cache, and the memory plan."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxroute.errors import ProviderUnavailable
from fluxroute.providers import availability
from fluxroute.providers.availability import local_availability
from fluxroute.providers.local import LocalProvider
from fluxroute.providers.local_weights import GIB, WeightSizes, choose_memory_plan, find_weights, weight_sizes
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.types import ImageRequest

DEV = "black-forest-labs/FLUX.1-dev"
KREA_DEV = "black-forest-labs/FLUX.1-Krea-dev"
# FLUX.1 [dev] in bf16: transformer 23.8 GB, T5-XXL 9.5 GB, CLIP-L and VAE ~0.4 GB
FULL_SIZE = WeightSizes(total=int(33.7e9), largest=int(23.8e9), largest_name="transformer")


@pytest.mark.parametrize(
    ("free_gib", "ram_gib", "plan"),
    [
        (80, 128, "gpu"),
        (40, 128, "gpu"),
        (30, 128, "model_offload"),
        (24, 128, "sequential_offload"),
        (12, 128, "sequential_offload"),
        (2, 128, None),
        (24, 16, None),
    ],
)
def test_the_memory_plan_follows_free_gpu_memory_and_ram(free_gib: int, ram_gib: int, plan: str | None) -> None:
    chosen = choose_memory_plan(free_gib * GIB, FULL_SIZE, ram_gib * GIB)
    assert chosen.name == plan, chosen.reason
    if plan is None:
        assert chosen.reason.startswith("not enough")


def test_a_memory_plan_set_in_the_settings_is_used_as_given() -> None:
    chosen = choose_memory_plan(1 * GIB, FULL_SIZE, None, forced="model_offload")
    assert chosen.name == "model_offload" and "FLUXROUTE_LOCAL_MEMORY_PLAN" in chosen.reason


def test_weight_sizes_count_only_the_components_the_pipeline_loads(tiny_flux_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "with-single-file"
    shutil.copytree(tiny_flux_path, folder)
    components = weight_sizes(folder)
    (folder / "flux1-dev.safetensors").write_bytes(b"\0" * 1_000_000)  # single-file checkpoint beside it
    assert weight_sizes(folder) == components
    assert components.largest_name in json.loads((folder / "model_index.json").read_text())
    assert 0 < components.largest < components.total


def test_missing_packages_are_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(availability, "LOCAL_PACKAGES", ("json", "fluxroute_no_such_package"))
    found = local_availability(Settings(home=tmp_path, local_model=tmp_path))
    assert found == availability.Availability(
        False, "fluxroute_no_such_package not installed (pip install 'fluxroute[local]')"
    )


def test_a_gpu_demanded_where_there_is_none_is_explained(tiny_flux_path: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    found = local_availability(Settings(home=tmp_path, local_model=tiny_flux_path, local_device="cuda"))
    assert found.reason == "FLUXROUTE_LOCAL_DEVICE=cuda but no CUDA GPU found" and not found.ok


def test_a_content_checker_that_cannot_be_found_makes_local_unavailable(tiny_flux_path: Path, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, local_model=tiny_flux_path, local_device="cpu", local_content_checker="no_such_module:check"
    )
    found = local_availability(settings)
    assert not found.ok and "no_such_module:check" in found.reason


def cache_with(cache: Path, repo_id: str, pipeline: Path) -> None:
    """The Hugging Face cache layout: refs/main names a snapshot folder holding the files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40, encoding="utf-8")
    shutil.copytree(pipeline, repo / "snapshots" / ("0" * 40))


async def test_weights_in_the_hugging_face_cache_serve_their_own_offer_only(
    tiny_flux_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf-cache"
    cache_with(cache, DEV, tiny_flux_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    settings = Settings(home=tmp_path / "home", local_device="cpu", usage="non-commercial")
    path, _ = find_weights(settings, [KREA_DEV, DEV])
    assert path == cache / f"models--{DEV.replace('/', '--')}" / "snapshots" / ("0" * 40)
    router = Router(settings)
    assert router.availability["local"].ok
    try:
        small = {"prompt": "a cat", "provider": "local", "width": 64, "height": 64, "steps": 1}
        result = await router.generate(ImageRequest.parse({**small, "model": "flux-dev"}))
        assert result.offer_id == "local-flux-dev"
        # the Krea [dev] weights are not there: its offer is planned as unavailable, saying why, never submitted
        plan = router.plan(ImageRequest.parse({**small, "model": "flux-krea-dev"}))
        assert plan.chosen is None
        [krea_dev] = [c for c in plan.unavailable if c.offer_id == "local-flux-krea-dev"]
        assert krea_dev.unavailable_reason and "FLUX.1-Krea-dev" in krea_dev.unavailable_reason
        with pytest.raises(ProviderUnavailable, match=r"holds none of: black-forest-labs/FLUX\.1-Krea-dev"):
            await router.provider("local").submit(krea_dev)  # and the provider itself refuses it too
    finally:
        await router.aclose()


def test_the_registry_creates_the_local_provider_and_importing_it_leaves_torch_unloaded(tmp_path: Path) -> None:
    from fluxroute.providers import create_provider

    provider = create_provider("local", Settings(home=tmp_path))
    assert isinstance(provider, LocalProvider) and provider.name == "local"
    probe = "import sys, fluxroute.providers.local, fluxroute.router; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
