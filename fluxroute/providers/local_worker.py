"""The local worker: one thread per device owns the warm pipeline and runs queued jobs one at a time.

One pipeline is kept warm per device: a job naming another weights folder (another local offer: FLUX.1 [schnell]
after Krea 2 Turbo, say) releases the warm one before loading its own, since two full-size pipelines rarely fit
in one GPU's memory together; jobs for the same folder reuse it.

Upscale jobs (params mode "upscale", weights a single spandrel file: providers/local_upscale.py) keep one upscaler
warm beside the pipeline. On the CPU both stay; on a GPU they share it only while the memory plan says both fit:
an upscaler that would not fit next to the warm pipeline releases the pipeline first, and a pipeline whose plan
is anything but all-on-the-GPU with the upscaler there releases the upscaler and plans again. Upscales run tile by
tile (the tile size from the GPU's free memory, or a fixed CPU tile), report each tile as a step, and stop between
tiles when cancelled; they carry no content-filter duty (no license review: Real-ESRGAN-style weights are BSD-3).

The event loop only enqueues jobs and reads their events; loading, denoising, screening and encoding all run
on the worker thread. torch and diffusers are imported there, on first use.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from fluxroute.errors import Cancelled, ConfigError, JobFailed, ProviderError, ProviderUnavailable
from fluxroute.providers.availability import local_packages_missing
from fluxroute.providers.base import Progress, ProviderResult
from fluxroute.providers.local_review import ContentChecker, encode, load_checker, screen
from fluxroute.providers.local_weights import MemoryPlan, gpu_memory_plan, upscale_tile, upscaler_fits
from fluxroute.settings import Settings
from fluxroute.types import MAX_SEED

NAME = "local"
# finished jobs nobody has collected yet (a wait() may still come) that are kept in memory
FINISHED_KEPT = 64

log = logging.getLogger("fluxroute.local")

# test and metrics hook, called on the worker thread after each step: (job id, step)
StepHook = Callable[[str, int], None]


def _pipeline_module() -> ModuleType:
    missing = local_packages_missing()
    if missing:
        raise ProviderUnavailable(missing, provider=NAME)
    # local folders only: a stray hub lookup fails fast instead of downloading
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from fluxroute.providers import local_pipeline

    return local_pipeline


def _upscale_module() -> ModuleType:
    from fluxroute.providers import local_upscale

    missing = local_upscale.spandrel_missing()
    if missing:
        raise ProviderUnavailable(missing, provider=NAME)
    return local_upscale


@dataclasses.dataclass
class LocalJob:
    """One queued or running generation; `events` is append-only, read by whoever waits on it."""

    id: str
    params: dict[str, object]
    weights: Path
    submitted: float = dataclasses.field(default_factory=time.monotonic)
    events: list[Progress] = dataclasses.field(default_factory=list)
    outcome: ProviderResult | ProviderError | None = None
    cancel_requested: bool = False
    queue_position: int | None = None
    listeners: list[Callable[[], None]] = dataclasses.field(default_factory=list)


class LocalWorker:
    """Owns one device: the warm pipeline and the single thread that runs it. Jobs run in submission order;
    the pipeline stays loaded between them and is replaced only when a job names other weights."""

    def __init__(
        self, settings: Settings, *, step_hook: StepHook | None = None, upscale_tile: int | None = None
    ) -> None:
        self.settings = settings
        self.device = "cpu" if settings.local_device == "cpu" else "cuda"
        self._step_hook = step_hook
        # the input tile edge of upscales, instead of the memory plan's (tests, and tuning by hand)
        self.upscale_tile = upscale_tile
        self._lock = threading.Condition()
        self._queue: deque[LocalJob] = deque()
        self._jobs: dict[str, LocalJob] = {}
        self._running: LocalJob | None = None
        self._finished: deque[str] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._loaded: Any = None  # local_pipeline.LoadedPipeline, touched only on the worker thread
        self._upscaler: Any = None  # local_upscale.LoadedUpscaler, likewise
        self._checker: ContentChecker | None = None

    # ---- called from the event loop (never blocks for long) ----
    def submit(self, params: dict[str, object], weights: Path) -> LocalJob:
        job = LocalJob(f"local-{uuid.uuid4().hex}", params, weights)
        with self._lock:
            if self._closed:
                raise ProviderUnavailable("the local worker is closed", provider=NAME)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._report_positions()
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"fluxroute-local-{self.device}", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        return job

    def job(self, job_id: str) -> LocalJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def cancel(self, job_id: str) -> None:
        """A queued job ends at once; a running one stops before its next denoising step (an upscale: its next
        tile)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.outcome is not None:
                return
            job.cancel_requested = True
            if job in self._queue:
                self._queue.remove(job)
                self._finish(job, Cancelled(f"job {job.id} was cancelled while queued", provider=NAME))
                self._report_positions()

    def close(self, timeout_s: float = 60.0) -> None:
        """Cancel everything, stop the thread and release the pipeline (blocking; call it off the loop)."""
        with self._lock:
            self._closed = True
            for job in list(self._queue):
                self._finish(job, Cancelled(f"job {job.id} was cancelled: the worker closed", provider=NAME))
            self._queue.clear()
            if self._running is not None:
                self._running.cancel_requested = True
            thread = self._thread
            self._lock.notify_all()
        if thread is not None:
            thread.join(timeout_s)

    # ---- worker thread ----
    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    break
                job = self._running = self._queue.popleft()
                self._report_positions()
            try:
                outcome = self._execute(job)
            except Exception as exc:  # a bug here must not leave the job's waiters hanging
                log.exception("local job %s failed", job.id)
                outcome = JobFailed(f"job {job.id} failed: {type(exc).__name__}: {exc}", provider=NAME)
            with self._lock:
                self._running = None
                self._finish(job, outcome)
                self._report_positions()
        if self._loaded is not None:
            _pipeline_module().release(self._loaded)
            self._loaded = None
        if self._upscaler is not None:
            _upscale_module().release(self._upscaler)
            self._upscaler = None

    def _execute(self, job: LocalJob) -> ProviderResult | ProviderError:
        if job.params.get("mode") == "upscale":
            return self._execute_upscale(job)
        started = time.monotonic()
        timings = {"queue_s": round(started - job.submitted, 3)}
        try:
            module = _pipeline_module()
            loaded = self._pipeline_for(job, module, timings)
            if self.settings.local_compile:
                size = (_int(job.params, "width"), _int(job.params, "height"))
                timings["warm_up_s"] = round(module.warm_up(loaded, *size), 3)
            self._raise_if_cancelled(job)
            given = job.params.get("seed")
            count = job.params.get("num_images_per_prompt")
            # image i uses seed + i: a drawn seed leaves room for every image's seed within MAX_SEED
            room = count if isinstance(count, int) and count > 0 else 1
            seed = given if isinstance(given, int) else secrets.randbelow(MAX_SEED + 2 - room)
            began = time.monotonic()
            images = module.run_pipeline(loaded, job.params, seed, lambda step, total: self._on_step(job, step, total))
            timings["inference_s"] = round(time.monotonic() - began, 3)
            self._raise_if_cancelled(job)
            result = self._screen_and_encode(job, images, seed)
            timings["total_s"] = round(time.monotonic() - job.submitted, 3)
            return dataclasses.replace(result, timings=timings, compute_seconds=_held_since(started))
        except ProviderError as exc:
            return exc
        except Exception as exc:
            return self._map_error(job, exc)

    # ---- upscales (providers/local_upscale.py) ----
    def _execute_upscale(self, job: LocalJob) -> ProviderResult | ProviderError:
        started = time.monotonic()
        timings = {"queue_s": round(started - job.submitted, 3)}
        try:
            module = _upscale_module()
            loaded, tile, note = self._upscaler_for(job, module, timings)
            self._raise_if_cancelled(job)
            image: Any = job.params["image"]  # a PIL image (read_inputs)
            size = (_int(job.params, "width"), _int(job.params, "height"))
            edge, advice = module.tile_edge(loaded, image.width, image.height, tile)
            self._emit_locked(job, "IN_PROGRESS", f"upscaling x{loaded.scale} with {loaded.architecture} ({note})")
            if advice:
                self._emit_locked(job, "IN_PROGRESS", advice)
            began = time.monotonic()
            upscaled = module.upscale(loaded, image, size, edge, lambda i, n: self._on_tile(job, i, n))
            timings["upscale_s"] = timings["inference_s"] = round(time.monotonic() - began, 3)
            self._raise_if_cancelled(job)
            assert upscaled is not None, "an upscale stops early only when cancelled"
            # no review duty: upscaler weights carry no content-filter clause (the input's own mark stays the input's)
            encoded = encode(upscaled, str(job.params.get("output_format") or "png"), False)
            timings["total_s"] = round(time.monotonic() - job.submitted, 3)
            warnings = [advice] if advice.startswith("the model discourages tiling, but") else []
            return ProviderResult(
                job.id, [encoded], timings=timings, warnings=warnings, compute_seconds=_held_since(started)
            )
        except ProviderError as exc:
            return exc
        except Exception as exc:
            return self._map_error(job, exc)

    def _upscaler_for(self, job: LocalJob, module: ModuleType, timings: dict[str, float]) -> tuple[Any, int, str]:
        """The warm upscaler for the job's weights (loaded if needed) and the input tile edge to run it with."""
        device = self._upscale_device()
        if self._upscaler is not None and (self._upscaler.path != job.weights or self._upscaler.device != device):
            module.release(self._upscaler)
            self._upscaler = None
        if self._upscaler is None:
            if device == "cuda" and self._loaded is not None and self._pipeline_crowds(job.weights):
                self._emit_locked(job, "IN_PROGRESS", "releasing the warm pipeline: it and the upscaler do not fit")
                _pipeline_module().release(self._loaded)
                self._loaded = None
            self._emit_locked(job, "IN_PROGRESS", f"loading upscaler {job.weights.name} on the {device.upper()}")
            self._upscaler = module.load_upscaler(job.weights, device)
            timings["load_s"] = round(self._upscaler.load_s, 3)
        loaded = self._upscaler
        if self.upscale_tile is not None:
            return loaded, self.upscale_tile, f"{self.upscale_tile} px input tiles (set by hand)"
        free = None
        if device == "cuda":
            import torch  # type: ignore[import-not-found, unused-ignore]

            free = int(torch.cuda.mem_get_info()[0])
        tile, reason = upscale_tile(free, loaded.dtype_bytes)
        if tile is None:
            raise ProviderUnavailable(f"{reason}; nothing was run", provider=NAME, billing="unbilled")
        return loaded, tile, reason

    def _upscale_device(self) -> str:
        """The CPU when asked for or when there is no GPU (FLUXROUTE_LOCAL_DEVICE=auto: an upscaler runs there too,
        slowly); else the GPU."""
        if self.settings.local_device == "cpu":
            return "cpu"
        import torch  # type: ignore[import-not-found, unused-ignore]

        if torch.cuda.is_available():
            return "cuda"
        if self.settings.local_device == "cuda":
            raise ProviderUnavailable("FLUXROUTE_LOCAL_DEVICE=cuda but no CUDA GPU found", provider=NAME)
        return "cpu"

    def _pipeline_crowds(self, weights: Path) -> bool:
        """Whether the warm pipeline leaves too little GPU memory for the upscaler in `weights` and its smallest tile
        (the upscaler counted at float32, its size on disk at most)."""
        import torch  # type: ignore[import-not-found, unused-ignore]

        free = int(torch.cuda.mem_get_info()[0])
        return not upscaler_fits(free, weights.stat().st_size, 2)

    def _on_tile(self, job: LocalJob, tile: int, total: int) -> bool:
        self._emit_locked(job, "IN_PROGRESS", "upscaling", step=tile, total_steps=total)
        if self._step_hook is not None:
            self._step_hook(job.id, tile)
        return job.cancel_requested

    @staticmethod
    def _raise_if_cancelled(job: LocalJob) -> None:
        if job.cancel_requested:
            raise Cancelled(f"job {job.id} was cancelled", provider=NAME, provider_job_id=job.id)

    def _pipeline_for(self, job: LocalJob, module: ModuleType, timings: dict[str, float]) -> Any:
        if self._loaded is not None and self._loaded.path == job.weights:
            return self._loaded
        if self._loaded is not None:
            module.release(self._loaded)
            self._loaded = None
        plan = self._plan_beside_upscaler(job.weights)
        self._emit_locked(job, "IN_PROGRESS", f"loading {job.weights} (memory plan: {plan})")
        self._loaded = module.load_pipeline(
            job.weights, self.device, plan, module.PipelineOptions.from_settings(self.settings)
        )
        timings["load_s"] = round(self._loaded.load_s, 3)
        applied = ", ".join(self._loaded.notes) or "eager defaults"
        self._emit_locked(job, "IN_PROGRESS", f"pipeline loaded in {self._loaded.load_s:.1f} s ({applied})")
        return self._loaded

    def _plan_beside_upscaler(self, weights: Path) -> MemoryPlan:
        """The memory plan for `weights`; a warm upscaler on the GPU stays only if the pipeline still fits there
        whole beside it, else its memory is given back first (it reloads in a moment when next needed)."""
        if self._upscaler is not None and self._upscaler.device == "cuda":
            try:
                plan = self._memory_plan(weights)
            except ProviderUnavailable:
                plan = MemoryPlan(None, "")
            if plan.name == "gpu":
                return plan
            _upscale_module().release(self._upscaler)
            self._upscaler = None
        return self._memory_plan(weights)

    def _memory_plan(self, weights: Path) -> MemoryPlan:
        if self.device == "cpu":
            return MemoryPlan("cpu", "FLUXROUTE_LOCAL_DEVICE=cpu: float32 on the CPU")
        import torch  # type: ignore[import-not-found, unused-ignore]

        if not torch.cuda.is_available():
            raise ProviderUnavailable("no CUDA GPU found (FLUXROUTE_LOCAL_DEVICE=cpu forces the CPU)", provider=NAME)
        plan = gpu_memory_plan(weights, self.settings)
        if not plan.ok:
            raise ProviderUnavailable(plan.reason, provider=NAME)
        return plan

    def _on_step(self, job: LocalJob, step: int, total: int) -> bool:
        self._emit_locked(job, "IN_PROGRESS", "denoising", step=step, total_steps=total)
        if self._step_hook is not None:
            self._step_hook(job.id, step)
        return job.cancel_requested

    def _screen_and_encode(self, job: LocalJob, images: list[Any], seed: int) -> ProviderResult:
        if self.settings.local_content_checker is not None and self._checker is None:
            self._checker = load_checker(self.settings.local_content_checker)
        screened = screen(images, str(job.params.get("prompt", "")), self._checker, self.settings.local_content_checker)
        output_format = str(job.params.get("output_format") or "png")
        encoded = [encode(image, output_format, flagged) for image, flagged in zip(images, screened.flags, strict=True)]
        seeds = [seed + i for i in range(len(encoded))]
        return ProviderResult(
            job.id, encoded, seed=seed, warnings=screened.warnings, review=screened.review, seeds=seeds
        )

    def _map_error(self, job: LocalJob, exc: Exception) -> ProviderError:
        """Everything a pipeline or an upscaler can raise -> the error tree, in one place. Out of GPU memory, the
        model that ran is released (the next job loads it afresh)."""
        import torch  # type: ignore[import-not-found, unused-ignore]

        if isinstance(exc, ConfigError):
            return JobFailed(str(exc), provider=NAME, provider_job_id=job.id)
        upscaling = job.params.get("mode") == "upscale"
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            if upscaling:
                _upscale_module().release(self._upscaler)
                self._upscaler = None
                advice = "while upscaling (a smaller tile or a free GPU helps)"
            else:
                _pipeline_module().release(self._loaded)
                self._loaded = None
                advice = "(try FLUXROUTE_LOCAL_MEMORY_PLAN=model_offload or a smaller size)"
            return JobFailed(f"job {job.id}: out of GPU memory {advice}", provider=NAME, provider_job_id=job.id)
        log.exception("local %s %s failed", "upscale" if upscaling else "job", job.id)
        return JobFailed(f"job {job.id} failed: {type(exc).__name__}: {exc}", provider=NAME, provider_job_id=job.id)

    # ---- shared state, under the lock ----
    def _emit(self, job: LocalJob, status: str, message: str, **fields: Any) -> None:
        job.events.append(
            Progress(NAME, status, message, elapsed_s=round(time.monotonic() - job.submitted, 3), **fields)
        )
        for wake in list(job.listeners):
            wake()

    def _emit_locked(self, job: LocalJob, status: str, message: str, **fields: Any) -> None:
        with self._lock:
            self._emit(job, status, message, **fields)

    def _finish(self, job: LocalJob, outcome: ProviderResult | ProviderError) -> None:
        if isinstance(outcome, ProviderResult):
            self._emit(job, "COMPLETED", "done")
        job.outcome = outcome  # after the last event: a reader that sees the outcome sees every event
        # kept for a late wait(); the oldest uncollected ones (cancelled, abandoned) are dropped
        self._finished.append(job.id)
        while len(self._finished) > FINISHED_KEPT:
            self._jobs.pop(self._finished.popleft(), None)
        for wake in list(job.listeners):
            wake()

    def _ahead_of(self, job: LocalJob) -> int:
        return self._queue.index(job) + (self._running is not None)

    def _report_positions(self) -> None:
        """Tell each queued job how many jobs are ahead of it, when that number changed."""
        for job in self._queue:
            ahead = self._ahead_of(job)
            if ahead != job.queue_position:
                job.queue_position = ahead
                self._emit(job, "IN_QUEUE", self._wait_message(), queue_position=ahead)

    def _wait_message(self) -> str:
        return f"waiting for the local {'GPU' if self.device == 'cuda' else 'CPU'}"


def _held_since(started: float) -> float:
    """The seconds a job has held the device since it left the queue (loading, running, encoding): what a
    per-GPU-second price charges."""
    return round(time.monotonic() - started, 3)


def _int(params: dict[str, object], key: str) -> int:
    value = params[key]
    assert isinstance(value, int), f"{key} must be an int, got {value!r}"
    return value
