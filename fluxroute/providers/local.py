"""Local diffusers inference behind the Provider protocol: FLUX.1 Krea [dev], FLUX.1 [dev], FLUX.1 [schnell]
(FluxPipeline) and Krea 2 Raw / Turbo (Krea2Pipeline) on this machine. Each offer's weights folder is found by its
endpoint (a Hugging Face repo id): the local_models setting, local_model for the FLUX.1 [dev] family, or the
Hugging Face cache; the folder's model_index.json decides the pipeline class.

The work happens in providers/local_worker.py (one thread per device, the pipeline kept warm), the diffusers
calls in local_pipeline.py, weights and memory plans in local_weights.py, the license's review duty in
local_review.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fluxroute.errors import JobFailed, ProviderError, ProviderTimeout, ProviderUnavailable
from fluxroute.providers.availability import local_packages_missing
from fluxroute.providers.base import CancelAnswer, ProgressCallback, ProviderResult
from fluxroute.providers.local_review import UNFILTERED, ContentChecker, ContentVerdict
from fluxroute.providers.local_weights import find_weights
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
        weights = await asyncio.to_thread(self._weights_for, candidate)
        return self.worker.submit(dict(candidate.params), weights).id

    def _weights_for(self, candidate: Candidate) -> Path:
        missing = local_packages_missing()
        if missing:
            raise ProviderUnavailable(missing, provider=NAME)
        weights, reason = find_weights(self.settings, [candidate.endpoint])
        if weights is None:
            raise ProviderUnavailable(reason, provider=NAME)
        return weights

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
        # the worker stops between denoising steps; a local job bills no provider
        self.worker.cancel(job_id)
        return "cancelled"

    async def aclose(self) -> None:
        if self._owns_worker:
            await asyncio.to_thread(self.worker.close)
