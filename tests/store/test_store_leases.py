"""Leases on open attempts: one owner follows an attempt at a time; another takes it up only once the lease is
let go, has run out, or belongs to a stopped process on this host. Any backend (see conftest.BACKENDS), plus
SQLite's migration of attempts recorded before leases existed."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fluxroute.store import AttemptRecord, AttemptStart, JobStore, Store
from fluxroute.store.database import MIGRATIONS
from fluxroute.store.leases import LEASE, Owner, attempt_free, this_process

SPEC = AttemptStart("fal-flux-dev", "fal", "flux-dev", Decimal("0.025"), {"candidate": {}})
SERVER = Owner("replica-1.internal", 7, "aaaa")
RESUMER = Owner("laptop", 8, "bbbb")


def open_attempt(store: Store, owner: Owner = SERVER, provider_job_id: str = "req-1") -> AttemptRecord:
    started = store.start_call({"prompt": "a fox"}, None, SPEC, per_call_cap=None, daily_cap=None, owner=owner)
    assert started.attempt is not None
    return store.mark_submitted(started.attempt.id, provider_job_id)


def test_a_live_lease_on_another_host_keeps_every_other_process_out(store: Store) -> None:
    attempt = open_attempt(store)

    assert store.claim_attempt(attempt.id, RESUMER) is None
    assert store.claim_attempt(attempt.id, this_process()) is None
    assert not attempt_free(store.attempts_for(attempt.job_id)[0])
    assert store.attempts_for(attempt.job_id)[0].lease_owner == str(SERVER)


def test_the_owner_renews_its_lease_and_a_lapsed_one_is_taken_over(store: Store) -> None:
    attempt = open_attempt(store)
    later = datetime.now(UTC) + LEASE * 0.9

    assert store.renew_lease(attempt.id, SERVER, now=later)
    assert store.claim_attempt(attempt.id, RESUMER, now=later + LEASE * 0.5) is None  # renewed: still held
    taken = store.claim_attempt(attempt.id, RESUMER, now=later + LEASE * 1.01)
    assert taken is not None and taken.lease_owner == str(RESUMER)
    assert taken.status == "in_flight" and taken.provider_job_id == "req-1"
    # the former owner learns it lost the lease when it next renews
    assert not store.renew_lease(attempt.id, SERVER)
    assert store.renew_lease(attempt.id, RESUMER)


def test_only_the_owner_lets_go_and_then_anyone_may_take_it(store: Store) -> None:
    attempt = open_attempt(store)

    store.let_go(attempt.id, RESUMER, error="not mine")
    assert store.attempts_for(attempt.job_id)[0].lease_owner == str(SERVER)
    assert store.attempts_for(attempt.job_id)[0].error is None

    store.let_go(attempt.id, SERVER, error="at risk: status checks failed")
    let_go = store.attempts_for(attempt.job_id)[0]
    assert (let_go.lease_owner, let_go.lease_until, let_go.error) == (None, None, "at risk: status checks failed")
    assert attempt_free(let_go)
    assert store.claim_attempt(attempt.id, RESUMER) is not None


def test_two_processes_claiming_a_free_attempt_get_it_once(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    attempt = open_attempt(first)
    first.let_go(attempt.id, SERVER)

    outcomes = [first.claim_attempt(attempt.id, RESUMER), second.claim_attempt(attempt.id, Owner("ci", 9, "cccc"))]

    assert [outcome is not None for outcome in outcomes] == [True, False]


def test_finished_attempts_cannot_be_claimed_or_renewed(store: Store) -> None:
    attempt = open_attempt(store)
    reservation = store.reservation(attempt.reservation_id or 0)
    store.finish_call(attempt.id, reservation, status="succeeded", cost=Decimal("0.025"))

    assert store.claim_attempt(attempt.id, RESUMER, now=datetime.now(UTC) + 2 * LEASE) is None
    assert not store.renew_lease(attempt.id, SERVER)


def test_a_stopped_process_on_this_host_frees_its_lease_at_once(store: Store) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Owner(socket.gethostname(), int(gone.stdout), "dddd")
    live = Owner(socket.gethostname(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]).pid, "e")
    try:
        attempt = open_attempt(store, dead)
        other = open_attempt(store, live, "req-2")

        assert attempt_free(store.attempts_for(attempt.job_id)[0])  # long before the lease runs out
        assert store.claim_attempt(attempt.id, RESUMER) is not None
        assert not attempt_free(store.attempts_for(other.job_id)[0])
        assert store.claim_attempt(other.id, RESUMER) is None
    finally:
        subprocess.run(["kill", str(live.pid)], check=False)


def test_attempts_recorded_before_leases_keep_their_owner_for_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "fluxroute.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:4]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    conn.execute(
        "INSERT INTO jobs (id, request_hash, request_json, status, created_at, updated_at)"
        " VALUES ('j1', 'h', '{}', 'running', ?, ?)",
        (stamp, stamp),
    )
    owned = {"owner": {"host": "old-host", "pid": 4321}, "candidate": {}}
    for attempt_id, seq, status, detail in [
        ("a1", 1, "in_flight", owned),
        ("a2", 2, "in_flight", {"owner": None}),
        ("a3", 3, "succeeded", owned),
    ]:
        conn.execute(
            "INSERT INTO attempts (id, job_id, seq, offer_id, provider, model, status, estimated_cost_micros,"
            " detail_json, started_at) VALUES (?, 'j1', ?, 'o', 'krea', 'm', ?, 1, ?, ?)",
            (attempt_id, seq, status, json.dumps(detail), stamp),
        )
    conn.close()

    with JobStore(path) as store:
        held, let_go, finished = store.attempts_for("j1")
        assert held.lease_owner == "old-host/4321/earlier"
        assert held.lease_until is not None
        assert timedelta(seconds=50) < held.lease_until - datetime.now(UTC) <= timedelta(seconds=60)
        assert not attempt_free(held)
        assert attempt_free(held, now=datetime.now(UTC) + timedelta(seconds=61))
        assert (let_go.lease_owner, finished.lease_owner) == (None, None)
        assert attempt_free(let_go)


def test_owners_name_their_pid_space_and_a_stopped_pid_of_another_one_waits_for_the_expiry(store: Store) -> None:
    me = this_process()
    token, _, space = me.token.rpartition(".")
    assert len(token) == 12 and space  # host, pid, and a run token naming this boot and pid namespace
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # a process of this host name whose pid is gone here, but in another pid space (another container with the
    # same host name, another machine with the same name): its pid tells nothing here, so only expiry frees it
    elsewhere = Owner(socket.gethostname(), int(gone.stdout), f"{token}.{'0' * len(space)}")
    same_space = Owner(socket.gethostname(), int(gone.stdout), f"ffff.{space}")
    attempt = open_attempt(store, elsewhere)
    assert not attempt_free(store.attempts_for(attempt.job_id)[0])
    assert store.claim_attempt(attempt.id, RESUMER) is None
    later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    assert store.claim_attempt(attempt.id, RESUMER, later) is not None
    stopped = open_attempt(store, same_space, "req-2")
    assert store.claim_attempt(stopped.id, RESUMER) is not None  # same pid space, pid gone: free at once
