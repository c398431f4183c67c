"""Tests that budget reservations stay within the daily cap across separate processes."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from pathlib import Path

from fluxroute.errors import BudgetExceeded
from fluxroute.store import JobStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PROCESSES = 4
TRIES_PER_PROCESS = 4


def reserve_in_child(path: str, job_id: str, barrier: Barrier, granted: multiprocessing.SimpleQueue[int]) -> None:
    """Runs in a spawned process with its own JobStore on the shared file; reports how many it got."""
    store = JobStore(Path(path))
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


def test_concurrent_reservations_from_four_processes_never_exceed_the_daily_cap(tmp_path: Path) -> None:
    with JobStore.open(tmp_path) as store:
        job_id = store.create_job({"prompt": "shared budget"})[0].id
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    granted: multiprocessing.SimpleQueue[int] = context.SimpleQueue()
    children = [
        context.Process(target=reserve_in_child, args=(str(store.path), job_id, barrier, granted))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)

    assert [child.exitcode for child in children] == [0] * PROCESSES
    assert sum(granted.get() for _ in range(PROCESSES)) == 3
    with JobStore(store.path) as reopened:
        summary = reopened.spend_summary(now=NOW, daily_cap=Decimal("1.00"))
    assert summary.reserved_today == Decimal("0.9")
    assert summary.remaining_today == Decimal("0.1")
