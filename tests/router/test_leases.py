"""Leases at the router: a job followed by a live process elsewhere (another replica on a shared store) is never
taken up until its lease runs out; a process that loses its lease stops following without touching the provider
job; a call writes to the store three times (start, submitted, finish) plus what it learned about latency."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import JobBusy
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store import JobStore, leases
from fluxroute.store.leases import LEASE, Owner
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake
from tests.router.test_crash_resume import fluxroute, krea_env, wait_until

REPLICA = Owner("replica-2.internal", 77, "feed")


def test_a_job_leased_by_a_replica_elsewhere_is_resumed_only_after_its_lease_runs_out(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    home = tmp_path / "shared-home"
    env = krea_env(krea_fake, home)
    krea_fake.manual = True
    first = fluxroute(env, "generate", "a lighthouse at dusk", "--model", "flux-dev", "--json")
    store_file = home / "fluxroute.db"
    wait_until(lambda: store_file.exists() and bool(JobStore(store_file).in_flight_attempts()))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    store = JobStore(store_file)
    [attempt] = store.in_flight_attempts()
    # a replica on another machine took the job up and follows it: its lease is live
    assert store.claim_attempt(attempt.id, REPLICA) is not None
    krea_fake.complete(krea_fake.jobs[0].id)

    beside = fluxroute(env, "jobs", "resume")
    out, err = beside.communicate(timeout=30)
    assert beside.returncode == 0, err
    assert "nothing in flight" in out
    assert store.get_job(attempt.job_id).status == "running" and store.total_charged() == 0

    # the replica stopped renewing a minute ago: its lease has run out
    assert store.renew_lease(attempt.id, REPLICA, now=datetime.now(UTC) - LEASE - timedelta(seconds=1))
    resumed = fluxroute(env, "jobs", "resume")
    out, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 0, err
    job = store.get_job(attempt.job_id)
    assert job.status == "succeeded"
    assert store.total_charged() == krea_fake.billed == Decimal("0.007")
    assert len(krea_fake.jobs) == 1


async def test_a_process_that_loses_its_lease_stops_following_and_leaves_the_job_to_the_new_owner(
    hosted_settings: Settings, krea_fake: KreaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "RENEW_EVERY_S", 0.05)
    krea_fake.manual = True
    router = Router(hosted_settings)
    call = asyncio.create_task(router.generate(ImageRequest.parse({"prompt": "a fox", "model": "flux-dev"})))
    try:
        while not router.store.in_flight_attempts():
            await asyncio.sleep(0.02)
        [attempt] = router.store.in_flight_attempts()
        # this process stalled past its lease (simulated: the lease is taken as if it had run out)
        later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
        assert router.store.claim_attempt(attempt.id, REPLICA, now=later) is not None

        with pytest.raises(JobBusy, match=r"replica-2\.internal.*lease"):
            await asyncio.wait_for(call, 10)

        [still] = router.store.in_flight_attempts()
        assert still.lease_owner == str(REPLICA)
        assert krea_fake.jobs[0].status not in ("cancelled", "completed")  # never cancelled at the provider
        reservation = router.store.reservation(still.reservation_id or 0)
        assert router.store.is_open(reservation)  # its cost stays counted until the new owner settles it
        assert router.store.total_charged() == krea_fake.billed == 0
    finally:
        call.cancel()
        await router.aclose()


@contextmanager
def counting_writes(store: JobStore) -> Iterator[list[str]]:
    """Counts the store's write transactions (each one BEGIN IMMEDIATE ... COMMIT)."""
    database = store._db
    original = database.write
    writes: list[str] = []

    def write():  # type: ignore[no-untyped-def]
        writes.append("write")
        return original()

    database.write = write  # type: ignore[method-assign]
    try:
        yield writes
    finally:
        database.write = original  # type: ignore[method-assign]


async def test_a_successful_call_writes_three_times_plus_its_latency(
    hosted_settings: Settings, krea_fake: KreaFake
) -> None:
    router = Router(hosted_settings)
    store = router.store
    assert isinstance(store, JobStore)
    try:
        with counting_writes(store) as writes:
            result = await router.generate(ImageRequest.parse({"prompt": "a heron", "model": "flux-dev"}))
        assert result.provider == "krea"
        assert len(writes) == 4  # start_call, mark_submitted, finish_call, observe_latency
        [attempt] = store.attempts_for(result.job_id)
        assert (attempt.status, attempt.lease_owner) == ("succeeded", None)
        assert store.total_charged() == krea_fake.billed == Decimal("0.007")
    finally:
        await router.aclose()
