"""The job store's connection layer: the interface `JobStore` uses of a database, and SQLite's implementation of it
(per-thread connections, pragmas, transactions and migrations). PostgreSQL's is `fluxroute.store.postgres`.

`JobStore` runs the same SQL on every dialect: `?` placeholders, rows read by column name or position, portable
statements (`INSERT ... ON CONFLICT DO NOTHING`, `RETURNING id`, ordering by explicit columns).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from fluxroute.errors import ConfigError
from fluxroute.store.files import private_file
from fluxroute.store.schema import SCHEMA_VERSION

BUSY_TIMEOUT_MS = 5000


class Row(Protocol):
    """A result row, by column name or position (sqlite3.Row, fluxroute.store.postgres.Row)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Cursor(Protocol):
    """What a statement answers: its rows and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """Runs one statement with `?` placeholders (sqlite3.Connection, fluxroute.store.postgres.PgConnection)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...


class Backend(Protocol):
    """What the store uses of a database: this thread's connection, a write transaction that serialises writers
    across threads and processes, a read transaction with one consistent snapshot, and close."""

    def connection(self) -> Connection: ...
    def write(self) -> AbstractContextManager[Connection]: ...
    def read(self) -> AbstractContextManager[Connection]: ...
    def close(self) -> None: ...


