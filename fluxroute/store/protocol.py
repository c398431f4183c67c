"""The Store interface: what the router, the tools, the server and the CLI use of a job store.

One interface, one implementation per database (SQLite, the embedded default: `fluxroute.store.JobStore`).
It is synchronous, on purpose: every call is one short transaction (well under a millisecond on SQLite), the
CLI's read-only commands and the tests call it without an event loop, and database drivers that share a
store across processes (SQLite's file locks, a PostgreSQL connection pool) are thread-safe. Async code runs
the writes that sit on a call's path off its event loop with `asyncio.to_thread`, one transaction per hop,
so no lock is ever held across an await.

A call writes three times on its way (see DESIGN.md, crash-resume): `start_call` (the job, the budget held
for its first attempt, and the attempt, leased to the calling process), `mark_submitted` (the provider's job
id, the moment the provider accepted it) and `finish_call` (charge or release, how the attempt ended, the
job's status and result).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from fluxroute.store.leases import Owner
from fluxroute.store.lineage import DraftSetRecord, LineageLink
from fluxroute.store.records import (
    AttemptRecord,
    AttemptStart,
    AttemptStatus,
    CallStart,
    JobChange,
    JobRecord,
    JobStatus,
    LatencyStats,
    Reservation,
    SpendSummary,
    WebhookCheck,
)


class Store(Protocol):
    """Jobs, their provider attempts with their leases, the spend ledger, learned latencies, draft sets and image
    lineage."""

    def close(self) -> None: ...

    # jobs
    def create_job(
        self, request: dict[str, object], idempotency_key: str | None = None, *, status: JobStatus = "queued"
    ) -> tuple[JobRecord, bool]: ...
    def get_job(self, job_id: str) -> JobRecord: ...
    def find_job_by_key(self, idempotency_key: str) -> JobRecord | None: ...
    def list_jobs(self, limit: int = 50, status: str | None = None) -> list[JobRecord]: ...
    def update_job(
        self, job_id: str, *, status: JobStatus, result: dict[str, object] | None = None, error: str | None = None
    ) -> JobRecord: ...

    # one call: start, submitted, finish
    def start_call(
        self,
        request: dict[str, object],
        idempotency_key: str | None,
        first: AttemptStart,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        owner: Owner,
    ) -> CallStart: ...
    def begin_attempt(
        self,
        job_id: str,
        spec: AttemptStart,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        owner: Owner,
    ) -> tuple[Reservation, AttemptRecord]: ...
    def mark_submitted(
        self, attempt_id: str, provider_job_id: str, detail: dict[str, object] | None = None
    ) -> AttemptRecord: ...
    def finish_call(
        self,
        attempt_id: str,
        reservation: Reservation,
        *,
        status: AttemptStatus,
        cost: Decimal | None,
        error: str | None = None,
        job: JobChange | None = None,
    ) -> None: ...

    # attempts
    def start_attempt(
        self,
        job_id: str,
        *,
        offer_id: str,
        provider: str,
        model: str,
        estimated_cost: Decimal,
        detail: dict[str, object] | None = None,
        reservation_id: int | None = None,
        owner: Owner | None = None,
    ) -> AttemptRecord: ...
    def finish_attempt(
        self, attempt_id: str, *, status: AttemptStatus, cost: Decimal | None = None, error: str | None = None
    ) -> AttemptRecord: ...
    def note_attempt(
        self, attempt_id: str, *, error: str | None = None, detail: dict[str, object] | None = None
    ) -> AttemptRecord: ...
    def attempts_for(self, job_id: str) -> list[AttemptRecord]: ...
    def in_flight_attempts(self) -> list[AttemptRecord]: ...
    def submitting_attempts(self) -> list[AttemptRecord]: ...
    def at_risk(self, job_id: str | None = None) -> list[tuple[AttemptRecord, Decimal]]: ...
    def known_provider_jobs(self, provider: str, provider_job_ids: list[str]) -> set[str]: ...
    def claim_webhook_check(
        self, provider: str, provider_job_id: str, window_s: float, now: float | None = None
    ) -> WebhookCheck: ...

    # leases
    def claim_attempt(self, attempt_id: str, owner: Owner, now: datetime | None = None) -> AttemptRecord | None: ...
    def renew_lease(self, attempt_id: str, owner: Owner, now: datetime | None = None) -> bool: ...
    def let_go(self, attempt_id: str, owner: Owner, *, error: str | None = None) -> None: ...

    # budget and ledger
    def reserve(
        self,
        job_id: str,
        amount: Decimal,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        now: datetime | None = None,
    ) -> Reservation: ...
    def settle(self, reservation: Reservation, actual: Decimal, attempt_id: str | None = None) -> None: ...
    def release(self, reservation: Reservation) -> None: ...
    def charge(
        self, job_id: str, amount: Decimal, attempt_id: str | None = None, now: datetime | None = None
    ) -> None: ...
    def spend_summary(
        self, now: datetime | None = None, daily_cap: Decimal | None = None, days: int = 7
    ) -> SpendSummary: ...
    def reservation(self, reservation_id: int) -> Reservation: ...
    def is_open(self, reservation: Reservation) -> bool: ...
    def total_charged(self) -> Decimal: ...

    # learned latency
    def observe_latency(self, offer_id: str, log_ratio: float, now: datetime | None = None) -> LatencyStats: ...
    def latency_stats(self, offer_id: str) -> LatencyStats | None: ...

    # draft sets and image lineage
    def record_draft_set(
        self,
        request: dict[str, object],
        drafts: list[dict[str, object]],
        total_cost: Decimal,
        detail: dict[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> DraftSetRecord: ...
    def get_draft_set(self, draft_set_id: str) -> DraftSetRecord: ...
    def list_draft_sets(self, limit: int = 50) -> list[DraftSetRecord]: ...
    def record_lineage(
        self, job_id: str, image_index: int, parent_job_id: str, parent_index: int, relation: str
    ) -> LineageLink: ...
    def lineage(self, job_id: str) -> list[LineageLink]: ...
