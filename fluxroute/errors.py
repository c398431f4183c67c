"""The error tree: every failure a caller can see, typed, with whether a retry can help.

FluxrouteError
 ├── InvalidRequest          bad input; names field, value, what is allowed (never retryable)
 ├── ConfigError             bad settings or catalog data
 │    └── PortInUse               `serve --http` cannot listen on that address and port
 ├── NoRouteError            no offer can serve the request; carries every rejection reason
 ├── BudgetExceeded          per-call or daily cap would be crossed
 ├── IdempotencyConflict     same idempotency key, different request
 ├── JobNotFound             unknown job id in the store
 ├── JobBusy                 another live process follows that job (it saves and bills it)
 ├── UnsafeURL               an input URL points somewhere it may not
 ├── WebhookRejected         an incoming webhook is forged, stale or not ours
 ├── ConsentRequired         the estimated spend needs the user's approval first (confirm_spend)
 ├── ResultNotSaved          a billed result could not be saved here (`jobs resume` fetches it again)
 ├── ProviderError           a provider failed; .provider, .retryable, .status_code
 │    ├── AuthError               401/403, missing or rejected credentials
 │    ├── ProviderBadRequest      400/404/422 the provider refused the parameters
 │    ├── InsufficientCredits     402, the provider account is out of balance
 │    ├── RateLimited             429 (retryable; .retry_after seconds if known)
 │    ├── ProviderUnavailable     5xx, connection failures, provider not configured (retryable)
 │    ├── ProviderTimeout         the job did not finish within its time budget (retryable)
 │    ├── JobFailed               the provider ran the job and it failed
 │    ├── ContentFiltered         the provider's safety system refused the prompt or output
 │    ├── Cancelled               the job was cancelled by the user or the provider
 │    └── PaymentAtRisk           a provider may have billed a job whose outcome is not known yet
 └── AllProvidersFailed      every candidate failed; .failures holds each ProviderError
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# What a provider failure means for money (see fluxroute/router/money.py for the rule):
# "unbilled": the provider never accepted the job, or its own state proves it was not billed;
# "at_risk": it may have accepted (and may bill) the job; its cost counts until that is settled;
# "charged": the provider billed it (it completed) even though the caller gets no image.
Billing = Literal["unbilled", "at_risk", "charged"]


class FluxrouteError(Exception):
    """Base of every error fluxroute raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: where, what was given, what is allowed."""

    field: str
    value: object
    allowed: str
    missing: bool = False

    def __str__(self) -> str:
        if self.missing:
            return f"{self.field}: missing; {self.allowed}"
        return f"{self.field}: got {_short(self.value)}; {self.allowed}"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidRequest(FluxrouteError):
    """The request cannot be served as written; nothing was sent to any provider."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"- {e}" for e in self.errors)
        super().__init__(f"invalid request ({len(self.errors)} problem(s)):\n{lines}")


class ConfigError(FluxrouteError):
    """Settings or catalog data are invalid."""


class PortInUse(ConfigError):
    """`serve --http` cannot listen where it was asked to (the port is taken, or the address is not ours)."""


class NoRouteError(FluxrouteError):
    """No offer can serve the request; the message lists why each one was rejected."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        self.reasons = list(reasons)
        detail = "".join(f"\n- {r}" for r in self.reasons)
        super().__init__(message + detail)


class BudgetExceeded(FluxrouteError):
    """Spending this much would cross a configured cap."""


class IdempotencyConflict(FluxrouteError):
    """An idempotency key was reused with a different request."""


class ConsentRequired(FluxrouteError):
    """The call would spend more than the user agreed to spend without being asked; nothing was spent."""


class JobBusy(FluxrouteError):
    """Another live process follows this job; it will save and bill the result, so this one leaves it."""


class JobNotFound(FluxrouteError):
    """No job with that id exists in the store."""


class UnsafeURL(FluxrouteError):
    """A caller-supplied URL is not allowed (scheme, address range or size)."""


class WebhookRejected(FluxrouteError):
    """An incoming webhook failed verification."""


class ResultNotSaved(FluxrouteError):
    """The provider billed the job, but its images could not be saved here (a disk fault); the job stays
    open so that `fluxroute jobs resume` fetches them again while the provider keeps them."""

    def __init__(self, message: str, *, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class ProviderError(FluxrouteError):
    """A provider call failed. `retryable` says whether trying again (or elsewhere) can help."""

    retryable: bool = False
    # the compute (or GPU) time the provider reported for a job that failed after it was billed, where it did:
    # a per-second price is charged by it instead of the estimate
    compute_seconds: float | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        provider_job_id: str | None = None,
        retryable: bool | None = None,
        billing: Billing | None = None,
    ) -> None:
        self.provider = provider
        # None: decided by where it happened — before acceptance "unbilled", after it "at_risk"
        self.billing = billing
        self.status_code = status_code
        self.provider_job_id = provider_job_id
        if retryable is not None:
            self.retryable = retryable
        super().__init__(f"{provider}: {message}")


class AuthError(ProviderError):
    """Credentials are missing or were rejected."""


class ProviderBadRequest(ProviderError):
    """The provider refused the parameters."""


class InsufficientCredits(ProviderError):
    """The provider account has no balance left."""


class RateLimited(ProviderError):
    """Too many requests or concurrent jobs."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or is failing on its side."""

    retryable = True


class ProviderTimeout(ProviderError):
    """The job did not finish in time."""

    retryable = True


class JobFailed(ProviderError):
    """The provider accepted and ran the job, and the job failed."""


class ContentFiltered(ProviderError):
    """The provider's safety system refused the prompt or the output."""


class Cancelled(ProviderError):
    """The job was cancelled."""


class PaymentAtRisk(ProviderError):
    """The provider may have accepted and billed a job whose outcome is not known yet. Its cost stays
    counted against the budget (at risk); no other provider was tried, so nothing is paid twice.
    `fluxroute jobs resume` (or the server at start) collects the job later; `job_id` names it."""

    def __init__(self, message: str, *, job_id: str, **kwargs: object) -> None:
        self.job_id = job_id
        kwargs.setdefault("billing", "at_risk")
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class AllProvidersFailed(FluxrouteError):
    """Every candidate failed; `failures` holds each provider's error in the order tried."""

    def __init__(self, failures: Sequence[ProviderError]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"- {f}" for f in self.failures)
        super().__init__(f"every candidate failed ({len(self.failures)}):\n{lines}")
