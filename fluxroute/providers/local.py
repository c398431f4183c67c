"""Local diffusers inference behind the Provider protocol: FLUX.1 Krea [dev], FLUX.1 [dev], FLUX.1 [schnell]
(FluxPipeline) and Krea 2 Raw / Turbo (Krea2Pipeline) on this machine; edits on FLUX.1 [dev] / Krea [dev] weights
(image-to-image, inpaint) and FLUX.1 Kontext [dev] weights (instruction edit), their input images read in
local_inputs.py. Each offer's weights folder is found by its endpoint (a Hugging Face repo id): the local_models
setting, local_model for the FLUX.1 [dev] family, or the Hugging Face cache; the folder's model_index.json decides
the pipeline class.

A request's LoRAs (`owner/name[/file.safetensors]`) are found offline before the job is queued: the local_loras
setting (FLUXROUTE_LOCAL_LORAS) or the Hugging Face cache (local_weights.find_lora). An https URL is never
downloaded, and a LoRA not on this machine fails the submission unbilled with the reason, before anything runs (the
router then tries the next offer, fal's LoRA endpoints say). The pipeline loads them for that job only.

An upscale (params mode "upscale": image, width x height of the output, scale) runs a spandrel super-resolution
model instead (providers/local_upscale.py). Its endpoint names one weights file, `owner/name/file.pth`, found offline
like a LoRA: the local_upscalers setting (FLUXROUTE_LOCAL_UPSCALERS) or the Hugging Face cache
(local_weights.find_upscaler); one not on this machine fails the submission unbilled, before anything runs.

The work happens in providers/local_worker.py (one thread per device, the pipeline kept warm), the diffusers
calls in local_pipeline.py, weights and memory plans in local_weights.py, the license's review duty in
local_review.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from pathlib import Path

from fluxroute.errors import JobFailed, ProviderError, ProviderTimeout, ProviderUnavailable
from fluxroute.providers.availability import local_packages_missing
from fluxroute.providers.base import CancelAnswer, ProgressCallback, ProviderResult
from fluxroute.providers.local_inputs import fetch_inputs, read_inputs
from fluxroute.providers.local_review import UNFILTERED, ContentChecker, ContentVerdict
from fluxroute.providers.local_weights import find_lora, find_upscaler, find_weights
from fluxroute.providers.local_worker import NAME, LocalJob, LocalWorker, StepHook
from fluxroute.settings import Settings
from fluxroute.types import Candidate

__all__ = [
    "UNFILTERED",
    "ContentChecker",
    "ContentVerdict",
    "LocalJob",
    "LocalProvider",
    "LocalWorker",
    "StepHook",
]


class LocalProvider:
    """The Provider protocol over a LocalWorker. Local jobs live in this process only: after a restart there is
    nothing to resume, and wait() says so."""

    name = NAME

    def __init__(self, settings: Settings, worker: LocalWorker | None = None) -> None:
        self.settings = settings
        self._owns_worker = worker is None
        self.worker = worker or LocalWorker(settings)

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str:
        if candidate.params.get("mode") == "upscale":
            return await self._submit_upscale(candidate)
        weights = await asyncio.to_thread(self._weights_for, candidate)
        params = dict(candidate.params)
        if params.get("loras"):
            params["loras"] = await asyncio.to_thread(self._loras_for, params["loras"])
        # an edit's input images, decoded before the job is queued (see providers/local_inputs.py)
        params = await fetch_inputs(params, self.settings, NAME)
        params = await asyncio.to_thread(read_inputs, params, self.settings, NAME)
        return self.worker.submit(params, weights).id

    async def _submit_upscale(self, candidate: Candidate) -> str:
        """An upscale: its weights file found offline and its input image read before the job is queued.

        Raises:
            ProviderUnavailable: spandrel is missing or the weights file is not on this machine; unbilled.
            JobFailed: unbilled — the input image or the output size cannot be used.
        """
        weights = await asyncio.to_thread(self._upscaler_for, candidate)
        params = dict(candidate.params)
        width, height = params.get("width"), params.get("height")
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise JobFailed(f"an upscale needs its output width and height, got {width!r} x {height!r}", provider=NAME)
        if width * height > self.settings.max_image_pixels:
            raise JobFailed(
                f"an upscale to {width}x{height} exceeds max_image_pixels ({self.settings.max_image_pixels}); "
                "nothing was run",
                provider=NAME,
                billing="unbilled",
                retryable=False,
            )
        if not isinstance(params.get("image"), str | bytes):
            raise JobFailed("an upscale needs its input image (params 'image')", provider=NAME, billing="unbilled")
        params = await fetch_inputs(params, self.settings, NAME)
        params = await asyncio.to_thread(read_inputs, params, self.settings, NAME)
        return self.worker.submit(params, weights).id

    def _upscaler_for(self, candidate: Candidate) -> Path:
        from fluxroute.providers.local_upscale import spandrel_missing

        missing = spandrel_missing()
        if missing:
            raise ProviderUnavailable(missing, provider=NAME, billing="unbilled")
        path, reason = find_upscaler(self.settings, candidate.endpoint)
        if path is None:
            raise ProviderUnavailable(f"{reason}; nothing was run", provider=NAME, billing="unbilled")
        return path

    def _weights_for(self, candidate: Candidate) -> Path:
        missing = local_packages_missing()
        if missing:
            raise ProviderUnavailable(missing, provider=NAME)
        weights, reason = find_weights(self.settings, [candidate.endpoint])
        if weights is None:
            raise ProviderUnavailable(reason, provider=NAME)
        return weights

    def _loras_for(self, loras: object) -> list[dict[str, object]]:
        """Each LoRA of the call ([{"ref", "scale"}], providers/wire.py local_kwargs) with its file on this machine.

        Raises:
            ProviderUnavailable: peft is missing, or a LoRA is not on this machine (an https URL is never
                downloaded); unbilled, nothing ran.
        """
        assert isinstance(loras, list), f"loras must be a list, got {loras!r}"
        if importlib.util.find_spec("peft") is None:
            raise ProviderUnavailable("LoRAs need peft, not installed (pip install 'fluxroute[local]')", provider=NAME)
        resolved: list[dict[str, object]] = []
        for lora in loras:
            path, reason = find_lora(self.settings, str(lora["ref"]))
            if path is None:
                raise ProviderUnavailable(f"{reason}; nothing was run", provider=NAME)
            resolved.append({**lora, "path": str(path)})
        return resolved

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult:
        job = self.worker.job(job_id)
        if job is None:
            raise JobFailed(
                f"job {job_id} is not running in this process (local jobs do not survive a restart; generate again)",
                provider=NAME,
                provider_job_id=job_id,
                billing="unbilled",
            )
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the waiting loop may be gone
                loop.call_soon_threadsafe(woken.set)

        job.listeners.append(wake)
        seen = 0
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    woken.clear()
                    outcome = job.outcome
                    events = job.events[seen:]
                    seen += len(events)
                    if progress is not None:
                        for event in events:
                            await progress(event)
                    if outcome is not None:
                        break
                    await woken.wait()
        except TimeoutError:
            raise ProviderTimeout(
                f"job {job_id} did not finish within {timeout_s:g} s", provider=NAME, provider_job_id=job_id
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                job.listeners.remove(wake)
        self.worker.forget(job_id)
        if isinstance(outcome, ProviderError):
            outcome.billing = outcome.billing or "unbilled"  # a local job bills no provider
            raise outcome
        return outcome

    async def cancel(self, job_id: str, candidate: Candidate) -> CancelAnswer:
        # the worker stops between denoising steps (an upscale: between tiles); a local job bills no provider
        self.worker.cancel(job_id)
        return "cancelled"

    async def aclose(self) -> None:
        if self._owns_worker:
            await asyncio.to_thread(self.worker.close)