# SQLite's migrations, one per schema version (see fluxroute.store.schema).
# Each migration is a list of single statements, run inside one BEGIN IMMEDIATE transaction together
# with the user_version bump; executescript() is avoided because it commits on its own.
# Append new migrations; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            request_hash TEXT NOT NULL,
            request_json TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            result_json TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_status ON jobs (status, created_at)",
        """
        CREATE TABLE attempts (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            seq INTEGER NOT NULL,
            offer_id TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            provider_job_id TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('submitting', 'in_flight', 'succeeded', 'failed', 'cancelled')),
            estimated_cost_micros INTEGER NOT NULL,
            cost_micros INTEGER,
            error TEXT,
            detail_json TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            UNIQUE (job_id, seq)
        )
        """,
        "CREATE INDEX attempts_by_status ON attempts (status)",
        """
        CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs (id),
            attempt_id TEXT REFERENCES attempts (id),
            reservation_id INTEGER REFERENCES ledger (id),
            kind TEXT NOT NULL CHECK (kind IN ('reserve', 'charge', 'release')),
            amount_micros INTEGER NOT NULL CHECK (amount_micros >= 0),
            day TEXT NOT NULL,
            created_at TEXT NOT NULL,
            CHECK ((kind = 'reserve') = (reservation_id IS NULL) OR kind = 'charge')
        )
        """,
        # The database itself refuses a second charge or release for one reservation, and a second
        # charge for one attempt, so no code path can double-count money.
        """
        CREATE UNIQUE INDEX ledger_one_close_per_reservation
            ON ledger (reservation_id, kind) WHERE reservation_id IS NOT NULL
        """,
        """
        CREATE UNIQUE INDEX ledger_one_charge_per_attempt
            ON ledger (attempt_id) WHERE kind = 'charge' AND attempt_id IS NOT NULL
        """,
        "CREATE INDEX ledger_by_day ON ledger (day, kind)",
    ),
    (
        # the budget an attempt holds: open while the provider may bill it (money at risk)
        "ALTER TABLE attempts ADD COLUMN reservation_id INTEGER REFERENCES ledger (id)",
        "CREATE INDEX attempts_by_provider_job ON attempts (provider, provider_job_id)",
    ),
    (
        # Running totals, so budget checks and spend summaries read a few rows instead of the whole ledger.
        # Triggers on the (append-only) ledger keep them in the very transaction of each ledger insert,
        # whatever code writes the row; the statements below backfill them from the rows already there.
        # Per day: every charge, and every reservation not yet released (what the daily cap counts).
        """
        CREATE TABLE ledger_days (
            day TEXT PRIMARY KEY,
            charged_micros INTEGER NOT NULL,
            held_micros INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        # Per day and provider (that of the charge's attempt, 'unknown' without one): charges and their count.
        """
        CREATE TABLE ledger_charges (
            day TEXT NOT NULL,
            provider TEXT NOT NULL,
            charged_micros INTEGER NOT NULL,
            charges INTEGER NOT NULL,
            PRIMARY KEY (day, provider)
        ) WITHOUT ROWID
        """,
        # The reservations not yet released: few at any moment, however long the history.
        """
        CREATE TABLE ledger_open (
            reservation_id INTEGER PRIMARY KEY REFERENCES ledger (id),
            day TEXT NOT NULL,
            amount_micros INTEGER NOT NULL
        )
        """,
        "CREATE INDEX ledger_open_by_day ON ledger_open (day)",
        "CREATE INDEX attempts_by_reservation ON attempts (reservation_id) WHERE reservation_id IS NOT NULL",
        """
        INSERT INTO ledger_open (reservation_id, day, amount_micros)
            SELECT id, day, amount_micros FROM ledger WHERE kind = 'reserve' AND NOT EXISTS (
                SELECT 1 FROM ledger AS closing WHERE closing.reservation_id = ledger.id AND closing.kind = 'release'
            )
        """,
        """
        INSERT INTO ledger_charges (day, provider, charged_micros, charges)
            SELECT ledger.day, COALESCE(attempts.provider, 'unknown'), SUM(ledger.amount_micros), COUNT(*)
            FROM ledger LEFT JOIN attempts ON attempts.id = ledger.attempt_id
            WHERE ledger.kind = 'charge' GROUP BY 1, 2
        """,
        """
        INSERT INTO ledger_days (day, charged_micros, held_micros)
            SELECT day, SUM(charged), SUM(held) FROM (
                SELECT day, charged_micros AS charged, 0 AS held FROM ledger_charges
                UNION ALL SELECT day, 0, amount_micros FROM ledger_open
            ) GROUP BY day
        """,
        """
        CREATE TRIGGER ledger_reserve_totals AFTER INSERT ON ledger WHEN NEW.kind = 'reserve' BEGIN
            INSERT INTO ledger_open (reservation_id, day, amount_micros) VALUES (NEW.id, NEW.day, NEW.amount_micros);
            INSERT INTO ledger_days (day, charged_micros, held_micros) VALUES (NEW.day, 0, NEW.amount_micros)
                ON CONFLICT (day) DO UPDATE SET held_micros = held_micros + excluded.held_micros;
        END
        """,
        """
        CREATE TRIGGER ledger_release_totals AFTER INSERT ON ledger WHEN NEW.kind = 'release' BEGIN
            UPDATE ledger_days SET held_micros = held_micros - (
                SELECT amount_micros FROM ledger_open WHERE reservation_id = NEW.reservation_id
            ) WHERE day = (SELECT day FROM ledger_open WHERE reservation_id = NEW.reservation_id);
            DELETE FROM ledger_open WHERE reservation_id = NEW.reservation_id;
        END
        """,
        """
        CREATE TRIGGER ledger_charge_totals AFTER INSERT ON ledger WHEN NEW.kind = 'charge' BEGIN
            INSERT INTO ledger_days (day, charged_micros, held_micros) VALUES (NEW.day, NEW.amount_micros, 0)
                ON CONFLICT (day) DO UPDATE SET charged_micros = charged_micros + excluded.charged_micros;
            INSERT INTO ledger_charges (day, provider, charged_micros, charges)
                VALUES (NEW.day, COALESCE((SELECT provider FROM attempts WHERE id = NEW.attempt_id), 'unknown'),
                        NEW.amount_micros, 1)
                ON CONFLICT (day, provider) DO UPDATE SET
                    charged_micros = charged_micros + excluded.charged_micros, charges = charges + 1;
        END
        """,
        # the totals are only exact while the ledger is append-only and a charge's provider stays put
        """
        CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN
            SELECT RAISE(ABORT, 'ledger rows are append-only');
        END
        """,
        """
        CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN
            SELECT RAISE(ABORT, 'ledger rows are append-only');
        END
        """,
        """
        CREATE TRIGGER attempts_keep_provider BEFORE UPDATE OF provider ON attempts
            WHEN NEW.provider IS NOT OLD.provider BEGIN
            SELECT RAISE(ABORT, 'an attempt keeps its provider (charges are totalled by it)');
        END
        """,
    ),
    (
        # How long each offer's jobs take, learned from completed jobs: the log of (observed time to completion /
        # the planner's estimate for that job, which already scales by megapixels, steps and images), as an
        # exponentially weighted mean and mean absolute deviation over `n` observations.
        """
        CREATE TABLE offer_latency (
            offer_id TEXT PRIMARY KEY,
            n INTEGER NOT NULL,
            ewma_log_ratio REAL NOT NULL,
            ewma_abs_dev REAL NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    ),
    (
        # Who follows an open attempt: its owner ("host/pid/token") and when that owner's lease runs out unless
        # renewed. Open attempts from before carry their owner in detail_json; they get a lease that runs out in
        # a minute (a process of the earlier version does not renew it).
        "ALTER TABLE attempts ADD COLUMN lease_owner TEXT",
        "ALTER TABLE attempts ADD COLUMN lease_until TEXT",
        """
        UPDATE attempts SET
            lease_owner = json_extract(detail_json, '$.owner.host') || '/'
                || json_extract(detail_json, '$.owner.pid') || '/earlier',
            lease_until = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now', '+60 seconds')
        WHERE status IN ('submitting', 'in_flight') AND json_extract(detail_json, '$.owner.pid') IS NOT NULL
        """,
        "CREATE INDEX attempts_open ON attempts (status, started_at) WHERE status IN ('submitting', 'in_flight')",
    ),
    (
        # A draft set: n cheap variants of one request, made as normal jobs (their money is in the ledger); the
        # set keeps the request, its drafts (job, image, seed, cost, path), the plan's explanation and the total.
        """
        CREATE TABLE draft_sets (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            created_at TEXT NOT NULL,
            request_json TEXT NOT NULL,
            drafts_json TEXT NOT NULL,
            detail_json TEXT,
            total_cost_micros INTEGER NOT NULL CHECK (total_cost_micros >= 0)
        )
        """,
        "CREATE INDEX draft_sets_by_created ON draft_sets (created_at)",
        # Where an image came from, for every tool that makes an image from another: (job, image) has the parent
        # (job, image) by `relation`. For draft_of the parent is the draft set (its id, and the draft's number).
        """
        CREATE TABLE image_lineage (
            job_id TEXT NOT NULL,
            image_index INTEGER NOT NULL CHECK (image_index >= 0),
            parent_job_id TEXT NOT NULL,
            parent_index INTEGER NOT NULL CHECK (parent_index >= 0),
            relation TEXT NOT NULL
                CHECK (relation IN ('draft_of', 'finalized_from', 'edited_from', 'upscaled_from')),
            created_at TEXT NOT NULL,
            PRIMARY KEY (job_id, image_index, parent_job_id, parent_index, relation)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX image_lineage_by_parent ON image_lineage (parent_job_id, parent_index)",
    ),
    # 7: variations (vary_image) are a relation of their own; SQLite cannot change a CHECK, so the table is rebuilt
    (
        """
        CREATE TABLE image_lineage_7 (
            job_id TEXT NOT NULL,
            image_index INTEGER NOT NULL CHECK (image_index >= 0),
            parent_job_id TEXT NOT NULL,
            parent_index INTEGER NOT NULL CHECK (parent_index >= 0),
            relation TEXT NOT NULL
                CHECK (relation IN ('draft_of', 'finalized_from', 'edited_from', 'varied_from', 'upscaled_from')),
            created_at TEXT NOT NULL,
            PRIMARY KEY (job_id, image_index, parent_job_id, parent_index, relation)
        ) WITHOUT ROWID
        """,
        "INSERT INTO image_lineage_7 SELECT * FROM image_lineage",
        "DROP TABLE image_lineage",
        "ALTER TABLE image_lineage_7 RENAME TO image_lineage",
        "CREATE INDEX image_lineage_by_parent ON image_lineage (parent_job_id, parent_index)",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION, "every schema version has its SQLite migration"


class Database:
    """One SQLite file shared by many threads, each with its own connection.

    sqlite3 connections are not safe to share between threads mid-transaction, so each thread gets
    its own; cross-thread and cross-process atomicity comes from SQLite's file locks (BEGIN IMMEDIATE).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        # owner-only from its first byte; SQLite gives its -wal and -shm files the database file's mode
        private_file(path)
        self._migrate(self.connection())

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise RuntimeError(f"job store {self.path} is closed")
            # isolation_level=None: transactions are begun explicitly, never implicitly by the module
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA foreign_keys = ON")
                _enable_wal(conn)
                # In WAL mode NORMAL is still safe against a process crash (the case crash-resume is
                # for); only an OS crash or power loss can roll back the last commits. FULL would
                # fsync every commit, the largest cost per generation.
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding SQLite's write lock from its first statement.

        Taking the lock up front (rather than upgrading a read) is what makes read-check-insert
        sequences such as budget checks atomic across threads and processes.
        """
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # a failed COMMIT leaves the transaction open; roll it back so the connection stays usable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several queries see one consistent snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection; later use raises RuntimeError."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            with self.write():
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"job store {self.path} has schema version {version}, but this fluxroute only "
                        f"knows versions up to {SCHEMA_VERSION}; upgrade fluxroute or point it at "
                        "another home directory"
                    )
                for statements in MIGRATIONS[version:]:
                    for statement in statements:
                        conn.execute(statement)
                if version < SCHEMA_VERSION:
                    # PRAGMA does not take bound parameters; SCHEMA_VERSION is our own int
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.close()
            raise


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. While another process is creating the same new database, the switch can answer "database
    is locked" without waiting on busy_timeout (it needs the file to itself for a moment): try again, bounded."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
