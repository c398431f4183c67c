"""The job store and spend ledger: jobs, provider attempts with their leases, budget reservations and charges.

`Store` is the interface; `JobStore` keeps it in one SQLite file (the embedded default)."""

from fluxroute.store.jobstore import JobStore
from fluxroute.store.lineage import DraftSetRecord, LineageLink, Relation
from fluxroute.store.protocol import Store
from fluxroute.store.records import (
    AttemptRecord,
    AttemptStart,
    AttemptStatus,
    CallStart,
    JobChange,
    JobRecord,
    JobStatus,
    Reservation,
    SpendSummary,
)

__all__ = [
    "AttemptRecord",
    "AttemptStart",
    "AttemptStatus",
    "CallStart",
    "DraftSetRecord",
    "JobChange",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "LineageLink",
    "Relation",
    "Reservation",
    "SpendSummary",
    "Store",
]
