"""Cheap checks of whether each provider can run here: credentials, packages, weights, device."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from fluxroute.providers.base import Availability
from fluxroute.providers.local_weights import UPSCALER, find_upscaler, find_weights, gpu_memory_plan
from fluxroute.settings import Settings

LOCAL_PACKAGES = ("torch", "diffusers", "transformers")


def check_availability(
    settings: Settings, local_repos: Sequence[str] = (), fleet_endpoints: Sequence[str] = ()
) -> dict[str, Availability]:
    """Every provider's availability; `local_repos` are the Hugging Face repos local offers name (catalog data),
    `fleet_endpoints` those the ray offers name (each gets its own "ray:<endpoint>" entry)."""
    return {
        "krea": krea_availability(settings),
        "fal": fal_availability(settings),
        "local": local_availability(settings, local_repos),
        **fleet_availability(settings, fleet_endpoints),
    }


def fleet_availability(settings: Settings, endpoints: Sequence[str] = ()) -> dict[str, Availability]:
    """A Ray fleet (FLUXROUTE_RAY_URL): reachable, and which of `endpoints` some replica of it can run now, from
    one request to the fleet (none when no fleet is set)."""
    from fluxroute.providers.ray_fleet import read_fleet

    if settings.ray_url is None:
        return {"ray": Availability(False, "FLUXROUTE_RAY_URL is not set (deploy a fleet: fluxroute ray deploy)")}
    report = read_fleet(settings)
    if isinstance(report, str):
        return {"ray": Availability(False, report)}
    running = [r for r in report.replicas if r.get("state") != "silent"]
    fleet = Availability(bool(running), f"{len(running)} replicas" if running else f"{report.url}: no replica running")
    return {"ray": fleet, **{f"ray:{endpoint}": report.availability(endpoint) for endpoint in dict.fromkeys(endpoints)}}


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
    """Availability of each local offer's weights, by its endpoint (Hugging Face repo id, or an upscaler's weights
    file `owner/name/file.pth`): an offer is available only where its own weights are present (configured in
    local_models / local_model / local_upscalers, or in the HF cache)."""
    return {repo: local_availability(settings, [repo]) for repo in dict.fromkeys(repos)}


def is_upscaler_ref(endpoint: str) -> bool:
    """Whether a local offer's endpoint names an upscaler's weights file (`owner/name/file.pth`) rather than a
    diffusers pipeline repo (`owner/name`)."""
    return endpoint.count("/") >= 2 and endpoint.lower().endswith(UPSCALER.suffixes)


def local_availability(settings: Settings, repos: Sequence[str] = ()) -> Availability:
    """Local inference: for diffusers pipelines the extra installed, weights on disk, a usable device with memory
    enough; for upscalers (endpoints naming a weights file) spandrel importable and the file found. With both kinds
    asked about, available when either is (each offer's own entry then decides)."""
    upscalers = [repo for repo in repos if is_upscaler_ref(repo)]
    if not upscalers:
        return _pipeline_availability(settings, repos)
    pipelines = [repo for repo in repos if not is_upscaler_ref(repo)]
    answers = [upscaler_availability(settings, ref) for ref in upscalers]
    if pipelines:
        answers.insert(0, _pipeline_availability(settings, pipelines))
    return next((a for a in answers if a.ok), answers[0])


def upscaler_availability(settings: Settings, ref: str) -> Availability:
    """A local upscaler (providers/local_upscale.py): its weights file found offline, spandrel importable; on the
    CPU when there is no GPU (slow for large images) unless FLUXROUTE_LOCAL_DEVICE=cuda."""
    path, reason = find_upscaler(settings, ref)
    if path is None:
        return Availability(False, reason)
    from fluxroute.providers.local_upscale import spandrel_missing  # deferred: imports spandrel (and torch)

    missing = spandrel_missing()
    if missing:
        return Availability(False, missing)
    if settings.local_device == "cpu":
        return Availability(True, f"upscaler {path.name} on the CPU (FLUXROUTE_LOCAL_DEVICE=cpu)")
    import torch  # type: ignore[import-not-found, unused-ignore]

    if torch.cuda.is_available():
        return Availability(True, f"upscaler {path.name} on the GPU")
    if settings.local_device == "cuda":
        return Availability(False, "FLUXROUTE_LOCAL_DEVICE=cuda but no CUDA GPU found")
    return Availability(True, f"upscaler {path.name} on the CPU (no CUDA GPU found): slow for large images")


def _pipeline_availability(settings: Settings, repos: Sequence[str]) -> Availability:
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
