"""Local LoRA files: found offline only (local_loras, the Hugging Face cache), never by a URL or outside the named
folder; loaded into Krea 2 and Kontext pipelines too, unloaded after each job, refused whole when a file does not
fit the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from fluxroute.errors import ConfigError
from fluxroute.providers.local_weights import MemoryPlan, find_lora
from fluxroute.settings import Settings


def settings_with(loras: dict[str, Path]) -> Settings:
    return Settings(local_loras=loras)


@pytest.fixture
def lora_file(tmp_path: Path) -> Path:
    path = tmp_path / "ink.safetensors"
    path.write_bytes(b"not read here")
    return path


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("https://example.com/x.safetensors?sig=abc", "never downloads"),
        ("krea:st-1", "a Krea style runs only on Krea"),
        ("me/ink/../../../etc/passwd", "no '.' or '..' parts"),
        ("me/ink//etc/passwd", "no '.' or '..' parts"),
        ("me/..", "no '.' or '..' parts"),
        ("me/ink/./x.safetensors", "no '.' or '..' parts"),
        ("someone/elsewhere", "not on this machine"),
    ],
)
def test_refs_that_are_not_offline_files_are_refused_with_the_reason(
    ref: str, reason: str, lora_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    path, why = find_lora(settings_with({"me/ink": lora_file.parent}), ref)
    assert path is None and reason in why
    assert "sig=abc" not in why


def test_a_mapped_file_or_folder_names_the_lora(lora_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "styles"
    (folder / "sub").mkdir(parents=True)
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    (folder / "sub" / "a.safetensors").write_bytes(b"x")
    (folder / "sub" / "b.safetensors").write_bytes(b"x")
    (folder / "sub" / "c.bin").write_bytes(b"x")
    settings = settings_with({"me/ink": lora_file, "me/styles": folder, "me/styles/sub/b.safetensors": lora_file})
    assert find_lora(settings, "me/ink") == (lora_file, "")
    assert find_lora(settings, "me/styles") == (folder / "pytorch_lora_weights.safetensors", "")
    assert find_lora(settings, "me/styles/sub/a.safetensors") == (folder / "sub" / "a.safetensors", "")
    assert find_lora(settings, "me/styles/sub/b.safetensors") == (lora_file, "")  # the whole ref mapped first
    path, why = find_lora(settings, "me/styles/sub")
    assert path is None and "several LoRA files (a.safetensors, b.safetensors); name one: me/styles/sub/<file>" in why
    path, why = find_lora(settings, "me/styles/sub/c.bin")
    assert path is None and "only safetensors are loaded" in why
    path, why = find_lora(settings, "me/ink/x.safetensors")
    assert path is None and "not a folder" in why


def test_a_repo_in_the_hugging_face_cache_is_found_without_the_network(
    lora_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--someone--watercolor"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40, encoding="utf-8")
    shutil.copy(lora_file, snapshot / "watercolor_v2.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert find_lora(Settings(), "someone/watercolor") == (snapshot / "watercolor_v2.safetensors", "")
    path, why = find_lora(Settings(), "someone/watercolor/other.safetensors")
    assert path is None and "the Hugging Face cache of someone/watercolor" in why


def test_the_setting_reads_a_json_object_from_the_environment(lora_file: Path) -> None:
    settings = Settings.load(
        {"FLUXROUTE_CONFIG": "none", "FLUXROUTE_LOCAL_LORAS": json.dumps({"me/ink": str(lora_file)})}
    )
    assert settings.local_loras == {"me/ink": lora_file}


def _run(module: Any, loaded: Any, loras: list[dict[str, object]] | None = None, **params: object) -> bytes:
    asked: dict[str, object] = {"prompt": "a fox", "width": 64, "height": 64, "num_inference_steps": 2, **params}
    if loras:
        asked["loras"] = loras
    (image,) = module.run_pipeline(loaded, asked, 3, lambda step, total: False)
    data: bytes = image.tobytes()
    return data


@pytest.mark.parametrize("weights", ["tiny_krea2_path", "tiny_kontext_path"])
def test_krea_2_and_kontext_pipelines_take_a_lora_for_one_job(
    weights: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from fluxroute.providers import local_pipeline
    from tests.fakes.tiny_lora import build_tiny_lora, require_peft

    require_peft()
    path: Path = request.getfixturevalue(weights)
    lora = build_tiny_lora(path, tmp_path / "lora")
    options = local_pipeline.PipelineOptions()
    loaded = local_pipeline.load_pipeline(path, "cpu", MemoryPlan("cpu", "test"), options)
    extra: dict[str, object] = {}
    if weights == "tiny_kontext_path":
        from PIL import Image

        extra = {"mode": "instruction-edit", "image": Image.new("RGB", (64, 64), (10, 120, 200)), "max_area": 64 * 64}
    base = _run(local_pipeline, loaded, **extra)
    styled = _run(local_pipeline, loaded, [{"ref": "me/tiny", "path": str(lora), "scale": 1.0}], **extra)
    assert styled != base
    assert _run(local_pipeline, loaded, **extra) == base


def test_a_lora_of_another_architecture_is_refused_and_nothing_stays_loaded(
    tiny_krea2_path: Path, tiny_flux_lora: Path
) -> None:
    from fluxroute.providers import local_pipeline

    loaded = local_pipeline.load_pipeline(
        tiny_krea2_path, "cpu", MemoryPlan("cpu", "test"), local_pipeline.PipelineOptions()
    )
    base = _run(local_pipeline, loaded)
    with pytest.raises(ConfigError) as refused:
        _run(local_pipeline, loaded, [{"ref": "me/flux-ink", "path": str(tiny_flux_lora), "scale": 1.0}])
    assert "LoRA me/flux-ink" in str(refused.value) and "cannot be loaded into Krea2Pipeline" in str(refused.value)
    assert _run(local_pipeline, loaded) == base


def test_a_lora_stays_resident_while_jobs_name_it_and_goes_when_one_does_not(
    tiny_flux_path: Path, tiny_flux_lora: Path, tiny_flux_lora_2: Path
) -> None:
    """Jobs with the same LoRA file load it once (at any scale), give the pixels a fresh load gives, and a job
    without it runs on the base weights: residency changes how often a file is read, never an image."""
    from fluxroute.providers import local_pipeline

    loaded = local_pipeline.load_pipeline(
        tiny_flux_path, "cpu", MemoryPlan("cpu", "test"), local_pipeline.PipelineOptions()
    )
    base = _run(local_pipeline, loaded)
    ink = {"ref": "me/ink", "path": str(tiny_flux_lora), "scale": 1.0}
    first = _run(local_pipeline, loaded, [ink])
    again = _run(local_pipeline, loaded, [ink])
    half = _run(local_pipeline, loaded, [{**ink, "scale": 0.5}])
    assert loaded.lora_loads == 1 and loaded.loras == (tiny_flux_lora,)  # loaded once for three jobs
    assert first == again != base and half not in (first, base)
    other = _run(local_pipeline, loaded, [{"ref": "me/other", "path": str(tiny_flux_lora_2), "scale": 1.0}])
    assert loaded.lora_loads == 2 and other not in (first, base)
    assert _run(local_pipeline, loaded) == base and loaded.loras == ()  # unloaded: the base weights again
    fresh = local_pipeline.load_pipeline(
        tiny_flux_path, "cpu", MemoryPlan("cpu", "test"), local_pipeline.PipelineOptions()
    )
    assert _run(local_pipeline, fresh, [{**ink, "scale": 0.5}]) == half  # a resident LoRA gives a fresh load's pixels
