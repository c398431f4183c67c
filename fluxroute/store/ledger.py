"""The spend ledger: budget reservations, charges and releases, kept in integer micro-dollars.

Every row is append-only. A `reserve` row holds budget; it is closed by exactly one `release` row
pointing at it (via `reservation_id`), and `settle` adds the `charge` for what was actually spent in
the same transaction. Outstanding budget is therefore "reserve rows with no release", and money
spent is simply the sum of `charge` rows. Callers run these functions inside a write transaction.

Budget checks and summaries never scan that history: triggers on the ledger (schema version 3, see
database.MIGRATIONS; on PostgreSQL postgres.BASELINE) keep running totals in the same transaction as each inserted
row: `ledger_days` (charged and held per day), `ledger_charges` (charged per day and provider) and `ledger_open` (the
reservations not yet released).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from fluxroute.errors import BudgetExceeded, JobNotFound
from fluxroute.store.database import Connection
from fluxroute.store.money import from_micros, to_micros, usd
from fluxroute.store.records import Reservation, SpendRow, SpendSummary, as_utc, to_iso


def money_micros(amount: Decimal, what: str) -> int:
    """`amount` in micro-dollars, refusing negative sums of money."""
    micros = to_micros(amount)
    if micros < 0:
        raise ValueError(f"{what} must not be negative, got {amount}")
    return micros


def reserve(
    conn: Connection,
    job_id: str,
    amount: Decimal,
    *,
    per_call_cap: Decimal | None,
    daily_cap: Decimal | None,
    now: datetime | None,
) -> Reservation:
    """Check the caps and hold `amount` for `job_id`; see JobStore.reserve."""
    micros = money_micros(amount, "reservation amount")
    moment = as_utc(now)
    day = moment.date()
    _require_job(conn, job_id)
    if per_call_cap is not None and micros > money_micros(per_call_cap, "per-call cap"):
        raise BudgetExceeded(f"estimated {usd(amount)} exceeds the per-call cap {usd(per_call_cap)}")
    if daily_cap is not None:
        cap = money_micros(daily_cap, "daily cap")
        spent, reserved = day_figures(conn, day)
        # `reserved` holds every open reservation, the amounts at risk included: what providers can
        # bill today never passes the cap
        if spent + reserved + micros > cap:
            remaining = from_micros(max(0, cap - spent - reserved))
            raise BudgetExceeded(
                f"estimated {usd(amount)} would exceed the daily cap {usd(daily_cap)} for {day} (UTC): "
                f"{usd(from_micros(spent))} spent, {usd(from_micros(reserved))} reserved or at risk, "
                f"{usd(remaining)} remaining"
            )
    (reservation_id,) = conn.execute(
        "INSERT INTO ledger (job_id, kind, amount_micros, day, created_at) VALUES (?, 'reserve', ?, ?, ?) RETURNING id",
        (job_id, micros, day.isoformat(), to_iso(moment)),
    ).fetchone()
    return Reservation(id=int(reservation_id), job_id=job_id, amount=from_micros(micros), day=day)


def settle(
    conn: Connection,
    reservation: Reservation,
    actual: Decimal,
    attempt_id: str | None,
    now: datetime | None,
) -> None:
    """Record the charge for a reservation and close it; see JobStore.settle."""
    micros = money_micros(actual, "actual cost")
    job_id, reserved_micros, day = _reservation_row(conn, reservation)
    if attempt_id is not None:
        _require_attempt(conn, attempt_id)
    already_charged = _exists(conn, "kind = 'charge' AND reservation_id = ?", reservation.id) or (
        attempt_id is not None and _attempt_charged(conn, attempt_id)
    )
    created_at = to_iso(as_utc(now))
    if not already_charged:
        # the charge lands on the reservation's day, so a job that runs past midnight
        # replaces its own hold rather than spilling into the next day's budget
        conn.execute(
            "INSERT INTO ledger (job_id, attempt_id, reservation_id, kind, amount_micros, day, created_at)"
            " VALUES (?, ?, ?, 'charge', ?, ?, ?)",
            (job_id, attempt_id, reservation.id, micros, day, created_at),
        )
    _close(conn, reservation.id, job_id, reserved_micros, day, created_at)


def release(conn: Connection, reservation: Reservation, now: datetime | None) -> None:
    """Free a reservation without charging anything; see JobStore.release."""
    job_id, reserved_micros, day = _reservation_row(conn, reservation)
    _close(conn, reservation.id, job_id, reserved_micros, day, to_iso(as_utc(now)))


def charge(
    conn: Connection,
    job_id: str,
    amount: Decimal,
    attempt_id: str | None,
    now: datetime | None,
) -> None:
    """Record money spent outside any reservation; see JobStore.charge."""
    micros = money_micros(amount, "charge amount")
    moment = as_utc(now)
    _require_job(conn, job_id)
    if attempt_id is not None:
        _require_attempt(conn, attempt_id)
        if _attempt_charged(conn, attempt_id):
            return
    conn.execute(
        "INSERT INTO ledger (job_id, attempt_id, kind, amount_micros, day, created_at)"
        " VALUES (?, ?, 'charge', ?, ?, ?)",
        (job_id, attempt_id, micros, moment.date().isoformat(), to_iso(moment)),
    )


def day_figures(conn: Connection, day: date) -> tuple[int, int]:
    """Micro-dollars charged on `day` and still reserved (unreleased) on `day`: one row of the running totals."""
    row = conn.execute(
        "SELECT charged_micros, held_micros FROM ledger_days WHERE day = ?", (day.isoformat(),)
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


# Open reservations, each with its provider and whether a provider may already bill it: held for an
# attempt that is `submitting` (the POST may have left) or `in_flight` (accepted) — money at risk.
# Read from `ledger_open`, so closed history is never visited; attempts change status outside the ledger, so
# the split between reserved and at risk is made here, at read time.
_OPEN_HOLDS = """
    SELECT ledger_open.day, COALESCE(attempts.provider, 'unsent'), ledger_open.amount_micros,
           attempts.status IN ('submitting', 'in_flight')
    FROM ledger_open LEFT JOIN attempts ON attempts.reservation_id = ledger_open.reservation_id
    WHERE ledger_open.day >= ?
