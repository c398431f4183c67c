"""PostgreSQL's own parts of the store: two replicas (two pools) on one database, migrations under the advisory lock,
a newer schema refused, the factory, and the database URL's password kept out of reprs and errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import ConfigError
from fluxroute.settings import Settings
from fluxroute.store import AttemptStart, JobStore, open_existing_store, open_store
from fluxroute.store.leases import LEASE, Owner
from fluxroute.store.records import utc_now
from fluxroute.store.schema import SCHEMA_VERSION

REPLICA_A = Owner("replica-a.internal", 11, "aaaa.0000")
REPLICA_B = Owner("replica-b.internal", 12, "bbbb.1111")
PASSWORD = "s3cret-Pa55word"


def with_password(url: str) -> str:
    """The test database's URL carrying PASSWORD (the test server trusts every login, so any password connects)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(url)
    return f"postgresql://{parts['user']}:{PASSWORD}@{parts['host']}:{parts['port']}/{parts['dbname']}"


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[JobStore, JobStore]]:
    """Two stores with a pool each on one database, as two replicas have."""
    a, b = JobStore.connect(postgres_url), JobStore.connect(postgres_url)
    yield a, b
    a.close()
    b.close()


def test_two_replicas_see_each_others_jobs_keys_and_money(replicas: tuple[JobStore, JobStore]) -> None:
    a, b = replicas
    job, created = a.create_job({"prompt": "a lighthouse"}, idempotency_key="k1")
    assert created
    assert b.get_job(job.id) == job
    assert b.find_job_by_key("k1") == job
    assert b.create_job({"prompt": "a lighthouse"}, idempotency_key="k1") == (job, False)
    reservation = b.reserve(job.id, Decimal("0.70"), per_call_cap=None, daily_cap=Decimal("1.00"))
    with pytest.raises(Exception, match="daily cap"):
        a.reserve(job.id, Decimal("0.31"), per_call_cap=None, daily_cap=Decimal("1.00"))
    a.settle(reservation, Decimal("0.50"))
    assert b.total_charged() == Decimal("0.5")


def test_one_key_from_two_replicas_at_once_makes_one_job(replicas: tuple[JobStore, JobStore]) -> None:
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []

    def create(store: JobStore) -> None:
        barrier.wait()
        job, created = store.create_job({"prompt": "one job"}, idempotency_key="shared")
        results.append((job.id, created))

    threads = [threading.Thread(target=create, args=(replicas[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(replicas[1].list_jobs()) == 1


def test_a_replica_adopts_another_ones_attempt_only_after_its_lease_expires(
    replicas: tuple[JobStore, JobStore],
) -> None:
    a, b = replicas
    start = a.start_call(
        {"prompt": "a kite"},
        None,
        AttemptStart("fal:flux-dev", "fal", "flux-dev", Decimal("0.025")),
        per_call_cap=None,
        daily_cap=None,
        owner=REPLICA_A,
    )
    assert start.attempt is not None
    attempt = start.attempt
    now = utc_now()
    assert b.claim_attempt(attempt.id, REPLICA_B, now) is None  # A's lease is live: never two at once
    assert a.renew_lease(attempt.id, REPLICA_A, now)
    later = now + LEASE + timedelta(seconds=1)  # A died: nobody renewed
    taken = b.claim_attempt(attempt.id, REPLICA_B, later)
    assert taken is not None and taken.lease_owner == str(REPLICA_B)
    assert not a.renew_lease(attempt.id, REPLICA_A, later)
    assert a.claim_attempt(attempt.id, REPLICA_A, later) is None


def test_two_replicas_claiming_an_expired_lease_at_once_get_it_once(replicas: tuple[JobStore, JobStore]) -> None:
    a, b = replicas
    job = a.create_job({"prompt": "a fox"})[0]
    attempt = a.start_attempt(
        job.id, offer_id="fal:flux-dev", provider="fal", model="flux-dev", estimated_cost=Decimal("0.025")
    )
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def claim(store: JobStore, n: int) -> None:
        owner = Owner(f"replica-{n}", 100 + n, f"t{n}.0")
        barrier.wait()
        if store.claim_attempt(attempt.id, owner) is not None:
            wins.append(str(owner))

    threads = [threading.Thread(target=claim, args=(replicas[n % 2], n)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert b.attempts_for(job.id)[0].lease_owner == wins[0]


def test_replicas_starting_at_once_migrate_once(postgres_url: str) -> None:
    barrier = threading.Barrier(6)
    opened: list[JobStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(JobStore.connect(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [tuple(row) for row in opened[0]._db.connection().execute("SELECT version FROM fluxroute_schema")] == [
        (SCHEMA_VERSION,)
    ]
    for store in opened:
        store.close()


def test_a_database_from_a_newer_fluxroute_is_refused_without_the_password(postgres_url: str) -> None:
    url = with_password(postgres_url)
    with JobStore.connect(url) as store:
        store._db.connection().execute("UPDATE fluxroute_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade fluxroute") as refused:
        JobStore.connect(url)
    assert PASSWORD not in str(refused.value)


def test_reopening_keeps_everything_and_a_closed_store_refuses_use(postgres_url: str) -> None:
    with JobStore.connect(postgres_url) as store:
        job = store.create_job({"prompt": "a fox"}, idempotency_key="k")[0]
        store.charge(job.id, Decimal("0.025"))
    with JobStore.connect(postgres_url) as reopened:
        assert reopened.find_job_by_key("k") == job
        assert reopened.total_charged() == Decimal("0.025")
    with pytest.raises(RuntimeError, match="closed"):
        reopened.list_jobs()


def test_jobs_made_in_one_microsecond_list_newest_first(postgres_url: str) -> None:
    with JobStore.connect(postgres_url) as store:
        made = [store.create_job({"prompt": str(n)})[0].id for n in range(20)]
        assert [job.id for job in store.list_jobs(limit=20)] == made[::-1]


def test_the_password_never_shows_in_reprs_or_connection_errors(postgres_url: str) -> None:
    url = with_password(postgres_url)
    settings = Settings.load(environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_DATABASE_URL": url})
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    with JobStore.connect(settings.database_url or "") as store:
        assert PASSWORD not in repr(store._db)
        assert PASSWORD not in repr(store._db.url)
    nowhere = url.replace(f":{url.rsplit(':', 1)[1].split('/')[0]}/", ":1/")  # port 1: nothing listens
    with pytest.raises(ConfigError, match="cannot open the job store") as refused:
        JobStore.connect(nowhere)
    assert PASSWORD not in str(refused.value)


def test_open_store_picks_postgres_when_a_database_url_is_set(postgres_url: str, tmp_path: Path) -> None:
    url = with_password(postgres_url)
    on_postgres = Settings.load(environ={"FLUXROUTE_CONFIG": "none", "FLUXROUTE_DATABASE_URL": url}, home=tmp_path)
    assert open_existing_store(on_postgres) is None  # nothing created yet, and reading creates nothing
    store = open_store(on_postgres)
    assert isinstance(store, JobStore) and store.path is None
    job = store.create_job({"prompt": "shared"})[0]
    store.close()
    existing = open_existing_store(on_postgres)
    assert existing is not None and existing.get_job(job.id) == job
    existing.close()
    assert not (tmp_path / "fluxroute.db").exists()

    on_sqlite = Settings.load(environ={"FLUXROUTE_CONFIG": "none"}, home=tmp_path)
    assert open_existing_store(on_sqlite) is None
    with open_store(on_sqlite) as local:  # type: ignore[attr-defined]
        assert local.path == tmp_path / "fluxroute.db"
