"""Running a plan: reserve budget, try candidates in order, record every attempt, save outputs, bill once.

The money rule, enforced here. From the moment a provider *may* have accepted a job (its POST left this
machine and no clean refusal came back) the job's estimated cost stays reserved — **at risk** — until the
provider's own state proves it was not billed (the reservation is released) or the job completes (the
reservation becomes a charge). Every provider failure says which through `ProviderError.billing`:

- "unbilled": the attempt is closed and its reservation released; the next candidate may run;
- "charged": the charge is booked (the provider billed a job whose images the caller will not get);
- "at_risk": the reservation stays open and the attempt stays open for `fluxroute jobs resume`; the call
  ends with PaymentAtRisk and no other provider is paid.

An error without a verdict counts as "unbilled" before the POST was sent and "at_risk" after it. Caps
count charges + open reservations (the at-risk amounts among them), so providers never bill past a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeVar

from fluxroute.catalog import Catalog
from fluxroute.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    Cancelled,
    ContentFiltered,
    FluxrouteError,
    JobBusy,
    NoRouteError,
    PaymentAtRisk,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResultNotSaved,
)
from fluxroute.providers.base import BillingCheck, CancelAnswer, JobListing, ProgressCallback, Provider, ProviderResult
from fluxroute.providers.polling import EXPECTED, Expectation
from fluxroute.providers.polling import learned as learned_expectation
from fluxroute.redact import redact, settings_secrets
from fluxroute.router.input_images import Parent
from fluxroute.router.pricing import compute_time_cost, estimate_cost
from fluxroute.settings import Settings
from fluxroute.store import AttemptRecord, AttemptStart, CallStart, JobChange, JobRecord, Reservation, Store, leases
from fluxroute.store.images import ImageStore, read_parameters
from fluxroute.store.leases import Owner, this_process
from fluxroute.store.money import usd
from fluxroute.types import Candidate, GenerationResult, ImageRequest, Plan

T = TypeVar("T")

# Cancel message meaning "stop following, do not cancel at the provider" (a server shutting down).
DETACH = "fluxroute: detach"

# errors after which trying the next candidate cannot help, or would go against the caller
STOP_ERRORS = (Cancelled, ContentFiltered)

# A submission whose answer was lost may have created a job from just before its POST left until its
# answer was due (the clients' 120 s timeout), give or take the provider's clock.
SUBMIT_WINDOW = timedelta(seconds=120)
CLOCK_SKEW = timedelta(seconds=10)
# resuming an attempt that fails in an unexpected way this often gives it up (a poison job)
MAX_RESUME_FAILURES = 3
# how often a job another live process follows (same idempotency key) is looked up in the store
WATCH_POLL_S = 0.25
# an offer's learned latency replaces the planner's estimate once this many of its jobs completed
LEARN_AFTER = 3

Found = str | Literal["unbilled"] | None


@dataclass(frozen=True)
class _Run:
    """One candidate tried for one job: what each step of the attempt needs, and what a restart restores."""

    job: JobRecord
    request: ImageRequest
    plan: Plan
    candidate: Candidate
    reservation: Reservation
    out_dir: Path | None
    # the earlier results its input image came from (lineage: recorded and embedded with its images)
    parents: tuple[Parent, ...] = ()

    @classmethod
    def from_attempt(cls, attempt: AttemptRecord, job: JobRecord, usage: str, store: Store) -> _Run:
        detail = attempt.detail or {}
        candidate = Candidate.model_validate(detail["candidate"])
        held = detail.get("reservation")  # attempts recorded before schema version 5 keep it here
        if isinstance(held, dict):
            reservation = Reservation(
                id=int(held["id"]),
                job_id=attempt.job_id,
                amount=Decimal(held["amount"]),
                day=date.fromisoformat(held["day"]),
            )
        else:
            assert attempt.reservation_id is not None, "every attempt holds a reservation"
            reservation = store.reservation(attempt.reservation_id)
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
        listed = detail.get("parents")
        parents = tuple(Parent(*parent) for parent in listed) if isinstance(listed, list) else ()
        return cls(job, request, plan, candidate, reservation, Path(str(out_dir)) if out_dir else None, parents)


def attempt_start(candidate: Candidate, out_dir: Path | None, parents: tuple[Parent, ...] = ()) -> AttemptStart:
    """What an attempt of `candidate` records before its provider is called; its detail is what
    `_Run.from_attempt` rebuilds the run from after a restart."""
    detail: dict[str, object] = {
        "candidate": candidate.model_dump(mode="json"),
        "out_dir": str(out_dir) if out_dir else None,
    }
    if parents:
        detail["parents"] = [list(parent) for parent in parents]
    return AttemptStart(
        candidate.offer_id, candidate.provider, candidate.model, Decimal(str(candidate.cost_usd)), detail
    )


@dataclass(frozen=True)
class CancelReport:
    """What cancelling a job came to: the provider's answer and what it means for the money."""

    job_id: str
    answer: CancelAnswer | None
    message: str


