"""The adoption sweep of `fluxroute serve --http`: every ADOPT_EVERY_S a replica takes up the jobs in flight whose
follower is gone (a crashed process on this host, or a replica elsewhere whose lease ran out), follows them to the
end and bills them once; a job a live replica follows is left alone."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.router import Router
from fluxroute.router.execute import DETACH
from fluxroute.server import backend as backend_module
from fluxroute.server.backend import Backend
from fluxroute.settings import Settings
from fluxroute.store import AttemptRecord, leases
from fluxroute.store.images import read_parameters
from fluxroute.store.leases import LEASE, Owner, attempt_free, this_process
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake
from tests.server.serving import serving

ELSEWHERE = Owner("replica-2.internal", 77, "feed")


def crashed_here() -> Owner:
    """A process on this host (this pid space) that has stopped: its lease is free at once."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return Owner(socket.gethostname(), child.pid, f"deadbeef0000.{leases._PID_SPACE}")


async def stage_in_flight(settings: Settings, krea_fake: KreaFake, holder: Owner, now: datetime) -> AttemptRecord:
    """A Krea job accepted and in flight, its lease held by `holder` (taken at `now`), nobody following it here."""
    router = Router(settings)
    call = asyncio.create_task(router.generate(ImageRequest.parse({"prompt": "a lighthouse", "model": "flux-dev"})))
    try:
        poller = router.provider("krea").poller  # type: ignore[attr-defined]
        while not krea_fake.jobs or krea_fake.jobs[-1].id not in poller._paces:  # it waits on the provider job
            await asyncio.sleep(0.02)
        call.cancel(DETACH)  # stop following; the job stays in flight (as a server shutting down does)
        await asyncio.gather(call, return_exceptions=True)
        [attempt] = router.store.in_flight_attempts()
        assert attempt.lease_owner is None
        claimed = router.store.claim_attempt(attempt.id, holder, now=now)
        assert claimed is not None
        return claimed
    finally:
        await router.aclose()


async def until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("gone", ["crashed on this host", "elsewhere, lease ran out"])
async def test_a_serving_replica_adopts_a_job_whose_follower_is_gone_and_completes_it(
    hosted_settings: Settings, krea_fake: KreaFake, monkeypatch: pytest.MonkeyPatch, gone: str
) -> None:
    monkeypatch.setattr(backend_module, "ADOPT_EVERY_S", 0.1)
    krea_fake.manual = True
    router = Router(hosted_settings)
    async with serving(hosted_settings, router=router):
        await until(lambda: not router.store.in_flight_attempts())  # started, nothing to adopt at start
        if gone == "crashed on this host":
            holder, taken = crashed_here(), datetime.now(UTC)
        else:
            holder, taken = ELSEWHERE, datetime.now(UTC) - LEASE - timedelta(seconds=1)
        attempt = await stage_in_flight(hosted_settings, krea_fake, holder, taken)
        assert attempt_free(attempt)
        store = router.store

        await until(lambda: store.attempts_for(attempt.job_id)[-1].lease_owner == str(this_process()))
        krea_fake.complete(krea_fake.jobs[0].id)
        await until(lambda: store.get_job(attempt.job_id).status == "succeeded")

    job = store.get_job(attempt.job_id)
    assert job.result is not None
    assert job.result["replica"] == str(this_process())  # the sweeping replica saved it
    [image] = job.result["images"]  # type: ignore[misc]
    assert read_parameters(Path(str(image["path"])))["replica"] == str(this_process())  # type: ignore[index]
    assert store.total_charged() == krea_fake.billed == Decimal("0.007")
    assert len(krea_fake.jobs) == 1  # followed, never submitted again
    await router.aclose()


async def test_the_sweep_leaves_a_job_a_live_replica_follows(hosted_settings: Settings, krea_fake: KreaFake) -> None:
    krea_fake.manual = True
    backend = Backend(hosted_settings, Router(hosted_settings))
    sweeping = asyncio.create_task(backend.replicate(every_s=0.05))
    try:
        router = await backend.router()
        assert await backend.adopt() == []  # nothing in flight: nothing to do
        attempt = await stage_in_flight(hosted_settings, krea_fake, ELSEWHERE, datetime.now(UTC))
        await asyncio.sleep(0.3)  # several sweeps
        assert await backend.adopt() == []
        [still] = router.store.in_flight_attempts()
        assert still.lease_owner == str(ELSEWHERE)
        assert router.store.get_job(attempt.job_id).status == "running"
        assert krea_fake.jobs[0].status not in ("cancelled", "completed")

        # the replica stops renewing: once its lease runs out, the next sweep takes the job up
        assert router.store.renew_lease(attempt.id, ELSEWHERE, now=datetime.now(UTC) - LEASE - timedelta(seconds=1))
        await until(lambda: router.store.in_flight_attempts()[0].lease_owner == str(this_process()))
        krea_fake.complete(krea_fake.jobs[0].id)
        await until(lambda: router.store.get_job(attempt.job_id).status == "succeeded")
        assert router.store.total_charged() == krea_fake.billed == Decimal("0.007")
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
        await backend.aclose()
