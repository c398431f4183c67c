"""Budget and spend latency as the job store's history grows: 1k, 10k and 100k settled jobs in one UTC day.

Run: python benchmarks/store_scale.py [--sizes 1000 10000 100000]
Prints p50/p99 (ms) for a capped reserve + release, a capped reserve + settle, spend_summary and
list_jobs(limit=20), each against the running totals (now) and, for reserve and spend, against the full-scan
queries the ledger used before schema version 3 (kept below as reference functions, run on the same store);
and a whole call's store writes: three transactions now against the eight steps a call made before schema
version 5, interleaved call by call on the same store.
The store is filled with direct SQL (benchmark only): per job one attempt, a reservation, its charge and its
release; the ledger's triggers keep the totals as they do for the store's own writes.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fluxroute.store import AttemptStart, JobChange, JobStore, Reservation, ledger
from fluxroute.store.leases import this_process
from fluxroute.store.records import to_iso

CAP = Decimal("1000000")  # a cap the benchmark never reaches, so every check runs to the end

# The queries before schema version 3, verbatim: the day's figures scanned the day's ledger with a correlated
# subquery, and spend_summary scanned every charge (and every open reservation) in the ledger.
OLD_DAY_FIGURES = """
    SELECT
        COALESCE(SUM(CASE WHEN kind = 'charge' THEN amount_micros END), 0),
        COALESCE(SUM(CASE WHEN kind = 'reserve' AND NOT EXISTS (
            SELECT 1 FROM ledger AS closing
            WHERE closing.reservation_id = ledger.id AND closing.kind = 'release'
        ) THEN amount_micros END), 0)
    FROM ledger WHERE day = ?
"""
OLD_SUMMARY = (
    "SELECT COUNT(*), COALESCE(SUM(amount_micros), 0) FROM ledger WHERE kind = 'charge'",
    "SELECT COALESCE(attempts.provider, 'unknown'), SUM(ledger.amount_micros) FROM ledger"
    " LEFT JOIN attempts ON attempts.id = ledger.attempt_id WHERE ledger.kind = 'charge' GROUP BY 1 ORDER BY 1",
    "SELECT ledger.day, COALESCE(attempts.provider, 'unknown'), SUM(ledger.amount_micros) FROM ledger"
    " LEFT JOIN attempts ON attempts.id = ledger.attempt_id WHERE ledger.kind = 'charge' AND ledger.day >= :first"
    " GROUP BY 1, 2",
    """SELECT ledger.day, COALESCE(attempts.provider, 'unsent'), ledger.amount_micros,
           attempts.status IN ('submitting', 'in_flight')
    FROM ledger LEFT JOIN attempts ON attempts.reservation_id = ledger.id
    WHERE ledger.kind = 'reserve' AND ledger.day >= :first AND NOT EXISTS (
        SELECT 1 FROM ledger AS closing WHERE closing.reservation_id = ledger.id AND closing.kind = 'release'
    )""",
)


def fill(store: JobStore, jobs: int, now: datetime) -> str:
    """`jobs` finished jobs on `now`'s day, each with an attempt and a settled reservation; returns one job id."""
    conn = store._db.connection()
    day, stamp = now.date().isoformat(), to_iso(now)
    providers = ("krea", "fal", "local")
    with store._db.write():
        conn.executemany(
            "INSERT INTO jobs (id, request_hash, request_json, status, created_at, updated_at)"
            " VALUES (?, 'h', '{}', 'succeeded', ?, ?)",
            ((f"job{i}", stamp, stamp) for i in range(jobs)),
        )
        insert_ledger = (
            "INSERT INTO ledger (id, job_id, attempt_id, reservation_id, kind, amount_micros, day, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        conn.executemany(
            insert_ledger, ((3 * i + 1, f"job{i}", None, None, "reserve", 30000, day, stamp) for i in range(jobs))
        )
        conn.executemany(
            "INSERT INTO attempts (id, job_id, seq, offer_id, provider, model, status, estimated_cost_micros,"
            " cost_micros, started_at, reservation_id) VALUES (?, ?, 1, 'o', ?, 'm', 'succeeded', 30000, 25000, ?, ?)",
            ((f"att{i}", f"job{i}", providers[i % 3], stamp, 3 * i + 1) for i in range(jobs)),
        )
        rows: list[tuple[object, ...]] = []
        for i in range(jobs):
            rows.append((3 * i + 2, f"job{i}", f"att{i}", 3 * i + 1, "charge", 25000, day, stamp))
            rows.append((3 * i + 3, f"job{i}", None, 3 * i + 1, "release", 30000, day, stamp))
        conn.executemany(insert_ledger, rows)
    return "job0"


