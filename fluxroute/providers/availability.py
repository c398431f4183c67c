"""Cheap checks of whether each provider can run here: credentials, packages, weights, device."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from fluxroute.providers.base import Availability
from fluxroute.providers.local_weights import find_weights, gpu_memory_plan
from fluxroute.settings import Settings

LOCAL_PACKAGES = ("torch", "diffusers", "transformers")


def check_availability(settings: Settings, local_repos: Sequence[str] = ()) -> dict[str, Availability]:
    """Every provider's availability; `local_repos` are the Hugging Face repos local offers name (catalog data)."""
    return {
        "krea": krea_availability(settings),
        "fal": fal_availability(settings),
        "local": local_availability(settings, local_repos),
    }


def krea_availability(settings: Settings) -> Availability:
    if settings.krea_api_token is None:
        return Availability(False, "KREA_API_TOKEN is not set (create one at krea.ai/settings/api-tokens)")
    return Availability(True)


def fal_availability(settings: Settings) -> Availability:
    if settings.fal_key is None:
        return Availability(False, "FAL_KEY is not set (create one at fal.ai/dashboard/keys)")
    return Availability(True)


def local_packages_missing() -> str | None:
    """Why the local extra cannot run, or None when torch, diffusers and transformers are installed."""
    missing = [name for name in LOCAL_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'fluxroute[local]')"
    return None


def local_availability_by_repo(settings: Settings, repos: Sequence[str]) -> dict[str, Availability]:
    """Availability of each local offer's weights, by its endpoint (Hugging Face repo id): an offer is available
    only where its own weights are present (configured in local_models / local_model, or in the HF cache)."""
    return {repo: local_availability(settings, [repo]) for repo in dict.fromkeys(repos)}


def local_availability(settings: Settings, repos: Sequence[str] = ()) -> Availability:
    """Local diffusers inference: the extra installed, weights on disk, a usable device with memory enough."""
    missing = local_packages_missing()
    if missing:
        return Availability(False, missing)
    weights, reason = find_weights(settings, repos)
    if weights is None:
        return Availability(False, reason)
    checker = settings.local_content_checker
    if checker is not None and importlib.util.find_spec(checker.partition(":")[0]) is None:
        return Availability(False, f"content checker module of {checker!r} not found (FLUXROUTE_LOCAL_CONTENT_CHECKER)")
    if settings.local_device == "cpu":
        return Availability(True, "runs on the CPU (FLUXROUTE_LOCAL_DEVICE=cpu): only for tiny models")
    import torch  # type: ignore[import-not-found, unused-ignore]  # deferred: importing torch takes seconds and is needed only here

    if not torch.cuda.is_available():
        if settings.local_device == "cuda":
            return Availability(False, "FLUXROUTE_LOCAL_DEVICE=cuda but no CUDA GPU found")
        return Availability(
            False, "no CUDA GPU found (set FLUXROUTE_LOCAL_DEVICE=cpu to force the CPU: only for tiny models)"
        )
    plan = gpu_memory_plan(weights, settings)
    return Availability(plan.ok, plan.reason if not plan.ok else f"memory plan: {plan}")
