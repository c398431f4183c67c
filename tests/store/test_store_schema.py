"""Tests that the job store creates, versions, reopens and refuses unknown schemas."""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import ConfigError
from fluxroute.store import JobStore
from fluxroute.store.database import SCHEMA_VERSION


def test_open_creates_the_home_directory_and_the_database_file(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    with JobStore.open(home) as store:
        assert store.path == home / "fluxroute.db"
        assert store.path.is_file()


def test_schema_is_created_with_the_current_version_in_wal_mode(tmp_path: Path) -> None:
    JobStore(tmp_path / "f.db").close()
    conn = sqlite3.connect(tmp_path / "f.db")
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"jobs", "attempts", "ledger"} <= tables
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_connections_enforce_foreign_keys_and_wait_for_locks(tmp_path: Path) -> None:
    with JobStore(tmp_path / "f.db") as store:
        conn = store._db.connection()
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO attempts (id, job_id, seq, offer_id, provider, model, status,"
                " estimated_cost_micros, started_at) VALUES ('a', 'no-such-job', 1, 'o', 'p', 'm',"
                " 'submitting', 0, '2024-01-01T00:00:00.000000+00:00')"
            )


def test_reopening_keeps_jobs_attempts_and_charges(tmp_path: Path) -> None:
    with JobStore.open(tmp_path) as store:
        job, _ = store.create_job({"prompt": "a fox"}, idempotency_key="k1")
        attempt = store.start_attempt(
            job.id, offer_id="fal:flux-dev", provider="fal", model="flux-dev", estimated_cost=Decimal("0.025")
        )
        store.charge(job.id, Decimal("0.025"), attempt_id=attempt.id)

    with JobStore.open(tmp_path) as reopened:
        assert reopened.get_job(job.id) == job
        assert reopened.find_job_by_key("k1") == job
        assert [a.id for a in reopened.attempts_for(job.id)] == [attempt.id]
        assert reopened.total_charged() == Decimal("0.025")


def test_a_database_from_a_newer_fluxroute_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "fluxroute.db"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(ConfigError, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade fluxroute"):
        JobStore(path)


def test_a_closed_store_refuses_further_use(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "f.db")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.list_jobs()


def test_close_closes_connections_opened_by_other_threads(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "f.db")
    worker = threading.Thread(target=store.list_jobs)
    worker.start()
    worker.join()
    assert len(store._db._connections) == 2

    store.close()

    assert store._db._connections == []