def timed(action: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def old_reserve_and_release(store: JobStore, job_id: str, now: datetime) -> None:
    """The old capped reserve: the day's scan and the insert in one BEGIN IMMEDIATE; then the release."""
    with store._db.write() as conn:
        spent, held = conn.execute(OLD_DAY_FIGURES, (now.date().isoformat(),)).fetchone()
        assert spent + held < 10**15
        held_now = ledger.reserve(conn, job_id, Decimal("0.03"), per_call_cap=None, daily_cap=None, now=now)
    store.release(held_now)


def old_spend(store: JobStore, now: datetime) -> None:
    first = (now.date() - timedelta(days=6)).isoformat()
    with store._db.read() as conn:
        for query in OLD_SUMMARY:
            conn.execute(query, {"first": first}).fetchall()


SPEC = AttemptStart("krea-flux-dev", "krea", "flux-dev", Decimal("0.03"), {"candidate": {"offer_id": "krea-flux-dev"}})
RESULT: dict[str, object] = {"images": [{"path": "/tmp/x.png", "sha256": "0" * 64}], "cost_usd": 0.02}


def call_before(store: JobStore, serial: int) -> None:
    """A call's store steps before schema version 5: job, reservation, attempt, submitted, read-back, settle,
    attempt finished, job finished — each its own transaction."""
    job, _ = store.create_job({"prompt": f"before {serial}"}, status="running")
    held = store.reserve(job.id, SPEC.estimated_cost, per_call_cap=None, daily_cap=CAP)
    attempt = store.start_attempt(
        job.id, offer_id=SPEC.offer_id, provider=SPEC.provider, model=SPEC.model,
        estimated_cost=SPEC.estimated_cost, detail=SPEC.detail, reservation_id=held.id,
    )  # fmt: skip
    store.mark_submitted(attempt.id, f"b-{serial}")
    store.attempts_for(job.id)
    store.settle(held, Decimal("0.02"), attempt.id)
    store.finish_attempt(attempt.id, status="succeeded", cost=Decimal("0.02"))
    store.update_job(job.id, status="succeeded", result=RESULT)


def call_after(store: JobStore, serial: int) -> None:
    """The same call now: start_call, mark_submitted, finish_call."""
    started = store.start_call(
        {"prompt": f"after {serial}"}, None, SPEC, per_call_cap=None, daily_cap=CAP, owner=this_process()
    )
    assert started.attempt is not None and started.reservation is not None
    store.mark_submitted(started.attempt.id, f"a-{serial}")
    store.finish_call(
        started.attempt.id,
        started.reservation,
        status="succeeded",
        cost=Decimal("0.02"),
        job=JobChange("succeeded", result=RESULT),
    )


def timed_pair(
    first: Callable[[int], object], second: Callable[[int], object], runs: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """p50 and p99 in milliseconds of two actions, alternated call by call."""
    samples: tuple[list[float], list[float]] = ([], [])
    for serial in range(runs):
        for action, kept in ((first, samples[0]), (second, samples[1])):
            start = time.perf_counter()
            action(serial)
            kept.append((time.perf_counter() - start) * 1000)
    figures = []
    for kept in samples:
        kept.sort()
        figures.append((statistics.median(kept), kept[min(len(kept) - 1, int(len(kept) * 0.99))]))
    return figures[0], figures[1]


def bench(jobs: int) -> list[tuple[str, str, float, float]]:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as home, JobStore.open(Path(home)) as store:
        start = time.perf_counter()
        job_id = fill(store, jobs, now)
        print(f"  filled {jobs:,} jobs in {time.perf_counter() - start:.1f} s")
        billed_before = store.total_charged()

        def reserve_release() -> None:
            store.release(store.reserve(job_id, Decimal("0.03"), per_call_cap=None, daily_cap=CAP, now=now))

        settled = 0

        def reserve_settle() -> None:
            nonlocal settled
            store.settle(
                store.reserve(job_id, Decimal("0.03"), per_call_cap=None, daily_cap=CAP, now=now), Decimal("0.02")
            )
            settled += 1

        conn: sqlite3.Connection = store._db.connection()
        held: list[Reservation] = []

        def reserve_only() -> None:
            # the reservation alone (its own BEGIN IMMEDIATE ... COMMIT), released outside the timing below
            held.append(store.reserve(job_id, Decimal("0.03"), per_call_cap=None, daily_cap=CAP, now=now))

        old_runs = 20 if jobs >= 100_000 else 100
        results = [
            ("reserve (capped)", "after", *timed(reserve_only, 500)),
        ]
        for reservation in held:
            store.release(reservation)
        results += [
            (
                "reserve+release (capped)",
                "before",
                *timed(lambda: old_reserve_and_release(store, job_id, now), old_runs),
            ),
            ("reserve+release (capped)", "after", *timed(reserve_release, 500)),
            ("reserve+settle (capped)", "after", *timed(reserve_settle, 500)),
            ("spend_summary", "before", *timed(lambda: old_spend(store, now), old_runs)),
            ("spend_summary", "after", *timed(lambda: store.spend_summary(now=now, daily_cap=CAP), 200)),
            ("list_jobs(limit=20)", "after", *timed(lambda: store.list_jobs(limit=20), 200)),
        ]
        before, after = timed_pair(lambda n: call_before(store, n), lambda n: call_after(store, n), 300)
        settled += 600
        results += [("a call's store writes", "before", *before), ("a call's store writes", "after", *after)]
        # ledger = billed: the filled charges plus one 0.02 charge per timed settle, and nothing else
        assert store.total_charged() == billed_before + Decimal("0.02") * settled
        assert store.spend_summary(now=now).spent_today == store.total_charged()
        assert conn.execute("SELECT COUNT(*) FROM ledger_open").fetchone()[0] == 0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, {platform.machine()}")
    print("| jobs in the day | operation | path | p50 ms | p99 ms |")
    print("|---:|---|---|---:|---:|")
    lines = []
    for jobs in args.sizes:
        print(f"  # {jobs:,} jobs")
        for name, path, p50, p99 in bench(jobs):
            lines.append(f"| {jobs:,} | {name} | {path} | {p50:.3f} | {p99:.3f} |")
            print(lines[-1])
    print("\n".join(["", "summary:", *lines]))


if __name__ == "__main__":
    main()