"""


def summary(conn: Connection, now: datetime | None, daily_cap: Decimal | None, days: int = 7) -> SpendSummary:
    """Spend figures for the UTC day of `now`, per provider for the `days` days up to it, and for all time."""
    day = as_utc(now).date()
    first = (day - timedelta(days=days - 1)).isoformat()
    spent, held = day_figures(conn, day)
    # all-time figures add up one row per day and provider, not one per charge
    count, total = conn.execute(
        "SELECT COALESCE(SUM(charges), 0), COALESCE(SUM(charged_micros), 0) FROM ledger_charges"
    ).fetchone()
    by_provider = {
        str(provider): from_micros(int(micros))
        for provider, micros in conn.execute(
            "SELECT provider, SUM(charged_micros) FROM ledger_charges GROUP BY provider ORDER BY provider"
        )
    }
    cells: dict[tuple[str, str], list[int]] = {}
    for row_day, provider, micros in conn.execute(
        "SELECT day, provider, charged_micros FROM ledger_charges WHERE day >= ?", (first,)
    ):
        cells.setdefault((str(row_day), str(provider)), [0, 0, 0])[0] += int(micros)
    at_risk = 0
    for row_day, provider, micros, risky in conn.execute(_OPEN_HOLDS, (first,)):
        cells.setdefault((str(row_day), str(provider)), [0, 0, 0])[2 if risky else 1] += int(micros)
        if risky and str(row_day) == day.isoformat():
            at_risk += int(micros)
    rows = [
        SpendRow(date.fromisoformat(d), p, from_micros(c), from_micros(r), from_micros(a))
        for (d, p), (c, r, a) in sorted(cells.items(), key=lambda item: (item[0][0], item[0][1]), reverse=True)
    ]
    remaining: Decimal | None = None
    if daily_cap is not None:
        remaining = from_micros(max(0, money_micros(daily_cap, "daily cap") - spent - held))
    return SpendSummary(
        day=day,
        spent_today=from_micros(spent),
        reserved_today=from_micros(held - at_risk),
        daily_cap=daily_cap,
        remaining_today=remaining,
        spent_total=from_micros(int(total)),
        by_provider=by_provider,
        charges=int(count),
        at_risk_today=from_micros(at_risk),
        days=rows,
    )


def total_charged(conn: Connection) -> Decimal:
    """The exact sum of every charge row."""
    (total,) = conn.execute("SELECT COALESCE(SUM(amount_micros), 0) FROM ledger WHERE kind = 'charge'").fetchone()
    return from_micros(int(total))


def _close(conn: Connection, reservation_id: int, job_id: str, micros: int, day: str, created_at: str) -> None:
    if _exists(conn, "kind = 'release' AND reservation_id = ?", reservation_id):
        return
    conn.execute(
        "INSERT INTO ledger (job_id, reservation_id, kind, amount_micros, day, created_at)"
        " VALUES (?, ?, 'release', ?, ?, ?)",
        (job_id, reservation_id, micros, day, created_at),
    )


def _reservation_row(conn: Connection, reservation: Reservation) -> tuple[str, int, str]:
    # the stored row, not the caller's copy, is the truth about what was held
    row = conn.execute(
        "SELECT job_id, amount_micros, day FROM ledger WHERE id = ? AND kind = 'reserve'",
        (reservation.id,),
    ).fetchone()
    if row is None or row[0] != reservation.job_id:
        raise ValueError(f"no reservation {reservation.id} for job {reservation.job_id} in the ledger")
    return str(row[0]), int(row[1]), str(row[2])


def _attempt_charged(conn: Connection, attempt_id: str) -> bool:
    return _exists(conn, "kind = 'charge' AND attempt_id = ?", attempt_id)


def _exists(conn: Connection, where: str, value: object) -> bool:
    return conn.execute(f"SELECT 1 FROM ledger WHERE {where} LIMIT 1", (value,)).fetchone() is not None


def _require_job(conn: Connection, job_id: str) -> None:
    if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
        raise JobNotFound(f"no job {job_id!r} in the store")


def _require_attempt(conn: Connection, attempt_id: str) -> None:
    if conn.execute("SELECT 1 FROM attempts WHERE id = ?", (attempt_id,)).fetchone() is None:
        raise JobNotFound(f"no attempt {attempt_id!r} in the store")
