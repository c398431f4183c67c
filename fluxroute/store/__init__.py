"""The job store and spend ledger: jobs, provider attempts with their leases, budget reservations and charges.

`Store` is the interface; `JobStore` keeps it in one SQLite file under the home directory (the embedded default) or,
with `database_url` set, in a PostgreSQL database several processes and replicas share. `open_store` picks which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    "open_existing_store",
    "open_store",
]

if TYPE_CHECKING:
    from fluxroute.settings import Settings


def open_store(settings: Settings) -> Store:
    """The store `settings` name: the PostgreSQL database at `database_url` when set (its schema created or
    brought up to date), else `home`/fluxroute.db (created, with the home directory, if missing).

    Each call opens a new store (on PostgreSQL: a new connection pool); a process opens one and shares it between
    its threads. Raises ConfigError for a schema from a newer fluxroute (or, for PostgreSQL, without psycopg).
    """
    if settings.database_url is not None:
        return JobStore.connect(settings.database_url)
    return JobStore.open(settings.home)


def open_existing_store(settings: Settings) -> Store | None:
    """Like `open_store`, but None where no store was ever created (no file under `home`, or a PostgreSQL database
    without fluxroute's schema): read-only commands create nothing."""
    if settings.database_url is not None:
        try:
            from fluxroute.store.postgres import schema_exists
        except ImportError:
            return JobStore.connect(settings.database_url)  # raises the ConfigError that says what to install
        return JobStore.connect(settings.database_url) if schema_exists(settings.database_url) else None
    return JobStore.open_existing(settings.home)
