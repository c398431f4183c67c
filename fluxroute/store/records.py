"""Frozen records the job store hands out: jobs, attempts, reservations and spend summaries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, NamedTuple, cast, get_args

from fluxroute.errors import BudgetExceeded
from fluxroute.store.money import from_micros

if TYPE_CHECKING:
    from fluxroute.store.database import Row

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
AttemptStatus = Literal["submitting", "in_flight", "succeeded", "failed", "cancelled"]

# whether a webhook naming a provider job may start a status check of it now
WebhookCheck = Literal["unknown", "recent", "due"]

JOB_STATUSES: frozenset[str] = frozenset(get_args(JobStatus))
ATTEMPT_STATUSES: frozenset[str] = frozenset(get_args(AttemptStatus))
FINISHED_ATTEMPT_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobRecord:
    """One generation job as the caller asked for it, and where it stands."""

    id: str
    idempotency_key: str | None
    request_hash: str
    request: dict[str, object]
    status: JobStatus
    result: dict[str, object] | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptRecord:
    """One try of a job on one offer; `detail` holds what a restart needs to resume polling it."""

    id: str
    job_id: str
    seq: int
    offer_id: str
    provider: str
    model: str
    provider_job_id: str | None
    status: AttemptStatus
    estimated_cost: Decimal
    cost: Decimal | None
    error: str | None
    detail: dict[str, object] | None
    started_at: datetime
    finished_at: datetime | None
    reservation_id: int | None = None
    # the process following it ("host/pid/token") and when its lease runs out; None once let go or finished
    lease_owner: str | None = None
    lease_until: datetime | None = None


class LatencyStats(NamedTuple):
    """An offer's learned latency: over `n` completed jobs, the weighted mean and mean absolute deviation of
    log(observed time to completion / planner estimate)."""

    n: int
    log_ratio: float
    abs_dev: float


@dataclass(frozen=True)
class AttemptStart:
    """What a new attempt records before its provider is called: the offer it tries and what it is estimated
    to cost (the amount reserved for it), and the detail a restart needs to take it up again."""

    offer_id: str
    provider: str
    model: str
    estimated_cost: Decimal
    detail: dict[str, object] | None = None


@dataclass(frozen=True)
class JobChange:
    """A change to a job record made together with the end of an attempt; `result` and `error` replace the
    stored ones only when given."""

    status: JobStatus
    error: str | None = None
    result: dict[str, object] | None = None


@dataclass(frozen=True)
class CallStart:
    """How a call started: its job (`created` False when an earlier job with the same idempotency key was
    returned, and then nothing else was recorded), and the first attempt with its reservation, or `refused`,
    the cap that kept the first attempt from starting."""

    job: JobRecord
    created: bool
    reservation: Reservation | None = None
    attempt: AttemptRecord | None = None
    refused: BudgetExceeded | None = None


@dataclass(frozen=True)
class Reservation:
    """Budget held for a job until it is settled into a charge or released; `day` is its UTC day."""

    id: int
    job_id: str
    amount: Decimal
    day: date


@dataclass(frozen=True)
class SpendSummary:
    """Spending for one UTC day plus all-time totals.

    `spent_today` and `reserved_today` cover `day` only; `spent_total`, `by_provider` and
    `charges` cover every charge ever recorded. `remaining_today` is None when there is no cap.
    """

    day: date
    spent_today: Decimal
    reserved_today: Decimal
    daily_cap: Decimal | None
    remaining_today: Decimal | None
    spent_total: Decimal
    by_provider: dict[str, Decimal]
    charges: int
    # budget a provider may bill (accepted jobs whose outcome is not settled); part of what caps count
    at_risk_today: Decimal = Decimal("0")
    # per UTC day and provider, newest first: charged, reserved (not yet sent), at risk
    days: list[SpendRow] = field(default_factory=list)

    @classmethod
    def nothing(cls, daily_cap: Decimal | None) -> SpendSummary:
        """The summary of a store that does not exist yet: nothing spent, the whole cap left."""
        zero = Decimal("0")
        return cls(utc_now().date(), zero, zero, daily_cap, daily_cap, zero, {}, 0)


@dataclass(frozen=True)
class SpendRow:
    """Money of one provider on one UTC day: `charged` billed, `reserved` held for calls not yet sent,
    `at_risk` held for jobs a provider may have accepted and may still bill."""

    day: date
    provider: str
    charged: Decimal
    reserved: Decimal
    at_risk: Decimal


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime:
    """`moment` in UTC (naive values are taken to be UTC already), or now when it is None."""
    if moment is None:
        return utc_now()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_iso(moment: datetime) -> str:
    """The stored form of a time: fixed-width ISO-8601 in UTC, so text order is time order."""
    return as_utc(moment).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Parse a stored time back into an aware UTC datetime."""
    return as_utc(datetime.fromisoformat(text))


def _load_dict(text: str | None) -> dict[str, object] | None:
    return None if text is None else cast(dict[str, object], json.loads(text))


def job_from_row(row: Row) -> JobRecord:
    """A JobRecord from a `jobs` row."""
    return JobRecord(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request=cast(dict[str, object], json.loads(row["request_json"])),
        status=row["status"],
        result=_load_dict(row["result_json"]),
        error=row["error"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )


def attempt_from_row(row: Row) -> AttemptRecord:
    """An AttemptRecord from an `attempts` row."""
    cost = row["cost_micros"]
    finished = row["finished_at"]
    return AttemptRecord(
        id=row["id"],
        job_id=row["job_id"],
        seq=row["seq"],
        offer_id=row["offer_id"],
        provider=row["provider"],
        model=row["model"],
        provider_job_id=row["provider_job_id"],
        status=row["status"],
        estimated_cost=from_micros(row["estimated_cost_micros"]),
        cost=None if cost is None else from_micros(cost),
        error=row["error"],
        detail=_load_dict(row["detail_json"]),
        started_at=from_iso(row["started_at"]),
        finished_at=None if finished is None else from_iso(finished),
        reservation_id=row["reservation_id"],
        lease_owner=row["lease_owner"],
        lease_until=None if row["lease_until"] is None else from_iso(row["lease_until"]),
    )
