"""The ledger's running totals (schema version 3) always say what a full scan of the ledger says.

Budget checks and spend summaries read `ledger_days`, `ledger_charges` and `ledger_open` instead of the ledger's
history; these tests recompute every figure from the ledger rows themselves and compare, after random sequences of
reservations, settlements, releases, charges and attempt changes across days and providers, and after the
migration that backfills the totals of an existing store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxroute.errors import BudgetExceeded
from fluxroute.store import JobStore, Reservation
from fluxroute.store.database import MIGRATIONS, SCHEMA_VERSION, Connection
from fluxroute.store.money import from_micros
from tests.postgres import integrity_errors

FIRST_DAY = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PROVIDERS = ("krea", "fal", "local")


@dataclass
class Scan:
    """Every figure the totals stand for, recomputed from the ledger and attempts rows alone."""

    charged: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    at_risk: dict[str, int] = field(default_factory=dict)
    by_day_provider: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    total: int = 0
    charges: int = 0


def scan(conn: Connection) -> Scan:
    ledger_rows = conn.execute("SELECT id, kind, amount_micros, day, reservation_id, attempt_id FROM ledger").fetchall()
    attempts = {
        row[0]: (row[1], row[2], row[3])
        for row in conn.execute("SELECT id, provider, status, reservation_id FROM attempts")
    }
    released = {row[4] for row in ledger_rows if row[1] == "release"}
    result = Scan()
    for row_id, kind, micros, day, _, attempt_id in ledger_rows:
        if kind == "charge":
            provider = attempts[attempt_id][0] if attempt_id is not None else "unknown"
            result.charged[day] = result.charged.get(day, 0) + micros
            amount, count = result.by_day_provider.get((day, provider), (0, 0))
            result.by_day_provider[day, provider] = (amount + micros, count + 1)
            result.total += micros
            result.charges += 1
        elif kind == "reserve" and row_id not in released:
            result.held[day] = result.held.get(day, 0) + micros
            for _, status, reservation_id in attempts.values():
                if reservation_id == row_id and status in ("submitting", "in_flight"):
                    result.at_risk[day] = result.at_risk.get(day, 0) + micros
    return result


def assert_totals_match_the_ledger(store: JobStore, days: list[date]) -> None:
    conn = store._db.connection()
    truth = scan(conn)
    days_table = {
        row[0]: (row[1], row[2]) for row in conn.execute("SELECT day, charged_micros, held_micros FROM ledger_days")
    }
    for day in set(days_table) | set(truth.charged) | set(truth.held):
        assert days_table.get(day, (0, 0)) == (truth.charged.get(day, 0), truth.held.get(day, 0)), day
    charges_table = {
        (row[0], row[1]): (row[2], row[3])
        for row in conn.execute("SELECT day, provider, charged_micros, charges FROM ledger_charges")
    }
    assert charges_table == truth.by_day_provider
    for day in days:
        moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        summary = store.spend_summary(now=moment, daily_cap=Decimal("1000"))
        key = day.isoformat()
        assert summary.spent_today == from_micros(truth.charged.get(key, 0))
        assert summary.at_risk_today == from_micros(truth.at_risk.get(key, 0))
        assert summary.reserved_today == from_micros(truth.held.get(key, 0) - truth.at_risk.get(key, 0))
        assert summary.spent_total == from_micros(truth.total) == store.total_charged()
        assert summary.charges == truth.charges
        providers: dict[str, int] = {}
        for (_, provider), (micros, _) in truth.by_day_provider.items():
            providers[provider] = providers.get(provider, 0) + micros
        assert summary.by_provider == {p: from_micros(m) for p, m in providers.items()}
        shown = {(row.day, row.provider): row.charged for row in summary.days if row.charged}
        expected = {
            (date.fromisoformat(d), p): from_micros(m)
            for (d, p), (m, _) in truth.by_day_provider.items()
            if m and day - timedelta(days=6) <= date.fromisoformat(d) <= day
        }
        assert {k: v for k, v in shown.items() if k[0] <= day} == expected


# one step: (operation, day offset, amount in micro-dollars, which earlier reservation / provider / status)
steps = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve_attempt", "settle", "release", "charge", "charge_attempt", "advance"]),
        st.integers(0, 3),
        st.integers(0, 400_000),
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_running_totals_equal_a_full_scan_of_the_ledger(
    fresh_store: Callable[[], AbstractContextManager[JobStore]], plan: list[tuple[str, int, int, int]]
) -> None:
    with fresh_store() as store:
        job_id = store.create_job({"prompt": "a harbour at dawn"})[0].id
        holds: list[tuple[Reservation, str | None]] = []
        attempts: list[str] = []
        billed = 0
        charged_reservations: set[int] = set()
        charged_attempts: set[str] = set()
        for op, offset, micros, pick in plan:
            moment = FIRST_DAY + timedelta(days=offset)
            amount = from_micros(micros)
            provider = PROVIDERS[pick % len(PROVIDERS)]
            if op in ("reserve", "reserve_attempt"):
                try:
                    held = store.reserve(job_id, amount, per_call_cap=None, daily_cap=Decimal("1.5"), now=moment)
                except BudgetExceeded:
                    continue
                attempt_id = None
                if op == "reserve_attempt":
                    attempt_id = store.start_attempt(
                        job_id,
                        offer_id=f"{provider}:flux",
                        provider=provider,
                        model="flux",
                        estimated_cost=amount,
                        reservation_id=held.id,
                    ).id
                    attempts.append(attempt_id)
                holds.append((held, attempt_id))
            elif op == "release" and holds:
                store.release(holds[pick % len(holds)][0])
            elif op == "settle" and holds:
                held, attempt_id = holds[pick % len(holds)]
                store.settle(held, amount, attempt_id=attempt_id)
                # one charge per reservation and per attempt, whatever is asked
                if held.id not in charged_reservations and attempt_id not in charged_attempts:
                    billed += micros
                charged_reservations.add(held.id)
                if attempt_id is not None:
                    charged_attempts.add(attempt_id)
            elif op == "charge" or (op == "charge_attempt" and not attempts):
                store.charge(job_id, amount, now=moment)
                billed += micros
            elif op == "charge_attempt":
                attempt_id = attempts[pick % len(attempts)]
                store.charge(job_id, amount, attempt_id=attempt_id, now=moment)
                if attempt_id not in charged_attempts:
                    billed += micros
                charged_attempts.add(attempt_id)
            elif op == "advance" and attempts:
                attempt_id = attempts[pick % len(attempts)]
                status = {a.id: a.status for a in store.attempts_for(job_id)}[attempt_id]
                if status == "submitting":
                    store.mark_submitted(attempt_id, f"job-{attempt_id}")
                elif status == "in_flight":
                    store.finish_attempt(attempt_id, status="succeeded" if pick % 2 else "failed")
        # ledger = billed: every charge the store accepted, and nothing else
        assert store.total_charged() == from_micros(billed)
        assert_totals_match_the_ledger(store, [(FIRST_DAY + timedelta(days=n)).date() for n in range(5)])


def test_the_daily_cap_still_counts_charges_and_open_holds_from_the_totals(store: JobStore) -> None:
    job_id = store.create_job({"prompt": "a kite"})[0].id
    cap = Decimal("1.00")
    first = store.reserve(job_id, Decimal("0.60"), per_call_cap=None, daily_cap=cap, now=FIRST_DAY)
    with pytest.raises(BudgetExceeded, match=r"\$0\.60 reserved or at risk, \$0\.40 remaining"):
        store.reserve(job_id, Decimal("0.41"), per_call_cap=None, daily_cap=cap, now=FIRST_DAY)
    store.settle(first, Decimal("0.25"))
    second = store.reserve(job_id, Decimal("0.75"), per_call_cap=None, daily_cap=cap, now=FIRST_DAY)
    with pytest.raises(BudgetExceeded, match=r"\$0\.25 spent, \$0\.75 reserved or at risk, \$0\.00 remaining"):
        store.reserve(job_id, Decimal("0.000001"), per_call_cap=None, daily_cap=cap, now=FIRST_DAY)
    store.release(second)
    assert store.spend_summary(now=FIRST_DAY, daily_cap=cap).remaining_today == Decimal("0.75")
    # ledger = billed
    assert store.total_charged() == Decimal("0.25")
    assert_totals_match_the_ledger(store, [FIRST_DAY.date()])


def test_ledger_rows_cannot_be_changed_or_removed(store: JobStore) -> None:
    job_id = store.create_job({"prompt": "a lantern"})[0].id
    store.charge(job_id, Decimal("0.10"), now=FIRST_DAY)
    conn = store._db.connection()
    with pytest.raises(integrity_errors(), match="append-only"):
        conn.execute("UPDATE ledger SET amount_micros = 1")
    with pytest.raises(integrity_errors(), match="append-only"):
        conn.execute("DELETE FROM ledger")
    # ledger = billed
    assert store.total_charged() == Decimal("0.10")
    assert_totals_match_the_ledger(store, [FIRST_DAY.date()])


def _store_at_version_2(path: Path) -> None:
    """A store as the previous release left it: schema version 2, with jobs, attempts and ledger rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statements in MIGRATIONS[:2]:
            for statement in statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        stamp = "2026-11-20T10:00:00.000000+00:00"
        conn.execute(
            "INSERT INTO jobs (id, request_hash, request_json, status, created_at, updated_at)"
            " VALUES ('j1', 'h', '{}', 'running', ?, ?)",
            (stamp, stamp),
        )

        def ledger_row(
            kind: str, micros: int, day: str, reservation: int | None = None, attempt: str | None = None
        ) -> int:
            cursor = conn.execute(
                "INSERT INTO ledger (job_id, attempt_id, reservation_id, kind, amount_micros, day, created_at)"
                " VALUES ('j1', ?, ?, ?, ?, ?, ?)",
                (attempt, reservation, kind, micros, day, stamp),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        def attempt(attempt_id: str, seq: int, provider: str, status: str, reservation: int) -> None:
            conn.execute(
                "INSERT INTO attempts (id, job_id, seq, offer_id, provider, model, status, estimated_cost_micros,"
                " started_at, reservation_id) VALUES (?, 'j1', ?, 'o', ?, 'm', ?, 0, ?, ?)",
                (attempt_id, seq, provider, status, stamp, reservation),
            )

        settled = ledger_row("reserve", 300_000, "2026-11-20")
        attempt("a1", 1, "krea", "succeeded", settled)
        ledger_row("charge", 250_000, "2026-11-20", settled, "a1")
        ledger_row("release", 300_000, "2026-11-20", settled)
        freed = ledger_row("reserve", 90_000, "2026-11-21")
        ledger_row("release", 90_000, "2026-11-21", freed)
        risky = ledger_row("reserve", 120_000, "2026-11-21")
        attempt("a2", 2, "fal", "in_flight", risky)
        ledger_row("reserve", 40_000, "2026-11-21")  # open, no attempt yet
        ledger_row("charge", 7_000, "2026-11-21")  # a charge outside any reservation
    finally:
        conn.close()


def test_the_migration_backfills_the_totals_from_the_existing_ledger(tmp_path: Path) -> None:
    path = tmp_path / "fluxroute.db"
    _store_at_version_2(path)

    with JobStore(path) as store:
        conn = store._db.connection()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        rows = conn.execute("SELECT day, charged_micros, held_micros FROM ledger_days ORDER BY day").fetchall()
        assert [tuple(row) for row in rows] == [
            ("2026-11-20", 250_000, 0),
            ("2026-11-21", 7_000, 160_000),
        ]
        summary = store.spend_summary(now=datetime(2026, 11, 21, 18, tzinfo=UTC), daily_cap=Decimal("1"))
        assert (summary.spent_today, summary.reserved_today, summary.at_risk_today) == (
            Decimal("0.007"),
            Decimal("0.04"),
            Decimal("0.12"),
        )
        assert summary.remaining_today == Decimal("0.833")
        assert summary.by_provider == {"krea": Decimal("0.25"), "unknown": Decimal("0.007")}
        assert [(a.id, held) for a, held in store.at_risk()] == [("a2", Decimal("0.12"))]
        days = [date(2026, 11, 20), date(2026, 11, 21)]
        assert_totals_match_the_ledger(store, days)

        # the triggers carry on from the backfilled figures
        (risky,) = [store.reservation(int(a.reservation_id or 0)) for a, _ in store.at_risk()]
        store.settle(risky, Decimal("0.11"), attempt_id="a2")
        # ledger = billed: the 0.25 and 0.007 from before the migration, and this charge
        assert store.total_charged() == Decimal("0.367")
        assert_totals_match_the_ledger(store, days)
