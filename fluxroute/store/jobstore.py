"""The job store: jobs, their provider attempts and the spend ledger, in one SQLite file (the embedded default) or
one PostgreSQL database shared by several processes and replicas: the same code and SQL on both, the connection
layer chosen by dialect (fluxroute.store.database.Database, fluxroute.store.postgres.PostgresDatabase)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from fluxroute.errors import BudgetExceeded, ConfigError, IdempotencyConflict, JobNotFound
from fluxroute.store import ledger
from fluxroute.store.database import Backend, Connection, Database, Row
from fluxroute.store.files import private_dir
from fluxroute.store.leases import LEASE, Owner, lease_free
from fluxroute.store.lineage import (
    DraftSetRecord,
    LineageLink,
    insert_draft_set,
    insert_link,
    select_draft_set,
    select_draft_sets,
    select_links,
)
from fluxroute.store.money import from_micros
from fluxroute.store.records import (
    FINISHED_ATTEMPT_STATUSES,
    JOB_STATUSES,
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
    as_utc,
    attempt_from_row,
    job_from_row,
    to_iso,
    utc_now,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

DB_FILENAME = "fluxroute.db"

# Request keys that would mean a credential slipped through; the caller is meant to strip them.
SECRET_KEYS = frozenset({"api_key", "fal_key", "krea_api_token", "authorization", "token"})

# where an attempt's detail keeps when a webhook last started a status check of it
WEBHOOK_CHECK_KEY = "webhook_check_at"

LATENCY_WEIGHT = 0.2  # the weight of the newest job in an offer's learned latency, once it has 5 or more


class JobStore:
    """Durable record of jobs, attempts and money, safe to share across threads and processes.

    Every write that reads before it writes (idempotent create, budget checks, settling, lease claims) runs in a
    write transaction that serialises it against every other writer: SQLite's BEGIN IMMEDIATE file lock, or on
    PostgreSQL an advisory lock every process and replica takes first (see fluxroute.store.postgres).
    """

    def __init__(self, path: Path | None = None, *, database: Backend | None = None) -> None:
        """Open (creating if needed) the SQLite store at `path` and bring its schema up to date; or use `database`,
        an open connection layer of another dialect (see `connect`).

        Raises:
            ConfigError: the file was written by a newer fluxroute with a schema this one does not know.
        """
        if (path is None) == (database is None):
            raise TypeError("JobStore takes a SQLite path or an open database, one of them")
        self.path = path  # None on PostgreSQL
        self._db: Backend
        if database is not None:
            self._db = database
        else:
            assert path is not None
            self._db = Database(path)

    @classmethod
    def connect(cls, url: SecretStr | str, *, max_connections: int = 10) -> JobStore:
        """Open the store in the PostgreSQL database at `url` (postgresql://…), creating its schema if the
        database has none; one pool of at most `max_connections` connections (needs the `postgres` extra).

        Raises:
            ConfigError: the database has a schema from a newer fluxroute, or psycopg is not installed.
            psycopg.OperationalError: the server cannot be reached.
        """
        try:
            from fluxroute.store.postgres import PostgresDatabase
        except ImportError as exc:
            raise ConfigError(f"a PostgreSQL store needs psycopg: pip install 'fluxroute[postgres]' ({exc})") from None
        return cls(database=PostgresDatabase(url, max_size=max_connections))

    @classmethod
    def open(cls, home: Path) -> JobStore:
        """Open `home`/fluxroute.db, creating the home directory (owner-only) if it does not exist."""
        private_dir(home)
        return cls(home / DB_FILENAME)

    @classmethod
    def open_existing(cls, home: Path) -> JobStore | None:
        """The store under `home` if one was ever created; None otherwise (read-only commands create nothing)."""
        return cls(home / DB_FILENAME) if (home / DB_FILENAME).is_file() else None

    def close(self) -> None:
        """Close every connection this store opened, in every thread."""
        self._db.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # jobs

    def create_job(
        self, request: dict[str, object], idempotency_key: str | None = None, *, status: JobStatus = "queued"
    ) -> tuple[JobRecord, bool]:
        """Record a new queued job, or return the one already made under `idempotency_key`.

        Returns:
            (job, created): `created` is False when an earlier job with the same key and the same
            request (compared by a sha256 of its canonical JSON) was returned instead.

        Raises:
            IdempotencyConflict: the key was already used for a different request.
            ValueError: the request holds a key named like a credential, or is not JSON-serialisable.
        """
        with self._db.write() as conn:
            return _create_job(conn, request, idempotency_key, status)

    def start_call(
        self,
        request: dict[str, object],
        idempotency_key: str | None,
        first: AttemptStart,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        owner: Owner,
    ) -> CallStart:
        """Start a call in one transaction: its job (status `running`), the budget for its first attempt and that
        attempt (`submitting`, leased to `owner`). An existing job under `idempotency_key` is returned instead,
        with nothing reserved; a first attempt over a cap leaves the job recorded and says why in `refused`.

        Raises:
            IdempotencyConflict: the key was already used for a different request.
            ValueError: the request holds a credential-like key or is not JSON; a negative amount or cap.
        """
        with self._db.write() as conn:
            job, created = _create_job(conn, request, idempotency_key, "running")
            if not created:
                return CallStart(job, False)
            try:
                reservation = ledger.reserve(
                    conn, job.id, first.estimated_cost, per_call_cap=per_call_cap, daily_cap=daily_cap, now=None
                )
            except BudgetExceeded as exc:
                return CallStart(job, True, refused=exc)
            attempt = _insert_attempt(conn, job.id, first, reservation.id, owner)
            return CallStart(job, True, reservation, attempt)

    def begin_attempt(
        self,
        job_id: str,
        spec: AttemptStart,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        owner: Owner,
    ) -> tuple[Reservation, AttemptRecord]:
        """Reserve budget for a further attempt of a job and record the attempt (leased to `owner`), in one
        transaction.

        Raises:
            BudgetExceeded: the estimate is over a cap; nothing is recorded.
            JobNotFound: no job with this id.
        """
        with self._db.write() as conn:
            reservation = ledger.reserve(
                conn, job_id, spec.estimated_cost, per_call_cap=per_call_cap, daily_cap=daily_cap, now=None
            )
            return reservation, _insert_attempt(conn, job_id, spec, reservation.id, owner)

    def finish_call(
        self,
        attempt_id: str,
        reservation: Reservation,
        *,
        status: AttemptStatus,
        cost: Decimal | None,
        error: str | None = None,
        job: JobChange | None = None,
    ) -> None:
        """Close an attempt and its money in one transaction: charge `cost` and close the reservation (or, with
        `cost` None, release it unbilled), record how the attempt ended and free its lease, and apply `job` to
        the job record. Charging is idempotent (an attempt is charged at most once).

        Raises:
            JobNotFound: no attempt with this id.
            ValueError: `status` is not a finished status, or `cost` is negative.
        """
        _check_status(status, FINISHED_ATTEMPT_STATUSES, "finished attempt status")
        cost_micros = None if cost is None else ledger.money_micros(cost, "attempt cost")
        result_json = None if job is None or job.result is None else json.dumps(job.result, allow_nan=False)
        now = to_iso(utc_now())
        with self._db.write() as conn:
            if cost is None:
                ledger.release(conn, reservation, None)
            else:
                ledger.settle(conn, reservation, cost, attempt_id, None)
            cursor = conn.execute(
                "UPDATE attempts SET status = ?, cost_micros = COALESCE(?, cost_micros), error = COALESCE(?, error),"
                " finished_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (status, cost_micros, error, now, attempt_id),
            )
            if cursor.rowcount == 0:
                raise JobNotFound(f"no attempt {attempt_id!r} in the store")
            if job is not None:
                _check_status(job.status, JOB_STATUSES, "job status")
                conn.execute(
                    "UPDATE jobs SET status = ?, result_json = COALESCE(?, result_json),"
                    " error = COALESCE(?, error), updated_at = ? WHERE id = ?",
                    (job.status, result_json, job.error, now, reservation.job_id),
                )

    def get_job(self, job_id: str) -> JobRecord:
        """The job with this id. Raises JobNotFound if there is none."""
        return job_from_row(_job_row(self._db.connection(), job_id))

    def find_job_by_key(self, idempotency_key: str) -> JobRecord | None:
        """The job created under this idempotency key, if any."""
        row = (
            self._db.connection().execute("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        )
        return None if row is None else job_from_row(row)

    def list_jobs(self, limit: int = 50, status: str | None = None) -> list[JobRecord]:
        """Up to `limit` jobs, newest first, optionally only those with `status`."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        conn = self._db.connection()
        # rowid: SQLite's implicit insertion order; PostgreSQL's jobs table has an explicit column of that name
        if status is None:
            rows = conn.execute("SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        else:
            _check_status(status, JOB_STATUSES, "job status")
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (status, limit),
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def update_job(
        self,
        job_id: str,
        *,
        status: JobStatus,
        result: dict[str, object] | None = None,
        error: str | None = None,
    ) -> JobRecord:
        """Set a job's status; `result` and `error` replace the stored ones only when given.

        Raises:
            JobNotFound: no job with this id.
        """
        _check_status(status, JOB_STATUSES, "job status")
        result_json = None if result is None else json.dumps(result, allow_nan=False)
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, result_json = COALESCE(?, result_json),"
                " error = COALESCE(?, error), updated_at = ? WHERE id = ?",
                (status, result_json, error, to_iso(utc_now()), job_id),
            )
            if cursor.rowcount == 0:
                raise JobNotFound(f"no job {job_id!r} in the store")
            return job_from_row(_job_row(conn, job_id))

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
    ) -> AttemptRecord:
        """Record that a job is about to be submitted to a provider (status `submitting`), leased to `owner`.

        Written before the provider call so a crash mid-submit leaves a trace to reconcile: `started_at`
        opens the window in which the provider may have created the job. `reservation_id` is the budget
        the attempt holds (counted as at risk from now until the attempt is settled).

        Raises:
            JobNotFound: no job with this id.
        """
        spec = AttemptStart(offer_id, provider, model, estimated_cost, detail)
        with self._db.write() as conn:
            _job_row(conn, job_id)
            return _insert_attempt(conn, job_id, spec, reservation_id, owner)

    def mark_submitted(
        self, attempt_id: str, provider_job_id: str, detail: dict[str, object] | None = None
    ) -> AttemptRecord:
        """Record the provider's job id once it accepted the work (status `in_flight`).

        Args:
            detail: merged key by key over the detail given to start_attempt.

        Raises:
            JobNotFound: no attempt with this id.
            ValueError: the attempt has already finished, or another attempt already holds this provider
                job (an adopted job is followed by one attempt only).
        """
        with self._db.write() as conn:
            if detail is None:  # the common case: one statement, checked by its own WHERE clause
                row = conn.execute(
                    "UPDATE attempts SET status = 'in_flight', provider_job_id = ? WHERE id = ?"
                    " AND status IN ('submitting', 'in_flight') AND NOT EXISTS (SELECT 1 FROM attempts AS other"
                    " WHERE other.provider = attempts.provider AND other.provider_job_id = ? AND other.id != ?)"
                    " RETURNING *",
                    (provider_job_id, attempt_id, provider_job_id, attempt_id),
                ).fetchone()
                if row is not None:
                    return attempt_from_row(row)
            current = attempt_from_row(_attempt_row(conn, attempt_id))
            if current.status not in ("submitting", "in_flight"):
                raise ValueError(f"attempt {attempt_id} is already {current.status}; it cannot go in flight")
            holder = conn.execute(
                "SELECT id FROM attempts WHERE provider = ? AND provider_job_id = ? AND id != ?",
                (current.provider, provider_job_id, attempt_id),
            ).fetchone()
            if holder is not None:
                raise ValueError(f"{current.provider} job {provider_job_id} already belongs to attempt {holder[0]}")
            merged = None if current.detail is None and detail is None else {**(current.detail or {}), **(detail or {})}
            conn.execute(
                "UPDATE attempts SET status = 'in_flight', provider_job_id = ?, detail_json = ? WHERE id = ?",
                (provider_job_id, _optional_json(merged), attempt_id),
            )
            return attempt_from_row(_attempt_row(conn, attempt_id))

    def finish_attempt(
        self,
        attempt_id: str,
        *,
        status: AttemptStatus,
        cost: Decimal | None = None,
        error: str | None = None,
    ) -> AttemptRecord:
        """Record how an attempt ended: `succeeded`, `failed` or `cancelled`, with its real cost if known.

        Raises:
            JobNotFound: no attempt with this id.
            ValueError: `status` is not a finished status, or `cost` is negative.
        """
        _check_status(status, FINISHED_ATTEMPT_STATUSES, "finished attempt status")
        cost_micros = None if cost is None else ledger.money_micros(cost, "attempt cost")
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE attempts SET status = ?, cost_micros = COALESCE(?, cost_micros), error = COALESCE(?, error),"
                " finished_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (status, cost_micros, error, to_iso(utc_now()), attempt_id),
            )
            if cursor.rowcount == 0:
                raise JobNotFound(f"no attempt {attempt_id!r} in the store")
            return attempt_from_row(_attempt_row(conn, attempt_id))

    def note_attempt(
        self, attempt_id: str, *, error: str | None = None, detail: dict[str, object] | None = None
    ) -> AttemptRecord:
        """Record what happened to an attempt that is still open (an error while following it, a count of
        failed resumes), without changing its status. `detail` is merged key by key.

        Raises:
            JobNotFound: no attempt with this id.
        """
        with self._db.write() as conn:
            current = attempt_from_row(_attempt_row(conn, attempt_id))
            merged = {**(current.detail or {}), **(detail or {})}
            conn.execute(
                "UPDATE attempts SET error = COALESCE(?, error), detail_json = ? WHERE id = ?",
                (error, _optional_json(merged), attempt_id),
            )
            return attempt_from_row(_attempt_row(conn, attempt_id))

    def claim_attempt(self, attempt_id: str, owner: Owner, now: datetime | None = None) -> AttemptRecord | None:
        """Make `owner` the process that follows an open attempt, if its lease is free (let go, expired, or held
        by a stopped process on this host; never while `owner` itself follows it); checked and written in one
        transaction, so two processes never both take it. None when it cannot be taken (or is no longer open).

        Raises:
            JobNotFound: no attempt with this id.
        """
        moment = as_utc(now)
        with self._db.write() as conn:
            current = attempt_from_row(_attempt_row(conn, attempt_id))
            if current.status not in ("submitting", "in_flight"):
                return None
            if not lease_free(current.lease_owner, current.lease_until, moment, owner):
                return None
            conn.execute(
                "UPDATE attempts SET lease_owner = ?, lease_until = ? WHERE id = ?",
                (str(owner), to_iso(moment + LEASE), attempt_id),
            )
            return attempt_from_row(_attempt_row(conn, attempt_id))

    def renew_lease(self, attempt_id: str, owner: Owner, now: datetime | None = None) -> bool:
        """Extend `owner`'s lease on an open attempt by LEASE from `now`. False when `owner` no longer holds it
        (another process took it up after the lease ran out, or the attempt is finished)."""
        moment = as_utc(now)
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE attempts SET lease_until = ? WHERE id = ? AND lease_owner = ?"
                " AND status IN ('submitting', 'in_flight')",
                (to_iso(moment + LEASE), attempt_id, str(owner)),
            )
            return cursor.rowcount == 1

    def let_go(self, attempt_id: str, owner: Owner, *, error: str | None = None) -> None:
        """`owner` stops following an open attempt: its lease is freed for whoever resumes the job (`error`,
        when given, says why). Nothing changes when `owner` does not hold the lease."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE attempts SET lease_owner = NULL, lease_until = NULL, error = COALESCE(?, error)"
                " WHERE id = ? AND lease_owner = ?",
                (error, attempt_id, str(owner)),
            )

    def at_risk(self, job_id: str | None = None) -> list[tuple[AttemptRecord, Decimal]]:
        """Open attempts (submitting or in flight) whose budget is still held, with the amount at risk;
        of one job, or of every job. Oldest first."""
        query = (
            "SELECT attempts.*, ledger_open.amount_micros AS held FROM attempts"
            " JOIN ledger_open ON ledger_open.reservation_id = attempts.reservation_id"
            " WHERE attempts.status IN ('submitting', 'in_flight')"
        )
        params: tuple[str, ...] = ()
        if job_id is not None:
            query += " AND attempts.job_id = ?"
            params = (job_id,)
        rows = self._db.connection().execute(query + " ORDER BY attempts.started_at", params).fetchall()
        return [(attempt_from_row(row), from_micros(int(row["held"]))) for row in rows]

    def known_provider_jobs(self, provider: str, provider_job_ids: list[str]) -> set[str]:
        """Which of these provider job ids some attempt already holds."""
        conn = self._db.connection()
        return {
            job_id
            for job_id in provider_job_ids
            if conn.execute(
                "SELECT 1 FROM attempts WHERE provider = ? AND provider_job_id = ? LIMIT 1", (provider, job_id)
            ).fetchone()
        }

    def claim_webhook_check(
        self, provider: str, provider_job_id: str, window_s: float, now: float | None = None
    ) -> WebhookCheck:
        """May a webhook naming this provider job start a status check now? "unknown" when no attempt has it in
        flight; "recent" when a check was claimed less than `window_s` seconds ago; otherwise "due", and this
        claim is recorded (wall-clock seconds, in the attempt's detail). Checked and written in one transaction,
        so every thread and process sharing the store together gets at most one "due" per job per window."""
        with self._db.write() as conn:
            # the time is read holding the write lock: a claim that waited for the lock behind a later one must not
            # count as older than it (that made a second "due" in one window under load)
            moment = time.time() if now is None else now
            row = conn.execute(
                "SELECT * FROM attempts WHERE provider = ? AND provider_job_id = ? AND status = 'in_flight'",
                (provider, provider_job_id),
            ).fetchone()
            if row is None:
                return "unknown"
            attempt = attempt_from_row(row)
            detail = attempt.detail or {}
            last = detail.get(WEBHOOK_CHECK_KEY)
            if isinstance(last, int | float) and abs(moment - last) < window_s:
                return "recent"
            conn.execute(
                "UPDATE attempts SET detail_json = ? WHERE id = ?",
                (_optional_json({**detail, WEBHOOK_CHECK_KEY: moment}), attempt.id),
            )
            return "due"

    def attempts_for(self, job_id: str) -> list[AttemptRecord]:
        """Every attempt of a job in the order they were made. Raises JobNotFound for an unknown job."""
        with self._db.read() as conn:
            _job_row(conn, job_id)
            rows = conn.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY seq", (job_id,))
            return [attempt_from_row(row) for row in rows]

    def in_flight_attempts(self) -> list[AttemptRecord]:
        """Attempts a provider accepted and that never finished: what a restart resumes polling."""
        return self._attempts_with_status("in_flight")

    def submitting_attempts(self) -> list[AttemptRecord]:
        """Attempts that crashed before the provider answered; they may or may not have been billed."""
        return self._attempts_with_status("submitting")

    def _attempts_with_status(self, status: AttemptStatus) -> list[AttemptRecord]:
        rows = self._db.connection().execute(
            "SELECT * FROM attempts WHERE status = ? ORDER BY started_at, job_id, seq", (status,)
        )
        return [attempt_from_row(row) for row in rows]

    # budget and ledger

    def reserve(
        self,
        job_id: str,
        amount: Decimal,
        *,
        per_call_cap: Decimal | None,
        daily_cap: Decimal | None,
        now: datetime | None = None,
    ) -> Reservation:
        """Hold `amount` of budget for a job, atomically checked against the caps.

        Today's figure counted against `daily_cap` is charges plus still-open reservations on the
        UTC day of `now` (default: the current time). Concurrent callers in any thread or process
        never together exceed the cap.

        Raises:
            BudgetExceeded: `amount` is over `per_call_cap`, or would take today's total over `daily_cap`.
            JobNotFound: no job with this id.
            ValueError: a negative amount or cap.
        """
        with self._db.write() as conn:
            return ledger.reserve(conn, job_id, amount, per_call_cap=per_call_cap, daily_cap=daily_cap, now=now)

    def settle(self, reservation: Reservation, actual: Decimal, attempt_id: str | None = None) -> None:
        """Charge what was actually spent (possibly 0) and close the reservation, in one transaction.

        The charge is booked on the reservation's day. Settling again is a no-op, and an attempt
        that was already charged (e.g. by crash-resume) is not charged a second time.

        Raises:
            ValueError: the reservation is not in the ledger, or `actual` is negative.
            JobNotFound: `attempt_id` names no attempt.
        """
        with self._db.write() as conn:
            ledger.settle(conn, reservation, actual, attempt_id, None)

    def release(self, reservation: Reservation) -> None:
        """Free a reservation that will not be spent. Releasing again, or after settling, is a no-op."""
        with self._db.write() as conn:
            ledger.release(conn, reservation, None)

    def charge(self, job_id: str, amount: Decimal, attempt_id: str | None = None, now: datetime | None = None) -> None:
        """Record money spent without a reservation (crash-resume); no caps are checked.

        With an `attempt_id` this is idempotent: an attempt is charged at most once.

        Raises:
            JobNotFound: no such job or attempt.
        """
        with self._db.write() as conn:
            ledger.charge(conn, job_id, amount, attempt_id, now)

    def spend_summary(
        self, now: datetime | None = None, daily_cap: Decimal | None = None, days: int = 7
    ) -> SpendSummary:
        """Spending for the UTC day of `now` (default: today), per provider for `days` days, and for all time."""
        with self._db.read() as conn:
            return ledger.summary(conn, now, daily_cap, days)

    def reservation(self, reservation_id: int) -> Reservation:
        """The reservation with this id, as the ledger holds it.

        Raises:
            ValueError: no such reservation.
        """
        row = (
            self._db.connection()
            .execute(
                "SELECT id, job_id, amount_micros, day FROM ledger WHERE id = ? AND kind = 'reserve'", (reservation_id,)
            )
            .fetchone()
        )
        if row is None:
            raise ValueError(f"no reservation {reservation_id} in the ledger")
        return Reservation(id=row[0], job_id=row[1], amount=from_micros(row[2]), day=date.fromisoformat(row[3]))

    def is_open(self, reservation: Reservation) -> bool:
        """True while the reservation is neither released nor settled."""
        row = (
            self._db.connection()
            .execute("SELECT 1 FROM ledger WHERE reservation_id = ? AND kind = 'release'", (reservation.id,))
            .fetchone()
        )
        return row is None

    def total_charged(self) -> Decimal:
        """The exact sum of every charge ever recorded."""
        return ledger.total_charged(self._db.connection())

    # latency observations

    def observe_latency(self, offer_id: str, log_ratio: float, now: datetime | None = None) -> LatencyStats:
        """Fold one completed job of `offer_id` into its learned latency: `log_ratio` is the log of (observed time
        to completion / the planner's estimate for that job). The weight of the newest job is 1/n up to n = 5, then
        LATENCY_WEIGHT (0.2), so the first jobs average and later ones follow a drifting provider."""
        stamp = to_iso(now or utc_now())
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM offer_latency WHERE offer_id = ?", (offer_id,)).fetchone()
            if row is None:
                stats = LatencyStats(1, log_ratio, 0.0)
            else:
                n = int(row["n"]) + 1
                weight = max(1 / n, LATENCY_WEIGHT)
                mean, dev = float(row["ewma_log_ratio"]), float(row["ewma_abs_dev"])
                stats = LatencyStats(
                    n, mean + weight * (log_ratio - mean), dev + weight * (abs(log_ratio - mean) - dev)
                )
            conn.execute(
                "INSERT INTO offer_latency (offer_id, n, ewma_log_ratio, ewma_abs_dev, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (offer_id) DO UPDATE SET n = excluded.n,"
                " ewma_log_ratio = excluded.ewma_log_ratio, ewma_abs_dev = excluded.ewma_abs_dev,"
                " updated_at = excluded.updated_at",
                (offer_id, stats.n, stats.log_ratio, stats.abs_dev, stamp),
            )
        return stats

    def latency_stats(self, offer_id: str) -> LatencyStats | None:
        """What completed jobs of `offer_id` taught about its latency; None before the first."""
        row = (
            self._db.connection()
            .execute("SELECT n, ewma_log_ratio, ewma_abs_dev FROM offer_latency WHERE offer_id = ?", (offer_id,))
            .fetchone()
        )
        return None if row is None else LatencyStats(int(row[0]), float(row[1]), float(row[2]))

    # draft sets and image lineage (fluxroute.store.lineage)

    def record_draft_set(
        self,
        request: dict[str, object],
        drafts: list[dict[str, object]],
        total_cost: Decimal,
        detail: dict[str, object] | None = None,
        idempotency_key: str | None = None,
    ) -> DraftSetRecord:
        """Record a draft set and, for each draft, its draft_of link to the set (one transaction); under an
        `idempotency_key` already used, the set recorded with it is returned and nothing is written.

        Raises:
            ValueError: a negative total, or a draft without an integer number or image_index.
        """
        with self._db.write() as conn:
            return insert_draft_set(conn, request, drafts, total_cost, detail, idempotency_key)

    def get_draft_set(self, draft_set_id: str) -> DraftSetRecord:
        """The draft set with this id. Raises JobNotFound if there is none."""
        return select_draft_set(self._db.connection(), draft_set_id)

    def list_draft_sets(self, limit: int = 50) -> list[DraftSetRecord]:
        """Up to `limit` draft sets, newest first."""
        return select_draft_sets(self._db.connection(), limit)

    def record_lineage(
        self, job_id: str, image_index: int, parent_job_id: str, parent_index: int, relation: str
    ) -> LineageLink:
        """Record that image `image_index` of `job_id` came from image `parent_index` of `parent_job_id` by
        `relation` (draft_of, finalized_from, edited_from, upscaled_from); recording it again changes nothing."""
        with self._db.write() as conn:
            return insert_link(conn, job_id, image_index, parent_job_id, parent_index, relation)

    def lineage(self, job_id: str) -> list[LineageLink]:
        """The links of `job_id`'s images: to their parents and from their children, oldest first."""
        return select_links(self._db.connection(), job_id)


def _create_job(
    conn: Connection, request: dict[str, object], idempotency_key: str | None, status: JobStatus
) -> tuple[JobRecord, bool]:
    _check_status(status, JOB_STATUSES, "job status")
    _reject_secrets(request, "request")
    request_json = _canonical_json(request)
    request_hash = hashlib.sha256(request_json.encode()).hexdigest()
    if idempotency_key is not None:
        row = conn.execute("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        if row is not None:
            if row["request_hash"] != request_hash:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for job {row['id']} "
                    "with a different request; use a new key for a new request"
                )
            return job_from_row(row), False
    now = utc_now()
    stored = json.loads(request_json)
    job = JobRecord(uuid.uuid4().hex, idempotency_key, request_hash, stored, status, None, None, now, now)
    stamp = to_iso(now)
    conn.execute(
        "INSERT INTO jobs (id, idempotency_key, request_hash, request_json, status,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job.id, idempotency_key, request_hash, request_json, status, stamp, stamp),
    )
    return job, True


def _insert_attempt(
    conn: Connection, job_id: str, spec: AttemptStart, reservation_id: int | None, owner: Owner | None
) -> AttemptRecord:
    estimated_micros = ledger.money_micros(spec.estimated_cost, "estimated cost")
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts WHERE job_id = ?", (job_id,)).fetchone()
    now = utc_now()
    attempt = AttemptRecord(
        id=uuid.uuid4().hex,
        job_id=job_id,
        seq=seq,
        offer_id=spec.offer_id,
        provider=spec.provider,
        model=spec.model,
        provider_job_id=None,
        status="submitting",
        estimated_cost=from_micros(estimated_micros),
        cost=None,
        error=None,
        detail=json.loads(_optional_json(spec.detail) or "null"),
        started_at=now,
        finished_at=None,
        reservation_id=reservation_id,
        lease_owner=None if owner is None else str(owner),
        lease_until=None if owner is None else now + LEASE,
    )
    conn.execute(
        "INSERT INTO attempts (id, job_id, seq, offer_id, provider, model, status, estimated_cost_micros,"
        " detail_json, started_at, reservation_id, lease_owner, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, 'submitting', ?, ?, ?, ?, ?, ?)",
        (
            attempt.id,
            job_id,
            seq,
            spec.offer_id,
            spec.provider,
            spec.model,
            estimated_micros,
            _optional_json(spec.detail),
            to_iso(now),
            reservation_id,
            attempt.lease_owner,
            None if attempt.lease_until is None else to_iso(attempt.lease_until),
        ),
    )
    return attempt


def _canonical_json(request: dict[str, object]) -> str:
    try:
        return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"request is not JSON-serialisable: {exc}") from exc


def _optional_json(value: dict[str, object] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, allow_nan=False)


def _reject_secrets(value: object, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS:
                raise ValueError(f"{where} holds a credential-like key {key!r}; strip secrets before storing a job")
            _reject_secrets(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_secrets(item, f"{where}[{index}]")


def _check_status(status: str, allowed: frozenset[str], what: str) -> None:
    if status not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(sorted(allowed))}; got {status!r}")


def _job_row(conn: Connection, job_id: str) -> Row:
    row: Row | None = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id!r} in the store")
    return row


def _attempt_row(conn: Connection, attempt_id: str) -> Row:
    row: Row | None = conn.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no attempt {attempt_id!r} in the store")
    return row
