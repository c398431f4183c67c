"""Generations that outlive the call that started them: a wait budget, then a job handle to come back with.

A tool call waits for its generation up to a budget; when the budget runs out (or the caller goes away)
the job keeps running here and `wait` picks it up again by id. Jobs a previous process left in flight
are adopted from the store, so a handle survives a restart and a job is never followed twice. A job another live
process follows (a replica on a shared store) is watched in the store until it ends there, and adopted here if
that process stops (its lease frees).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fluxroute.errors import FluxrouteError, JobNotFound
from fluxroute.providers.base import Progress, ProgressCallback
from fluxroute.types import GenerationResult, ImageRequest

if TYPE_CHECKING:
    from fluxroute.store import Store

JobStatus = Literal["running", "succeeded", "failed", "cancelled"]
OPEN_ATTEMPT = ("submitting", "in_flight")


class JobRunner(Protocol):
    """What background jobs need of fluxroute.router.Router."""

    @property
    def store(self) -> Store: ...

    async def generate(
        self,
        request: ImageRequest,
        progress: ProgressCallback | None = None,
        out_dir: Path | None = None,
        on_job: Callable[[str], None] | None = None,
    ) -> GenerationResult: ...

    def in_flight_jobs(self) -> list[str]: ...

    async def follow_job(self, job_id: str, progress: ProgressCallback | None = None) -> GenerationResult | None: ...

    async def cancel_job(self, job_id: str) -> object: ...


@dataclass(frozen=True)
class JobView:
    """A job as a caller sees it: done (result or error) or still running (with its latest progress)."""

    job_id: str
    status: JobStatus
    result: GenerationResult | None = None
    error: str | None = None
    progress: Progress | None = None
    elapsed_s: float = 0.0


@dataclass
class _Tracked:
    """One running generation: its task, its latest progress event, and whoever listens right now. The task's
    None: the job ended in another process (its outcome is in the store)."""

    task: asyncio.Task[GenerationResult | None] = field(init=False)  # set right after: the task reports here
    started: float = field(default_factory=time.monotonic)
    latest: Progress | None = None
    listeners: list[ProgressCallback] = field(default_factory=list)

    async def report(self, event: Progress) -> None:
        self.latest = event
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):  # a listener that went away must not stop the job
                await listener(event)


class BackgroundJobs:
    """Runs generations as tasks that no caller's cancellation or timeout can stop; finds them by job id."""

    def __init__(self, router: JobRunner) -> None:
        self.router = router
        self._running: dict[str, _Tracked] = {}

    async def start(self, request: ImageRequest) -> str:
        """Start generating `request`; return its job id once the job is recorded (before any provider call).
        Listeners attach with `wait`, which first replays the latest progress event.

        Raises:
            FluxrouteError: the job could not start (no route, budget); nothing was spent.
        """
        recorded: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_job(job_id: str) -> None:
            if not recorded.done():
                recorded.set_result(job_id)

        tracked = _Tracked()
        task = tracked.task = asyncio.create_task(self.router.generate(request, tracked.report, on_job=on_job))
        pending: list[asyncio.Future[Any]] = [task, recorded]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not recorded.done():
            recorded.cancel()
            task.result()  # raises why the job never started
        job_id = recorded.result()
        if job_id in self._running and self._running[job_id].task is not task:
            # same idempotency key as a job already followed here: the new task would only follow it twice
            task.cancel()
            return job_id
        self._track(job_id, tracked)
        return job_id

    async def wait(self, job_id: str, wait_s: float, progress: ProgressCallback | None = None) -> JobView:
        """Wait up to `wait_s` seconds for job `job_id`; its view, finished or not. A failure of a job this
        process ran is raised as it happened (typed); one known only from the store is reported as text.

        Raises:
            JobNotFound: no job with that id.
            FluxrouteError: the job failed while this process ran it.
        """
        tracked = self._running.get(job_id) or self._adopt(job_id)
        if tracked is None:
            return self._stored_view(job_id)
        if progress is not None:
            if tracked.latest is not None:
                await progress(tracked.latest)  # where it stands now, then what happens next
            tracked.listeners.append(progress)
        try:
            await asyncio.wait_for(asyncio.shield(tracked.task), timeout=wait_s)
        except TimeoutError:
            return JobView(job_id, "running", progress=tracked.latest, elapsed_s=time.monotonic() - tracked.started)
        except asyncio.CancelledError:
            if tracked.task.cancelled():
                return self._stored_view(job_id)
            raise  # the caller went away; the job goes on
        finally:
            with contextlib.suppress(ValueError):
                tracked.listeners.remove(progress)  # type: ignore[arg-type]
        result = tracked.task.result()
        if result is None:
            return self._stored_view(job_id)
        return JobView(job_id, "succeeded", result=result, elapsed_s=time.monotonic() - tracked.started)

    async def cancel(self, job_id: str) -> JobView:
        """Stop job `job_id`: its provider is asked to cancel it and the job record says what that cost;
        finished jobs stay as they are.

        Raises:
            JobNotFound: no job with that id.
        """
        tracked = self._running.get(job_id) or self._adopt(job_id)
        if tracked is not None:
            tracked.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, FluxrouteError):
                await tracked.task
        attempts = self.router.store.attempts_for(job_id)
        if any(a.status in OPEN_ATTEMPT for a in attempts):  # followed by another process: ask the provider here
            await self.router.cancel_job(job_id)
        return self._stored_view(job_id)

    def resume_in_flight(self) -> list[str]:
        """Adopt every job a previous process left in flight; returns their ids."""
        adopted = []
        for job_id in self.router.in_flight_jobs():
            if job_id not in self._running and self._adopt(job_id) is not None:
                adopted.append(job_id)
        return adopted

    async def aclose(self) -> None:
        """Stop following running jobs without cancelling them at the provider: a restart resumes them."""
        from fluxroute.router.execute import DETACH  # the router is loaded by the first job, not by listing tools

        tasks = [tracked.task for tracked in self._running.values()]
        self._running.clear()
        for task in tasks:
            task.cancel(msg=DETACH)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _adopt(self, job_id: str) -> _Tracked | None:
        """Follow a job this process did not start, if the store says an attempt of it is open."""
        attempts = self.router.store.attempts_for(job_id)  # raises JobNotFound
        if not any(a.status in OPEN_ATTEMPT for a in attempts):
            return None
        tracked = _Tracked()
        tracked.task = asyncio.create_task(self.router.follow_job(job_id, tracked.report))
        self._track(job_id, tracked)
        return tracked

    def _track(self, job_id: str, tracked: _Tracked) -> None:
        self._running[job_id] = tracked

        def done(task: asyncio.Task[GenerationResult | None]) -> None:
            if self._running.get(job_id) is tracked:
                del self._running[job_id]
            if not task.cancelled():
                task.exception()  # retrieved: a failure nobody waits for is in the store, not in the log

        tracked.task.add_done_callback(done)

    def _stored_view(self, job_id: str) -> JobView:
        job = self.router.store.get_job(job_id)
        if job.status == "succeeded" and job.result is not None:
            return JobView(job_id, "succeeded", result=GenerationResult.model_validate(job.result))
        if job.status in ("failed", "cancelled"):
            return JobView(job_id, job.status, error=job.error or f"job {job.status}")
        raise JobNotFound(f"job {job_id} is {job.status} but no provider job of it is in flight to follow")
