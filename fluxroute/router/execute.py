"""Running a plan: reserve budget, try candidates in order, record every attempt, save outputs, bill once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from fluxroute.catalog import Catalog
from fluxroute.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    Cancelled,
    ContentFiltered,
    NoRouteError,
    ProviderError,
    ProviderTimeout,
)
from fluxroute.providers.base import ProgressCallback, Provider, ProviderResult
from fluxroute.router.pricing import estimate_cost
from fluxroute.settings import Settings
from fluxroute.store import AttemptRecord, JobRecord, JobStore, Reservation
from fluxroute.store.images import ImageStore
from fluxroute.types import Candidate, GenerationResult, ImageRequest, Plan

T = TypeVar("T")

# Cancel message meaning "stop following, do not cancel at the provider" (a server shutting down).
DETACH = "fluxroute: detach"

# errors after which trying the next candidate cannot help, or would go against the caller
STOP_ERRORS = (Cancelled, ContentFiltered)


@dataclass(frozen=True)
class _Run:
    """One candidate tried for one job: what each step of the attempt needs, and what a restart restores."""

    job: JobRecord
    request: ImageRequest
    plan: Plan
    candidate: Candidate
    reservation: Reservation
    out_dir: Path | None

    def detail(self) -> dict[str, object]:
        """What the attempt record keeps so that `from_attempt` can rebuild this run after a crash."""
        held = self.reservation
        return {
            "candidate": self.candidate.model_dump(mode="json"),
            "reservation": {"id": held.id, "amount": str(held.amount), "day": str(held.day)},
            "out_dir": str(self.out_dir) if self.out_dir else None,
        }

    @classmethod
    def from_attempt(cls, attempt: AttemptRecord, job: JobRecord, usage: str) -> _Run:
        detail = attempt.detail or {}
        candidate = Candidate.model_validate(detail["candidate"])
        held = detail["reservation"]
        assert isinstance(held, dict)
        reservation = Reservation(
            id=int(held["id"]),
            job_id=attempt.job_id,
            amount=Decimal(held["amount"]),
            day=date.fromisoformat(held["day"]),
        )
        request = ImageRequest.model_validate(job.request)
        plan = Plan.model_validate(
            {
                "request": job.request,
                "usage": request.usage or usage,
                "target_width": candidate.width,
                "target_height": candidate.height,
                "candidates": [candidate],
                "rejections": [],
                "explanation": f"resumed {candidate.label} job {attempt.provider_job_id} after a restart",
            }
        )
        out_dir = detail.get("out_dir")
        return cls(job, request, plan, candidate, reservation, Path(str(out_dir)) if out_dir else None)


class Executor:
    """Carries out plans. Every provider call is recorded in the store before it is made and after it
    returns, so a crash leaves enough behind to resume the job without submitting it again."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: JobStore,
        provider_for: Callable[[str], Provider],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.provider_for = provider_for

    async def run(
        self,
        request: ImageRequest,
        plan: Plan,
        progress: ProgressCallback | None,
        out_dir: Path | None,
        on_job: Callable[[str], None] | None = None,
    ) -> GenerationResult:
        known = request.idempotency_key is not None and self.store.find_job_by_key(request.idempotency_key)
        if not plan.candidates and not known:
            reasons = [str(r) for r in plan.rejections] + [
                f"{c.label}: not available ({c.unavailable_reason})" for c in plan.unavailable
            ]
            raise NoRouteError("no configured offer can serve this request", reasons)
        job, created = self.store.create_job(request.model_dump(mode="json"), request.idempotency_key, status="running")
        if on_job is not None:
            on_job(job.id)
        if not created:
            return await self._existing(job, progress)
        failures: list[ProviderError] = []
        budget_errors: list[BudgetExceeded] = []
        for candidate in plan.candidates:
            try:
                reservation = self.store.reserve(
                    job.id,
                    Decimal(str(candidate.cost_usd)),
                    per_call_cap=self.settings.budget_per_call_usd,
                    daily_cap=self.settings.budget_daily_usd,
                )
            except BudgetExceeded as exc:
                budget_errors.append(exc)
                continue
            try:
                return await self._attempt(_Run(job, request, plan, candidate, reservation, out_dir), progress)
            except ProviderError as exc:
                failures.append(exc)
                if isinstance(exc, STOP_ERRORS) or exc.maybe_accepted:
                    self.store.update_job(
                        job.id, status="cancelled" if isinstance(exc, Cancelled) else "failed", error=str(exc)
                    )
                    raise
        error: Exception = AllProvidersFailed(failures) if failures else budget_errors[0]
        self.store.update_job(job.id, status="failed", error=str(error))
        raise error

    async def _attempt(self, run: _Run, progress: ProgressCallback | None) -> GenerationResult:
        candidate = run.candidate
        attempt = self.store.start_attempt(
            run.job.id,
            offer_id=candidate.offer_id,
            provider=candidate.provider,
            model=candidate.model,
            estimated_cost=Decimal(str(candidate.cost_usd)),
            detail=run.detail(),
        )
        provider = self.provider_for(candidate.provider)
        try:
            # a cancelled caller still lets the POST finish: an accepted job must be known to be cancelled
            provider_job_id, cancelled = await _outlast_cancel(
                provider.submit(candidate, webhook_url=self._webhook_url(candidate.provider))
            )
        except BaseException as exc:
            self.store.finish_attempt(attempt.id, status="failed", error=_safe(exc))
            self.store.release(run.reservation)
            raise
        attempt = self.store.mark_submitted(attempt.id, provider_job_id)
        if cancelled:
            await self._abandon(run, attempt, asyncio.CancelledError())
            raise asyncio.CancelledError
        return await self._follow(run, attempt, progress)

    def _webhook_url(self, provider: str) -> str | None:
        base = self.settings.webhook_base_url
        return f"{base.rstrip('/')}/webhooks/{provider}" if base else None

    async def _follow(self, run: _Run, attempt: AttemptRecord, progress: ProgressCallback | None) -> GenerationResult:
        candidate, reservation = run.candidate, run.reservation
        provider = self.provider_for(candidate.provider)
        provider_job_id = attempt.provider_job_id or ""
        try:
            result = await provider.wait(provider_job_id, candidate, progress, self.settings.provider_timeout_s)
        except (asyncio.CancelledError, ProviderTimeout) as exc:
            if isinstance(exc, asyncio.CancelledError) and DETACH in exc.args:
                raise  # this process stops following; the job stays in flight for the next one to resume
            await self._abandon(run, attempt, exc)
            raise
        except ProviderError as exc:
            self.store.finish_attempt(
                attempt.id, status="cancelled" if isinstance(exc, Cancelled) else "failed", error=_safe(exc)
            )
            self.store.release(reservation)
            raise
        # saving images and the final store writes block, so they run off the event loop; the images are
        # paid for, so a caller cancelling now still gets them saved (and the job recorded as succeeded)
        generation, cancelled = await _outlast_cancel(asyncio.to_thread(self._complete, run, attempt, result))
        if cancelled:
            raise asyncio.CancelledError
        return generation

    async def _abandon(self, run: _Run, attempt: AttemptRecord, why: BaseException) -> None:
        """Stop the provider's job so it is not billed for work nobody will collect; record why."""
        with contextlib.suppress(ProviderError):
            await asyncio.shield(
                self.provider_for(run.candidate.provider).cancel(attempt.provider_job_id or "", run.candidate)
            )
        cancelled = isinstance(why, asyncio.CancelledError)
        self.store.finish_attempt(attempt.id, status="cancelled" if cancelled else "failed", error=_safe(why))
        self.store.release(run.reservation)
        if cancelled:
            self.store.update_job(run.job.id, status="cancelled", error="cancelled by the caller")

    def _complete(self, run: _Run, attempt: AttemptRecord, result: ProviderResult) -> GenerationResult:
        job, request, candidate = run.job, run.request, run.candidate
        cost = billed_cost(self.catalog, candidate, request, result)
        # bill first: the money is spent whether or not saving the files works
        self.store.settle(run.reservation, cost, attempt.id)
        images = ImageStore(run.out_dir or self.settings.images_dir)
        seed = result.seed if result.seed is not None else request.seed
        parameters: dict[str, object] = {
            "prompt": request.prompt,
            "model": candidate.model,
            "provider": candidate.provider,
            "endpoint": candidate.endpoint,
            "params": {k: v for k, v in candidate.params.items() if k != "prompt"},
            "seed": seed,
            "job_id": job.id,
            "provider_job_id": result.provider_job_id,
        }
        if result.review is not None:
            parameters["review"] = result.review
        saved = [
            images.save(
                image,
                job_id=job.id,
                index=i,
                prompt=request.prompt,
                output_format=request.output_format,
                seed=seed,
                parameters=parameters,
            )
            for i, image in enumerate(result.images)
        ]
        warnings = [str(adj) for adj in candidate.adjustments]
        if any(image.flagged for image in saved):
            warnings.append("the provider's safety checker flagged at least one image (returned blank)")
        warnings.extend(result.warnings)
        generation = GenerationResult(
            job_id=job.id,
            images=saved,
            provider=candidate.provider,
            model=candidate.model,
            offer_id=candidate.offer_id,
            cost_usd=float(cost),
            seed=seed,
            timings=result.timings,
            plan=run.plan,
            warnings=warnings,
        )
        self.store.finish_attempt(attempt.id, status="succeeded", cost=cost)
        self.store.update_job(job.id, status="succeeded", result=generation.model_dump(mode="json"))
        return generation

    async def _existing(self, job: JobRecord, progress: ProgressCallback | None) -> GenerationResult:
        """Same idempotency key again: the stored result, or the in-flight attempt followed; never a new job."""
        if job.status == "succeeded" and job.result is not None:
            return GenerationResult.model_validate(job.result)
        in_flight = [a for a in self.store.attempts_for(job.id) if a.status == "in_flight"]
        if in_flight:
            return await self.resume(in_flight[-1], progress)
        raise NoRouteError(f"job {job.id} for this idempotency key ended {job.status}: {job.error or 'no result'}")

    async def resume(self, attempt: AttemptRecord, progress: ProgressCallback | None = None) -> GenerationResult:
        """Finish an attempt a previous process submitted: wait for it, save it, bill it once."""
        job = self.store.get_job(attempt.job_id)
        run = _Run.from_attempt(attempt, job, self.settings.usage)
        self.store.update_job(job.id, status="running")
        try:
            return await self._follow(run, attempt, progress)
        except ProviderError as exc:
            self.store.update_job(job.id, status="failed", error=str(exc))
            raise


async def _outlast_cancel(work: Awaitable[T]) -> tuple[T, bool]:
    """Await `work` to its end even if the caller is cancelled meanwhile; also say whether it was."""
    future = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(future), cancelled
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            cancelled = True


def billed_cost(catalog: Catalog, candidate: Candidate, request: ImageRequest, result: ProviderResult) -> Decimal:
    """What the provider bills for the images it returned: the offer's price rule, for that many images."""
    price = catalog.offer(candidate.offer_id).price
    if price.unit == "gpu_second":
        return Decimal(str(candidate.cost_usd))
    return estimate_cost(
        price,
        width=candidate.width,
        height=candidate.height,
        num_images=len(result.images),
        style_references=bool(request.style_references),
    )


def _safe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
