"""SQLite job store and spend ledger: jobs, provider attempts, budget reservations and charges."""

from fluxroute.store.jobstore import JobStore
from fluxroute.store.records import (
    AttemptRecord,
    AttemptStatus,
    JobRecord,
    JobStatus,
    Reservation,
    SpendSummary,
)

__all__ = [
    "AttemptRecord",
    "AttemptStatus",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "Reservation",
    "SpendSummary",
]
