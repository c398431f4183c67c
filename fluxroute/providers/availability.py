"""Cheap checks of whether each provider can run here: credentials, packages, weights, device."""

from __future__ import annotations

import importlib.util

from fluxroute.providers.base import Availability
from fluxroute.settings import Settings

LOCAL_PACKAGES = ("torch", "diffusers", "transformers")


def check_availability(settings: Settings) -> dict[str, Availability]:
    return {
        "krea": krea_availability(settings),
        "fal": fal_availability(settings),
        "local": local_availability(settings),
    }


def krea_availability(settings: Settings) -> Availability:
    if settings.krea_api_token is None:
        return Availability(False, "KREA_API_TOKEN is not set (create one at krea.ai/settings/api-tokens)")
    return Availability(True)


def fal_availability(settings: Settings) -> Availability:
    if settings.fal_key is None:
        return Availability(False, "FAL_KEY is not set (create one at fal.ai/dashboard/keys)")
    return Availability(True)


def local_availability(settings: Settings) -> Availability:
    """Local diffusers inference: the extra installed, weights on disk, and a usable device."""
    missing = [name for name in LOCAL_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"{', '.join(missing)} not installed (pip install 'fluxroute[local]')")
    if settings.local_model is None:
        return Availability(False, "FLUXROUTE_LOCAL_MODEL is not set (path to FLUX weights in diffusers format)")
    if not (settings.local_model / "model_index.json").is_file():
        return Availability(False, f"no diffusers pipeline at {settings.local_model} (model_index.json missing)")
    if settings.local_device == "cpu":
        return Availability(True, "runs on the CPU (FLUXROUTE_LOCAL_DEVICE=cpu): only for tiny models")
    import torch  # type: ignore[import-not-found, unused-ignore]  # deferred: importing torch takes seconds and is needed only here

    if not torch.cuda.is_available():
        return Availability(False, "no CUDA GPU found (set FLUXROUTE_LOCAL_DEVICE=cpu to force the CPU)")
    return Availability(True)
