"""What every provider is: availability, progress events, raw results, and the submit/wait/cancel protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from fluxroute.errors import Billing
from fluxroute.types import Candidate, ProviderName


@dataclass(frozen=True)
class Availability:
    """Whether a provider can take calls here, and if not, why (in words a user can act on)."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    """One progress event from a running job, in provider-neutral terms."""

    provider: str
    status: str
    message: str = ""
    queue_position: int | None = None
    step: int | None = None
    total_steps: int | None = None
    elapsed_s: float = 0.0


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True)
class ProviderImage:
    """One image as the provider returned it, already downloaded."""

    data: bytes
    width: int
    height: int
    content_type: str
    url: str | None = None
    flagged: bool = False


@dataclass(frozen=True)
class ProviderResult:
    """A finished job: its images and what the provider reported about it."""

    provider_job_id: str
    images: list[ProviderImage]
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # notes for the caller, added to GenerationResult.warnings
    warnings: list[str] = field(default_factory=list)
    # how the outputs were screened (e.g. "unfiltered — review before distribution"), embedded in each image
    review: str | None = None
    # the seed of each image, where the provider reports one per image (local: image i uses seed + i)
    seeds: list[int] = field(default_factory=list)
    # the compute time the provider billed, where it reports one (fal: the completed status's
    # metrics.inference_time); a per-compute-second price is settled by it
    compute_seconds: float | None = None
    # the worker that made the images, where the provider names one (a Ray fleet: "replica <id> on <node>")
    worker: str | None = None


# What a provider answered to a cancel. Only "cancelled" proves the job will not be billed; after the
# others the job is followed to its final state, which decides.
#   cancelled      stopped before it ran (Krea: cancel accepted while queued/processing)
#   requested      asked while it may be running (fal CANCELLATION_REQUESTED); it may still finish and bill
#   refused        the provider would not cancel it in its current state, or the answer was lost
#   already_ended  it had already ended (fal ALREADY_COMPLETED, Krea: a terminal status)
CancelAnswer = Literal["cancelled", "requested", "refused", "already_ended"]


@runtime_checkable
class JobListing(Protocol):
    """A provider that can list the jobs an account created, so that a submission whose answer was lost
    (a 5xx, a timeout, a garbled body, a crash) can be found again instead of paid twice."""

    def job_type(self, candidate: Candidate) -> str | None:
        """The job type (the listing's `types` filter) of the jobs `candidate` creates; None when not known."""
        ...

    async def jobs_created_between(self, start: datetime, end: datetime, types: str | None = None) -> list[str]:
        """Ids of the account's jobs created in [start, end] (UTC); only those of the job `types` when given.

        Raises:
            ProviderError: the listing could not be read.
        """
        ...


@runtime_checkable
class BillingCheck(Protocol):
    """A provider that can say, from one look at a job's own state, whether it was billed."""

    async def billing_state(self, job_id: str, candidate: Candidate) -> Billing | None:
        """ "charged" or "unbilled" when the job's state proves it, "at_risk" when the provider says it may
        be billed; None when the job has not ended or its state could not be read (no retries).
        """
        ...


@runtime_checkable
class Notifiable(Protocol):
    """A provider whose waits a webhook can cut short."""

    def notify(self, job_id: str) -> bool:
        """The job ended, says a webhook: check it now. False when no wait here follows that job."""
        ...


class Provider(Protocol):
    """Submit returns as soon as the provider accepted the job (its id is then recorded), wait follows
    it to the end (also after a restart: crash-resume calls wait with a stored id), cancel stops it."""

    name: ProviderName

    async def submit(self, candidate: Candidate, *, webhook_url: str | None = None) -> str: ...

    async def wait(
        self, job_id: str, candidate: Candidate, progress: ProgressCallback | None, timeout_s: float
    ) -> ProviderResult: ...

    async def cancel(self, job_id: str, candidate: Candidate) -> CancelAnswer: ...

    async def aclose(self) -> None: ...