class Executor:
    """Carries out plans. Every provider call is recorded in the store before it is made and after it
    returns, so a crash leaves enough behind to resume the job without submitting it again."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: Store,
        provider_for: Callable[[str], Provider],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.provider_for = provider_for
        self.owner = this_process()
        # errors that did not come through a provider's own mapping may carry any configured secret
        self.secrets = settings_secrets(settings)

    async def run(
        self,
        request: ImageRequest,
        plan: Plan,
        progress: ProgressCallback | None,
        out_dir: Path | None,
        on_job: Callable[[str], None] | None = None,
        parents: tuple[Parent, ...] = (),
    ) -> GenerationResult:
        known = request.idempotency_key is not None and self.store.find_job_by_key(request.idempotency_key)
        if not plan.candidates and not known:
            reasons = [str(r) for r in plan.rejections] + [
                f"{c.label}: not available ({c.unavailable_reason})" for c in plan.unavailable
            ]
            if plan.priced_out:
                raise BudgetExceeded(
                    "every offer that fits costs more than allowed:" + "".join(f"\n- {r}" for r in reasons)
                )
            raise NoRouteError("no configured offer can serve this request", reasons)
        started = await asyncio.to_thread(self._start_call, request, plan, out_dir, parents)
        job = started.job
        if on_job is not None:
            on_job(job.id)
        if not started.created:
            return await self._existing(job, progress)
        failures: list[ProviderError] = []
        budget_errors: list[BudgetExceeded] = []
        for index, candidate in enumerate(plan.candidates):
            if index == 0 and started.refused is not None:
                budget_errors.append(started.refused)
                continue
            if index == 0:
                assert started.reservation is not None and started.attempt is not None
                reservation, attempt = started.reservation, started.attempt
            else:
                try:
                    reservation, attempt = await asyncio.to_thread(
                        self.store.begin_attempt,
                        job.id,
                        attempt_start(candidate, out_dir, parents),
                        per_call_cap=self.settings.budget_per_call_usd,
                        daily_cap=self.settings.budget_daily_usd,
                        owner=self.owner,
                    )
                except BudgetExceeded as exc:
                    budget_errors.append(exc)
                    continue
            try:
                async with self._leased(attempt):
                    return await self._attempt(
                        _Run(job, request, plan, candidate, reservation, out_dir, parents), attempt, progress
                    )
            except ProviderError as exc:
                failures.append(exc)
                if exc.billing != "unbilled":
                    raise  # the job record already says what happened to the money
                if isinstance(exc, STOP_ERRORS):
                    self.store.update_job(
                        job.id, status="cancelled" if isinstance(exc, Cancelled) else "failed", error=str(exc)
                    )
                    raise
        error: Exception = AllProvidersFailed(failures) if failures else budget_errors[0]
        self.store.update_job(job.id, status="failed", error=str(error))
        raise error

    def _start_call(
        self, request: ImageRequest, plan: Plan, out_dir: Path | None, parents: tuple[Parent, ...] = ()
    ) -> CallStart:
        """The call's job with its first attempt and that attempt's budget, in one transaction (or the job an
        earlier call made under the same idempotency key)."""
        record = request.model_dump(mode="json")
        if not plan.candidates:  # only an earlier job under this key can answer
            job, created = self.store.create_job(record, request.idempotency_key, status="running")
            return CallStart(job, created)
        return self.store.start_call(
            record,
            request.idempotency_key,
            attempt_start(plan.candidates[0], out_dir, parents),
            per_call_cap=self.settings.budget_per_call_usd,
            daily_cap=self.settings.budget_daily_usd,
            owner=self.owner,
        )

    @contextlib.asynccontextmanager
    async def _leased(self, attempt: AttemptRecord) -> AsyncIterator[None]:
        """Hold this process's lease on `attempt` while the body follows it, renewing it every RENEW_EVERY_S.
        Should another process take the attempt up after the lease ran out (this one was stalled past it),
        the body is stopped without touching the provider job: the other process saves and bills it.

        Raises:
            JobBusy: the lease was lost to another process.
        """
        body = asyncio.current_task()
        lost = False

        async def renew() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(leases.RENEW_EVERY_S)
                try:
                    held = await asyncio.to_thread(self.store.renew_lease, attempt.id, self.owner)
                except Exception:  # a store hiccup; the lease outlasts a few missed renewals
                    continue
                if held:
                    continue
                now = self._reread(attempt)
                if now.status in ("submitting", "in_flight") and now.lease_owner is not None:
                    lost = True
                    assert body is not None
                    body.cancel(DETACH)
                return

        renewer = asyncio.create_task(renew())
        try:
            yield
        except asyncio.CancelledError:
            if not lost:
                raise
            assert body is not None
            body.uncancel()
            holder = Owner.parse(str(self._reread(attempt).lease_owner))
            raise JobBusy(
                f"job {attempt.job_id} was taken up by {holder.describe()} after this process's lease on it ran "
                "out; that process saves and bills the result"
            ) from None
        finally:
            renewer.cancel()

    # --- one attempt -------------------------------------------------------------------------------

    async def _attempt(self, run: _Run, attempt: AttemptRecord, progress: ProgressCallback | None) -> GenerationResult:
        candidate = run.candidate
        provider = self.provider_for(candidate.provider)
        cancelled = False
        try:
            # a cancelled caller still lets the POST finish: an accepted job must be known to be cancelled
            provider_job_id, cancelled = await _outlast_cancel(
                provider.submit(candidate, webhook_url=self._webhook_url(candidate.provider))
            )
        except ProviderError as exc:
            if (exc.billing or "unbilled") == "unbilled":
                exc.billing = "unbilled"
                self.store.finish_call(attempt.id, run.reservation, status="failed", cost=None, error=_safe(exc))
                raise
            await self._find_submission(run, attempt, exc)
            attempt = self._reread(attempt)
        except Exception as exc:  # a fault in our own submit code: the POST may have left
            cause = ProviderUnavailable(f"submission failed: {_safe(exc, self.secrets)}", provider=candidate.provider)
            await self._find_submission(run, attempt, cause)
            attempt = self._reread(attempt)
        else:
            attempt = await asyncio.to_thread(self.store.mark_submitted, attempt.id, provider_job_id)
        if cancelled:
            await self._stop(run, attempt, "cancelled by the caller", caller_gone=True)
            raise asyncio.CancelledError
        return await self._follow(run, attempt, progress)

    def _webhook_url(self, provider: str) -> str | None:
        base = self.settings.webhook_base_url
        return f"{base.rstrip('/')}/webhooks/{provider}" if base else None

    async def _find_submission(self, run: _Run, attempt: AttemptRecord, cause: ProviderError) -> str:
        """A submission whose answer was lost: find the job it may have created, or prove there is none.

        Raises:
            ProviderError: `cause`, marked "unbilled", when the provider's job listing proves no job exists.
            PaymentAtRisk: the job may exist and cannot be identified; its cost stays at risk.
        """
        attempt = self.store.note_attempt(attempt.id, error=f"{_safe(cause)} (looking for the job)"[:500])
        found = await self.reconcile(attempt)
        if found == "unbilled":
            cause.billing = "unbilled"
            note = f"{_safe(cause)}; no job was created (checked the provider's job listing twice)"
            self.store.finish_call(attempt.id, run.reservation, status="failed", cost=None, error=note[:500])
            raise cause
        if found is not None:
            return found
        raise self._at_risk(run, attempt, cause, "the submission's answer was lost")

    async def reconcile(self, attempt: AttemptRecord) -> Found:
        """Look for the job an unanswered submission may have created, in the provider's job listing.

        Jobs created inside the attempt's submit window whose ids no attempt holds, of any type: none on two
        listings `reconcile_delay_s` apart proves the submission created nothing ("unbilled"). Otherwise the
        candidates are those of them that a third listing, filtered by the job type the attempt's endpoint
        creates (the account's jobs from Krea's web app or other tools are listed too), also holds: exactly
        one is adopted (the attempt goes in flight with its id). Several, none of our type (another type's
        job proves nothing about ours: its type name may be unknown here), a provider without a listing, or a
        listing that fails, leave it unknown (None).
        """
        provider = self.provider_for(attempt.provider)
        if not isinstance(provider, JobListing):
            return None
        start = attempt.started_at - CLOCK_SKEW
        end = min(datetime.now(UTC), attempt.started_at + SUBMIT_WINDOW) + CLOCK_SKEW
        try:
            first = await provider.jobs_created_between(start, end)
            await self._others_answered(attempt)
            second = await provider.jobs_created_between(start, end)
        except ProviderError:
            return None
        seen = list(dict.fromkeys(first + second))
        unknown = [job_id for job_id in seen if job_id not in self.store.known_provider_jobs(attempt.provider, seen)]
        if not unknown:
            return "unbilled"
        job_type = provider.job_type(Candidate.model_validate((attempt.detail or {})["candidate"]))
        if job_type is None:
            return None
        try:
            ours = set(await provider.jobs_created_between(start, end, types=job_type))
        except ProviderError:
            return None
        unknown = [job_id for job_id in unknown if job_id in ours]
        if not unknown:
            return None
        rivals = [
            other
            for other in self.store.submitting_attempts()
            if other.provider == attempt.provider and other.id != attempt.id
        ]
        if len(unknown) > 1 or rivals:
            return None  # another lost answer in the same window: the job could be either one's
        try:
            self.store.mark_submitted(attempt.id, unknown[0], {"adopted_from_listing": True})
        except ValueError:
            return None  # another attempt took it meanwhile
        return unknown[0]

    async def _others_answered(self, attempt: AttemptRecord) -> None:
        """Pause `reconcile_delay_s`, and longer (up to a submission's timeout) while other submissions to the
        same provider are still waiting for their answers: their jobs are in the listing too, and only an
        answer tells whose they are. Submissions that lost their answer as well are not waited for."""
        await asyncio.sleep(self.settings.reconcile_delay_s)
        deadline = asyncio.get_running_loop().time() + SUBMIT_WINDOW.total_seconds()
        while asyncio.get_running_loop().time() < deadline:
            pending = [
                other
                for other in self.store.submitting_attempts()
                if other.provider == attempt.provider and other.id != attempt.id and other.error is None
            ]
            if not pending:
                return
            await asyncio.sleep(max(self.settings.reconcile_delay_s, 0.01))

    async def _follow(self, run: _Run, attempt: AttemptRecord, progress: ProgressCallback | None) -> GenerationResult:
        candidate = run.candidate
        provider = self.provider_for(candidate.provider)
        expectation = self._expectation(candidate, attempt)
        following = EXPECTED.set(expectation)
        try:
            result = await provider.wait(
                attempt.provider_job_id or "", candidate, progress, self.settings.provider_timeout_s
            )
        except asyncio.CancelledError as exc:
            if DETACH in exc.args:  # this process stops following; the job stays in flight for the next one
                self.store.let_go(attempt.id, self.owner)
                raise
            await self._stop(run, attempt, "cancelled by the caller", caller_gone=True)
            raise
        except ProviderTimeout as exc:
            return await self._stop(run, attempt, _safe(exc), caller_gone=False)
        except ProviderError as exc:
            raise self._failed(run, attempt, exc) from None
        except Exception as exc:  # a fault in our own code or an answer nothing expected: never leave it running
            raise await self._unexpected(run, attempt, exc) from None
        finally:
            EXPECTED.reset(following)
        generation = await self._save(run, attempt, result)
        await self._observe_latency(candidate, expectation)
        return generation

    def _expectation(self, candidate: Candidate, attempt: AttemptRecord) -> Expectation:
        """When the job should finish: the offer's learned latency once LEARN_AFTER jobs taught it, else the
        planner's estimate (the catalog's figure scaled to the request)."""
        since = max((datetime.now(UTC) - attempt.started_at).total_seconds(), 0.0)
        learned = self.store.latency_stats(candidate.offer_id)
        if learned is None or learned.n < LEARN_AFTER:
            return Expectation(candidate.latency_s, since_submit_s=since)
        return learned_expectation(candidate.latency_s, learned.log_ratio, learned.abs_dev, learned.n, since)

    async def _observe_latency(self, candidate: Candidate, expectation: Expectation) -> None:
        """Teach the offer's learned latency how long this job took (its own short write, off the event loop).
        Learning is an optimisation: a failure here never fails a job that has been saved and billed."""
        finished = expectation.finished_s()
        if finished is None or finished <= 0 or candidate.latency_s <= 0:
            return
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self.store.observe_latency, candidate.offer_id, math.log(finished / candidate.latency_s)
            )

    async def _stop(self, run: _Run, attempt: AttemptRecord, why: str, *, caller_gone: bool) -> GenerationResult:
        """Ask the provider to cancel a job nobody will wait for, then follow it briefly to its final state,
        which decides the money: cancelled → released; completed → saved and charged; unknown → at risk.
        Runs to its end even when the caller is gone."""

        async def settle() -> GenerationResult:
            provider = self.provider_for(run.candidate.provider)
            job_id = attempt.provider_job_id or ""
            try:
                answer: CancelAnswer = await provider.cancel(job_id, run.candidate)
            except ProviderError:
                answer = "refused"
            self.store.note_attempt(attempt.id, detail={"cancel_answer": answer, "stopped": why})
            if answer == "cancelled":
                kind = Cancelled if caller_gone else ProviderTimeout  # a timeout may still fall back
                error = kind(f"{why}; {provider.name} {_ANSWERS[answer]}", provider=provider.name, billing="unbilled")
                raise self._failed(run, attempt, error)
            try:
                result = await provider.wait(job_id, run.candidate, None, self.settings.cancel_settle_s)
            except ProviderTimeout:
                raise self._at_risk(
                    run, attempt, ProviderTimeout(why, provider=provider.name), _ANSWERS[answer]
                ) from None
            except ProviderError as exc:
                raise self._failed(run, attempt, exc) from None
            return await asyncio.to_thread(self._complete, run, attempt, result)

        if not caller_gone:
            outcome, _ = await _outlast_cancel(settle())
            return outcome
        try:
            outcome, _ = await _outlast_cancel(settle())
        except FluxrouteError as exc:
            billing = exc.billing if isinstance(exc, ProviderError) else "at_risk"
            said = {"unbilled": "not charged", "charged": "too late, charged", "at_risk": "may still be charged"}
            job = self.store.get_job(run.job.id)
            detail = job.error if billing != "unbilled" and job.error else str(exc)
            self.store.update_job(
                run.job.id, status="cancelled", error=f"cancelled by the caller; {said[billing or 'at_risk']}: {detail}"
            )
        else:
            return outcome
        raise asyncio.CancelledError

    def _failed(self, run: _Run, attempt: AttemptRecord, exc: ProviderError) -> FluxrouteError:
        """Settle an attempt by what the failure says about money; returns the error the caller sees."""
        billing = exc.billing or "at_risk"
        exc.billing = billing
        if billing == "unbilled":
            status: Literal["cancelled", "failed"] = "cancelled" if isinstance(exc, Cancelled) else "failed"
            self.store.finish_call(attempt.id, run.reservation, status=status, cost=None, error=_safe(exc))
            return exc
        if billing == "charged":
            cost = billed_cost(self.catalog, run.candidate, run.request, run.candidate.num_images, exc.compute_seconds)
            message = f"{exc} — {run.candidate.provider} billed it: {usd(cost)} charged"
            self.store.finish_call(
                attempt.id,
                run.reservation,
                status="failed",
                cost=cost,
                error=_safe(exc),
                job=JobChange("failed", message),
            )
            exc.args = (message,)
            return exc
        return self._at_risk(run, attempt, exc, "its outcome is not known")

    def _at_risk(self, run: _Run, attempt: AttemptRecord, exc: ProviderError, why: str) -> PaymentAtRisk:
        """Leave the attempt open with its budget held; the job record says how to collect it."""
        held = usd(run.reservation.amount)
        job_ref = attempt.provider_job_id or "(no id: the submission's answer was lost)"
        message = (
            f"{run.candidate.label} job {job_ref} may still be billed: {why} ({exc}). {held} stays counted "
            f"against the budget as at risk, and no other provider was tried; `fluxroute jobs resume` collects "
            f"the job ({run.job.id}) once the provider settles it, or `fluxroute jobs settle` closes it by what "
            "the provider's own records say"
        )
        self.store.let_go(attempt.id, self.owner, error=_safe(exc))
        self.store.update_job(run.job.id, status="failed", error=message)
        return PaymentAtRisk(
            message, job_id=run.job.id, provider=run.candidate.provider, provider_job_id=attempt.provider_job_id
        )

    async def _unexpected(self, run: _Run, attempt: AttemptRecord, exc: Exception) -> FluxrouteError:
        """An exception no rule covers: at risk. After MAX_RESUME_FAILURES of them the attempt is given up (a
        poison job): the job is marked failed with its reason and its budget settled by what the provider's own
        state says — released when it proves the job unbilled, charged when it was billed or cannot tell (the
        money counts until the provider proves otherwise)."""
        attempt = self._reread(attempt)
        count = int(str((attempt.detail or {}).get("resume_failures", 0))) + 1
        self.store.note_attempt(attempt.id, detail={"resume_failures": count})
        reason = f"unexpected {_safe(exc, self.secrets)}"
        error = ProviderUnavailable(reason, provider=run.candidate.provider)
        if count < MAX_RESUME_FAILURES:
            error.billing = "at_risk"
            return self._failed(run, attempt, error)
        provider = self.provider_for(run.candidate.provider)
        verdict = None
        if isinstance(provider, BillingCheck) and attempt.provider_job_id:
            verdict = await provider.billing_state(attempt.provider_job_id, run.candidate)
        error.billing = "unbilled" if verdict == "unbilled" else "charged"
        said = {
            "unbilled": "the provider's state shows it was not billed: released",
            "charged": "the provider billed it: charged",
            "at_risk": "the provider may have billed it: charged",
            None: "the provider's state could not tell whether it was billed: charged",
        }[verdict]
        error.args = (f"{reason} (gave up after {count} failures; {said})",)
        settled = self._failed(run, attempt, error)
        self.store.update_job(run.job.id, status="failed", error=str(settled))
        return settled

    async def _save(self, run: _Run, attempt: AttemptRecord, result: ProviderResult) -> GenerationResult:
        # saving images and the final store writes block, so they run off the event loop; the images are
        # paid for, so a caller cancelling now still gets them saved (and the job recorded as succeeded)
        generation, cancelled = await _outlast_cancel(asyncio.to_thread(self._complete, run, attempt, result))
        if cancelled:
            raise asyncio.CancelledError
        return generation

    def _complete(self, run: _Run, attempt: AttemptRecord, result: ProviderResult) -> GenerationResult:
        job, request, candidate = run.job, run.request, run.candidate
        cost = billed_cost(self.catalog, candidate, request, len(result.images), result.compute_seconds)
        # until the charge below is written, the reservation keeps the job's cost counted (at risk)
        try:
            generation = self._save_images(run, result, cost)
        except Exception as exc:
            message = (
                f"{candidate.provider} billed {usd(cost)} for job {result.provider_job_id}, but its images could not "
                f"be saved here ({_safe(exc, self.secrets)}); `fluxroute jobs resume` fetches them again while the "
                "provider keeps them"
            )
            self.store.settle(run.reservation, cost, attempt.id)  # the money is spent all the same
            self.store.let_go(attempt.id, self.owner, error=message[:500])
            self.store.update_job(job.id, status="failed", error=message)
            raise ResultNotSaved(message, job_id=job.id) from exc
        self.store.finish_call(
            attempt.id,
            run.reservation,
            status="succeeded",
            cost=cost,
            job=JobChange("succeeded", result=generation.model_dump(mode="json")),
        )
        for index in range(len(generation.images)):
            for parent in run.parents:
                self.store.record_lineage(job.id, index, parent.job_id, parent.image_index, parent.relation)
        return generation

    def _source_parameters(self, parents: tuple[Parent, ...]) -> dict[str, object]:
        """The parameters embedded in the image an upscale was made from (empty when it is not an upscale of a
        saved result, or they cannot be read: the upscale is saved all the same)."""
        parent = next((p for p in parents if p.relation == "upscaled_from"), None)
        if parent is None:
            return {}
        try:
            images = (self.store.get_job(parent.job_id).result or {}).get("images")
            path = Path(str(images[parent.image_index]["path"]))  # type: ignore[index]
            return read_parameters(path)
        except (FluxrouteError, LookupError, TypeError, OSError, ValueError):
            return {}

    def _save_images(self, run: _Run, result: ProviderResult, cost: Decimal) -> GenerationResult:
        job, request, candidate = run.job, run.request, run.candidate
        images = ImageStore(run.out_dir or self.settings.images_dir)
        seed = result.seed if result.seed is not None else request.seed
        replica = str(self.owner)  # this_process(), or the owner a test gave the executor
        parameters: dict[str, object] = {
            "prompt": request.prompt,
            "model": candidate.model,
            "provider": candidate.provider,
            "endpoint": candidate.endpoint,
            # input images as the caller named them (a data: URI would copy a whole image into the metadata)
            "params": {k: _shown(v) for k, v in candidate.params.items() if k != "prompt"},
            "seed": seed,
            "job_id": job.id,
            "provider_job_id": result.provider_job_id,
            "replica": replica,  # which process (of replicas sharing the store) wrote the image
        }
        if result.worker is not None:
            parameters["worker"] = result.worker  # which fleet replica made the image
        if result.review is not None:
            parameters["review"] = result.review
        if run.parents:
            parameters["lineage"] = [f"{p.relation} job:{p.job_id}/{p.image_index}" for p in run.parents]
        source = self._source_parameters(run.parents)
        if source:
            parameters["source"] = source  # an upscale keeps what made its source: prompt, model, seed, ...
        # each image's own seed where the provider reports one per image (image i: seed + i), else the call's
        seeds = result.seeds if len(result.seeds) == len(result.images) else [seed] * len(result.images)
        saved = [
            images.save(
                image,
                job_id=job.id,
                index=i,
                prompt=request.prompt,
                output_format=request.output_format,
                seed=seeds[i],
                parameters=parameters | {"seed": seeds[i]},
            )
            for i, image in enumerate(result.images)
        ]
        warnings = [str(adj) for adj in candidate.adjustments]
        if any(image.flagged for image in saved):
            warnings.append("the provider's safety checker flagged at least one image (returned blank)")
        warnings.extend(result.warnings)
        if self.catalog.offer(candidate.offer_id).price.unit == "compute_second" and result.compute_seconds is None:
            warnings.append(
                f"cost estimated: {candidate.provider} reported no compute time for this job, so it is charged at "
                f"the estimate, {usd(cost)}"
            )
        return GenerationResult(
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
            replica=replica,
            worker=result.worker,
        )

    # --- jobs a previous call or process left open -------------------------------------------------

    async def _existing(self, job: JobRecord, progress: ProgressCallback | None) -> GenerationResult:
        """Same idempotency key again: the stored result, or the job followed to its end (follow_job); never a new
        job."""
        result = await self.follow_job(job.id, progress)
        if result is not None:
            return result
        job = self.store.get_job(job.id)
        if any(a.status == "submitting" for a in self.store.attempts_for(job.id)):
            raise NoRouteError(
                f"job {job.id} for this idempotency key was cut off while it was being submitted; "
                "`fluxroute jobs resume` recovers it"
            )
        raise NoRouteError(f"job {job.id} for this idempotency key ended {job.status}: {job.error or 'no result'}")

    async def follow_job(self, job_id: str, progress: ProgressCallback | None = None) -> GenerationResult | None:
        """Job `job_id` followed to its end from wherever it stands: its stored result once it succeeded; an
        attempt no live process follows is resumed here; while one does (a concurrent call, another replica on the
        shared store), the store is watched until that process ends the job. None: it ended without a result,
        its submission was cut off with its process, or it stayed running with no open attempt for a lease's
        length (its process stopped between attempts); its record says which.

        Raises:
            FluxrouteError: what resuming it here raises (a provider failure, a result not saved).
        """
        idle_since: float | None = None
        while True:
            job = await asyncio.to_thread(self.store.get_job, job_id)
            if job.status == "succeeded" and job.result is not None:
                return GenerationResult.model_validate(job.result)
            attempts = await asyncio.to_thread(self.store.attempts_for, job_id)
            open_attempts = [a for a in attempts if a.status in ("submitting", "in_flight")]
            latest = open_attempts[-1] if open_attempts else None
            if latest is not None and latest.status == "in_flight":
                with contextlib.suppress(JobBusy):  # a live process follows it: watch
                    return await self.resume(latest, progress)
            elif latest is not None and leases.attempt_free(latest):
                return None  # cut off mid-submission: `fluxroute jobs resume` recovers it
            now = time.monotonic()
            if latest is None:
                idle_since = idle_since or now
                if job.status not in ("queued", "running") or now - idle_since > leases.LEASE.total_seconds():
                    return None
            else:
                idle_since = None
            await asyncio.sleep(WATCH_POLL_S)

    async def resume(self, attempt: AttemptRecord, progress: ProgressCallback | None = None) -> GenerationResult:
        """Finish an attempt a previous process submitted: wait for it, save it, bill it once.

        Raises:
            JobBusy: a live process follows it (it has not let it go).
        """
        attempt = self._claim(attempt)
        job = self.store.get_job(attempt.job_id)
        run = _Run.from_attempt(attempt, job, self.settings.usage, self.store)
        self.store.update_job(job.id, status="running")
        async with self._leased(attempt):
            return await self._follow(run, attempt, progress)

    async def recover_submission(self, attempt: AttemptRecord) -> AttemptRecord | None:
        """An attempt whose process stopped mid-submission: adopt the job it created (returned in flight),
        release its budget when it created none, or leave it at risk (None) when that cannot be told.

        Raises:
            JobBusy: a live process is still submitting it.
        """
        attempt = self._claim(attempt)
        job = self.store.get_job(attempt.job_id)
        run = _Run.from_attempt(attempt, job, self.settings.usage, self.store)
        found = await self.reconcile(attempt)
        if found == "unbilled":
            self.store.finish_call(
                attempt.id,
                run.reservation,
                status="failed",
                cost=None,
                error="the process stopped while submitting; no job was created",
                job=JobChange("failed", "the process stopped before the job was submitted"),
            )
            return None
        if found is None:
            cause = ProviderUnavailable("the process stopped while submitting", provider=attempt.provider)
            self._at_risk(run, attempt, cause, "it cannot be found in the provider's records")
            return None
        self.store.let_go(attempt.id, self.owner)  # adopted: whoever resumes it takes it up
        return self._reread(attempt)

    def _reread(self, attempt: AttemptRecord) -> AttemptRecord:
        """`attempt` as the store holds it now (its provider job id, lease and status may have changed)."""
        return self.store.attempts_for(attempt.job_id)[attempt.seq - 1]

    def _claim(self, attempt: AttemptRecord) -> AttemptRecord:
        claimed = self.store.claim_attempt(attempt.id, self.owner)
        if claimed is None:
            current = self._reread(attempt)
            where = Owner.parse(current.lease_owner).describe() if current.lease_owner else "another process"
            raise JobBusy(f"job {attempt.job_id} is being followed by {where}; it saves and bills the result")
        return claimed

    async def cancel(self, attempt: AttemptRecord) -> CancelReport:
        """Ask the provider to cancel an open attempt's job and say what that means for the money. A job
        cancelled before it ran is settled unbilled here; otherwise its amount stays at risk until its final
        state is known (the process following it, or `jobs resume`, settles it)."""
        job = self.store.get_job(attempt.job_id)
        run = _Run.from_attempt(attempt, job, self.settings.usage, self.store)
        if attempt.provider_job_id is None:
            return CancelReport(job.id, None, "no provider job id is known for it; nothing to cancel yet")
        provider = self.provider_for(attempt.provider)
        try:
            answer: CancelAnswer = await provider.cancel(attempt.provider_job_id, run.candidate)
        except ProviderError:
            answer = "refused"
        self.store.note_attempt(attempt.id, detail={"cancel_answer": answer})
        held = usd(run.reservation.amount)
        if answer == "cancelled":
            self._failed(run, attempt, Cancelled(_ANSWERS[answer], provider=provider.name, billing="unbilled"))
            self.store.update_job(job.id, status="cancelled", error=f"cancelled: {_ANSWERS[answer]}")
            return CancelReport(job.id, answer, f"{attempt.provider} {_ANSWERS[answer]}")
        return CancelReport(job.id, answer, f"{attempt.provider} {_ANSWERS[answer]}; {held} stays at risk until then")

    def settle(self, attempt: AttemptRecord, *, billed: bool) -> str:
        """Close an attempt at risk by what the person who checked the provider's own records says: billed (its
        amount is charged) or not (released). For answers no listing can find — fal's lost submissions — and
        for outcomes the provider leaves open (a fal request that failed after it ran)."""
        job = self.store.get_job(attempt.job_id)
        run = _Run.from_attempt(attempt, job, self.settings.usage, self.store)
        verdict = "billed" if billed else "not billed"
        error = ProviderUnavailable(
            f"settled by hand: {attempt.provider} {verdict}",
            provider=attempt.provider,
            billing="charged" if billed else "unbilled",
        )
        self._failed(run, attempt, error)
        self.store.update_job(job.id, status="failed", error=str(error))
        amount = usd(run.reservation.amount)
        return f"job {job.id}: {amount} " + ("charged" if billed else "released") + f" ({attempt.provider} {verdict})"


_ANSWERS: dict[str, str] = {
    "cancelled": "cancelled it before it ran: not charged",
    "requested": "was asked to cancel it while it may be running: it may still finish and be charged",
    "refused": "would not cancel it in its current state: it runs on and is charged if it completes",
    "already_ended": "had already finished it: its final state decides the charge",
}


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


def billed_cost(
    catalog: Catalog,
    candidate: Candidate,
    request: ImageRequest,
    num_images: int,
    compute_seconds: float | None = None,
) -> Decimal:
    """What the provider bills for `num_images` images of this candidate: the offer's price rule. A per-compute-
    second or per-GPU-second price is settled at the time the provider (or the local worker, or the fleet replica)
    reported (`compute_seconds`), else at the estimate."""
    price = catalog.offer(candidate.offer_id).price
    if price.unit in ("gpu_second", "compute_second"):
        if compute_seconds is not None:
            return compute_time_cost(price, compute_seconds)
        return Decimal(str(candidate.cost_usd))
    return estimate_cost(
        price,
        width=candidate.width,
        height=candidate.height,
        num_images=num_images,
        style_references=bool(request.style_references),
    )


def _safe(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """An exception as one line fit to record and show: credentials (`secrets`, and anything shaped like one) out."""
    return redact(f"{type(exc).__name__}: {exc}", secrets)[:500]


def _shown(value: object) -> object:
    """A wire value as image metadata keeps it: data: URIs (inside lists and objects too) cut to their type."""
    if isinstance(value, str) and value.startswith("data:"):
        return f"{value.partition(',')[0][:40]},... ({len(value)} characters)"
    if isinstance(value, list):
        return [_shown(item) for item in value]
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    return value
