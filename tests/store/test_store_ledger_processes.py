"""Tests that budget reservations stay within the daily cap across separate processes (each with its own store on
the shared SQLite file, or its own connection pool on the shared PostgreSQL database, as replicas have)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from pathlib import Path

from fluxroute.errors import BudgetExceeded
from fluxroute.store import JobStore


def store_url(store: JobStore) -> str:
    from fluxroute.store.postgres import PostgresDatabase

    assert isinstance(store._db, PostgresDatabase)
    return store._db.url.get_secret_value()


NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PROCESSES = 4
TRIES_PER_PROCESS = 4


def open_shared(where: str) -> JobStore:
    """The store at `where`: a PostgreSQL URL (key=value or postgresql://), or a SQLite file."""
    return JobStore.connect(where) if "dbname=" in where or where.startswith("postgresql://") else JobStore(Path(where))


def reserve_in_child(where: str, job_id: str, barrier: Barrier, granted: multiprocessing.SimpleQueue[int]) -> None:
    """Runs in a spawned process with its own JobStore on the shared database; reports how many it got."""
    store = open_shared(where)
    barrier.wait()
    count = 0
    for _ in range(TRIES_PER_PROCESS):
        try:
            store.reserve(job_id, Decimal("0.30"), per_call_cap=None, daily_cap=Decimal("1.00"), now=NOW)
        except BudgetExceeded:
            continue
        count += 1
    store.close()
    granted.put(count)


def test_concurrent_reservations_from_four_processes_never_exceed_the_daily_cap(
    store_opener: Callable[[], JobStore],
) -> None:
    with store_opener() as store:
        job_id = store.create_job({"prompt": "shared budget"})[0].id
        where = str(store.path) if store.path is not None else store_url(store)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    granted: multiprocessing.SimpleQueue[int] = context.SimpleQueue()
    children = [
        context.Process(target=reserve_in_child, args=(where, job_id, barrier, granted)) for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)

    assert [child.exitcode for child in children] == [0] * PROCESSES
    assert sum(granted.get() for _ in range(PROCESSES)) == 3
    with open_shared(where) as reopened:
        summary = reopened.spend_summary(now=NOW, daily_cap=Decimal("1.00"))
    assert summary.reserved_today == Decimal("0.9")
    assert summary.remaining_today == Decimal("0.1")
