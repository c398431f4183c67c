"""`fluxroute generate --provider local` and `fluxroute models` as a person runs them, on tiny local weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxroute.cli import main

NO_GPU = "no CUDA GPU found (set FLUXROUTE_LOCAL_DEVICE=cpu to force the CPU: only for tiny models)"
LOCAL_ENV = (
    "FLUXROUTE_LOCAL_MODEL",
    "FLUXROUTE_LOCAL_MODELS",
    "FLUXROUTE_LOCAL_DEVICE",
    "FLUXROUTE_LOCAL_CONTENT_CHECKER",
    "FLUXROUTE_LOCAL_COMMERCIAL_LICENSE",
    "FLUXROUTE_USAGE",
    "FAL_KEY",
    "KREA_API_TOKEN",
)


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in LOCAL_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLUXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLUXROUTE_CONFIG", "none")
    return tmp_path


def local_offers(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    return {o["offer_id"]: o for m in listing["models"] for o in m["offers"] if o["provider"] == "local"}


def test_generate_with_provider_local_saves_the_image_and_notes_the_review_duty(
    env: Path, tiny_flux_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXROUTE_LOCAL_MODEL", str(tiny_flux_path))
    monkeypatch.setenv("FLUXROUTE_LOCAL_DEVICE", "cpu")
    out_dir = env / "renders"
    argv = ["generate", "a lighthouse at dusk", "--provider", "local", "--usage", "non-commercial"]
    code = main([*argv, "--width", "64", "--height", "64", "--steps", "2", "--seed", "9", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "local flux-krea-dev (flux-krea-dev): $0, seed 9" in out
    assert "note: unfiltered — review before distribution" in out
    assert len(list(out_dir.glob("*.png"))) == 1


def test_generate_for_commercial_use_refuses_local_weights_with_the_license_reason(
    env: Path, tiny_flux_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLUXROUTE_LOCAL_MODEL", str(tiny_flux_path))
    monkeypatch.setenv("FLUXROUTE_LOCAL_DEVICE", "cpu")
    argv = ["generate", "a lighthouse", "--provider", "local", "--model", "flux-krea-dev"]
    code = main([*argv, "--width", "64", "--height", "64"])
    assert code == 3
    assert "FLUX.1 [dev] Non-Commercial License and usage=commercial" in capsys.readouterr().err


def test_models_says_which_setting_points_at_the_weights(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_flux_path: Path
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    offer = local_offers(capsys)["local-flux-dev"]
    assert offer["available"] is False
    assert offer["reason"].startswith(
        "no local weights configured (FLUXROUTE_LOCAL_MODELS maps a repo id to a diffusers folder; "
        "FLUXROUTE_LOCAL_MODEL names FLUX.1 Krea [dev] / [dev] weights) and the Hugging Face cache holds none of: "
        "black-forest-labs/FLUX.1-Krea-dev, black-forest-labs/FLUX.1-dev"
    )


def test_models_says_when_the_folder_holds_no_pipeline(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_flux_path: Path
) -> None:
    monkeypatch.setenv("FLUXROUTE_LOCAL_MODEL", str(env))
    offer = local_offers(capsys)["local-flux-krea-dev"]
    assert offer["available"] is False
    assert offer["reason"] == f"no diffusers pipeline at {env} (FLUXROUTE_LOCAL_MODEL; model_index.json missing)"


def test_models_without_a_gpu_says_how_to_use_the_cpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_flux_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.setenv("FLUXROUTE_LOCAL_MODEL", str(tiny_flux_path))
    offer = local_offers(capsys)["local-flux-krea-dev"]
    assert offer["available"] is False
    assert offer["reason"] == NO_GPU
    monkeypatch.setenv("FLUXROUTE_LOCAL_DEVICE", "cpu")
    assert local_offers(capsys)["local-flux-krea-dev"]["available"] is True
