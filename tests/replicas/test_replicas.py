"""Three `fluxroute serve --http` processes on one store behave as one service (issue 18): a daily cap holds across
them under faults, an idempotency key makes one job whichever replica it reaches, any replica follows a job another
started, a webhook to any replica wakes the one that follows the job (PostgreSQL: the wake bus), and a replica
killed mid-job loses nothing.

Each test runs on `sqlite` (the replicas share one FLUXROUTE_HOME, so one SQLite file: one machine) and on
`postgres` (a fresh database per test from tests/postgres.py; skipped with its reason where no server can be
started). Clients are the MCP SDK's Streamable HTTP client, one session per replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import types

from tests.fakes.fal import FalFake
from tests.fakes.faults import Fault
from tests.fakes.krea import KreaFake
from tests.replicas.harness import Fakes, Replicas, mcp_client

try:
    from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
except ImportError as exc:  # the PostgreSQL fixtures are not there (yet)
    NO_POSTGRES: str | None = f"tests/postgres.py is missing or broken: {exc}"
else:
    NO_POSTGRES = None

BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.skipif(NO_POSTGRES is not None, reason=str(NO_POSTGRES))),
]
# a webhook's wake is "fast" when the follower checks the job within this of the provider finishing it
FAST_WAKE_S = 0.5


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None: SQLite (shared home); else the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


StartReplicas = Callable[..., Replicas]


@pytest.fixture
def start_replicas(
    tmp_path: Path, krea_fake: KreaFake, fal_fake: FalFake, database_url: str | None
) -> Iterator[StartReplicas]:
    """Start replicas on this test's store (stopped after the test; their logs printed if it failed)."""
    krea_fake.image_scale = fal_fake.image_scale = 1 / 32
    started: list[Replicas] = []

    def start(count: int = 3, **options: Any) -> Replicas:
        replicas = Replicas(tmp_path / "replicas", Fakes.of(krea_fake, fal_fake), count, database_url, **options)
        started.append(replicas.start())
        return replicas

    try:
        yield start
    finally:
        for replicas in started:
            replicas.stop()
            print(replicas.logs())  # shown by pytest only for a failed test


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def output(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:g} s")
        await asyncio.sleep(0.01)


async def until_async(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:g} s")
        await asyncio.sleep(0.01)


def fired(*fakes: KreaFake | FalFake) -> dict[str, int]:
    return {f"{fake.name} {key}": count for fake in fakes for key, count in sorted(fake.faults.fired.items())}


def get_job_polls(fake: KreaFake, job_id: str) -> list[float]:
    """When the Krea fake was asked for job `job_id`'s status (monotonic seconds, this process's clock)."""
    with fake.lock:
        return [r.at for r in fake.request_log if r.route == "get_job" and r.path.rstrip("/").endswith(job_id)]


# --- the cap, across replicas, under faults ------------------------------------------------------------------


def arm_faults(krea: KreaFake, fal: FalFake) -> list[Fault]:
    """Faults after the providers accepted the jobs (each job keeps its id, so each bill is one fluxroute can
    account): failed and garbled status checks, failed result fetches and downloads."""
    return [
        krea.faults.http_error(502, {"error": "bad gateway"}, route="get_job", times=3),
        krea.faults.garble(route="get_job", times=2),
        krea.faults.drop(route="get_job", times=2),
        krea.faults.http_error(500, route="download", times=2),
        krea.faults.garble(route="download", body=b"\x89PNG\r\n\x1a\n-truncated"),
        fal.faults.http_error(500, {"detail": "internal"}, route="status", times=3),
        fal.faults.garble(route="status", times=2),
        fal.faults.http_error(500, {"detail": "internal"}, route="result", times=2),
        fal.faults.http_error(503, route="download", times=2),
    ]


@pytest.mark.parametrize("calls", [64])
async def test_sixty_four_calls_over_three_replicas_never_bill_past_the_daily_cap_and_the_cap_binds(
    start_replicas: StartReplicas, krea_fake: KreaFake, fal_fake: FalFake, calls: int
) -> None:
    # flux-dev at 1 MP: Krea $0.007 a job, fal $0.025 (x 1.05 MP): all 64 would cost about $1.02
    cap = Decimal("0.50")
    replicas = start_replicas(settings={"budget_daily_usd": cap})
    armed = arm_faults(krea_fake, fal_fake)

    async def one(client: Any, i: int) -> types.CallToolResult:
        arguments = {
            "prompt": f"a lighthouse at dusk, frame {i}",
            "model": "flux-dev",
            "provider": "krea" if i % 2 else "fal",
            "seed": i,
            "wait_s": 45,
        }
        return await client.call_tool("generate_image", arguments)

    started = time.monotonic()
    async with mcp_client(replicas[0]) as a, mcp_client(replicas[1]) as b, mcp_client(replicas[2]) as c:
        clients = [a, b, c]
        results = await asyncio.gather(*(one(clients[i % 3], i) for i in range(calls)))
    elapsed = time.monotonic() - started

    succeeded = [output(r) for r in results if not r.is_error]
    refused = [text_of(r) for r in results if r.is_error]
    assert all(o["status"] == "succeeded" for o in succeeded), [o for o in succeeded if o["status"] != "succeeded"]
    assert refused and all("daily cap" in text for text in refused), refused  # clean tool errors, the cap's own
    await until(lambda: all(job.terminal for job in krea_fake.jobs + fal_fake.jobs), what="fake jobs end")
    billed = krea_fake.billed + fal_fake.billed
    prices = [job.price for job in krea_fake.jobs + fal_fake.jobs]
    largest = max(prices)
    store = replicas.open_store()
    try:
        charged = store.total_charged()
        at_risk = store.at_risk()
        summary = store.spend_summary(daily_cap=cap)
    finally:
        store.close()
    hits = fired(krea_fake, fal_fake)
    print(
        f"\n{replicas.backend}: {calls} calls over {len(replicas)} replicas in {elapsed:.1f} s: {len(succeeded)} "
        f"succeeded, {len(refused)} refused at the cap ${cap}; billed ${billed} (Krea ${krea_fake.billed}, "
        f"fal ${fal_fake.billed}), ledger ${charged}, largest price ${largest}; faults fired: {hits}"
    )
    assert sum(f.hits for f in armed) > 0 and hits
    assert billed <= cap  # what the fakes billed never passes the cap
    assert billed > cap - largest  # the cap binds: refusals came only once it was (nearly) spent
    assert charged == billed == summary.spent_today  # ledger = billed
    assert at_risk == [] and summary.reserved_today == 0
    assert len(krea_fake.jobs) + len(fal_fake.jobs) == len(succeeded)  # one provider job per generation
    assert len({o["job_id"] for o in succeeded}) == len(succeeded)


# --- one job per idempotency key ------------------------------------------------------------------------------


async def test_one_idempotency_key_sent_to_three_replicas_at_once_makes_one_job_billed_once(
    start_replicas: StartReplicas, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    replicas = start_replicas()
    async with mcp_client(replicas[0]) as a, mcp_client(replicas[1]) as b, mcp_client(replicas[2]) as c:
        for provider in ("krea", "fal"):
            arguments = {
                "prompt": f"a red fox in snow ({provider})",
                "model": "flux-dev",
                "provider": provider,
                "idempotency_key": f"fox-{provider}",
                "wait_s": 30,
            }
            results = await asyncio.gather(*(client.call_tool("generate_image", arguments) for client in (a, b, c)))
            outputs = [output(r) for r in results]
            assert {o["job_id"] for o in outputs} != set() and len({o["job_id"] for o in outputs}) == 1, outputs
            assert all(o["status"] == "succeeded" for o in outputs), outputs
    await until(lambda: all(job.terminal for job in krea_fake.jobs + fal_fake.jobs), what="fake jobs end")
    assert len(krea_fake.jobs) == 1 and len(fal_fake.jobs) == 1  # one provider job per key
    store = replicas.open_store()
    try:
        assert (
            store.total_charged()
            == krea_fake.billed + fal_fake.billed
            == sum(j.price for j in krea_fake.jobs + fal_fake.jobs)
        )
        assert len(store.list_jobs()) == 2
    finally:
        store.close()


# --- any replica follows a job another started -----------------------------------------------------------------


async def test_get_image_job_on_replica_b_follows_a_job_started_on_replica_a(
    start_replicas: StartReplicas, krea_fake: KreaFake
) -> None:
    replicas = start_replicas(count=2)
    krea_fake.manual = True  # the job waits in Krea's queue until the test finishes it
    async with mcp_client(replicas[0]) as a, mcp_client(replicas[1]) as b:
        arguments = {"prompt": "a heron at dawn", "model": "flux-dev", "provider": "krea", "wait_s": 0.5}
        started = output(await a.call_tool("generate_image", arguments))
        assert started["status"] == "running"
        job_id = started["job_id"]
        [fake_job] = krea_fake.jobs

        seen = output(await b.call_tool("get_image_job", {"job_id": job_id, "wait_s": 0.5}))
        assert seen["status"] == "running" and seen["job_id"] == job_id
        store = replicas.open_store()
        try:
            [attempt] = store.attempts_for(job_id)
            assert attempt.lease_owner is not None and f"/{replicas[0].pid}/" in attempt.lease_owner  # A follows
        finally:
            store.close()

        krea_fake.complete(fake_job.id)
        done = output(await b.call_tool("get_image_job", {"job_id": job_id, "wait_s": 20}))
    assert done["status"] == "succeeded" and done["provider"] == "krea" and done["images"]
    assert krea_fake.billed == fake_job.price and len(krea_fake.jobs) == 1
    store = replicas.open_store()
    try:
        assert store.total_charged() == krea_fake.billed
    finally:
        store.close()


# --- a webhook to C wakes A --------------------------------------------------------------------------------------


async def wait_for_a_long_poll_gap(fake: KreaFake, job_id: str, gap_s: float, timeout: float = 15.0) -> float:
    """Wait until the follower's polling of `job_id` has backed off to gaps of at least `gap_s` and it has just
    checked; return the last gap."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        polls = get_job_polls(fake, job_id)
        if len(polls) >= 2 and polls[-1] - polls[-2] >= gap_s and time.monotonic() - polls[-1] < 0.05:
            return polls[-1] - polls[-2]
        await asyncio.sleep(0.005)
    raise TimeoutError(f"the polling of {job_id} never backed off to {gap_s} s: {get_job_polls(fake, job_id)}")


async def test_a_webhook_to_replica_c_wakes_the_job_replica_a_follows_and_its_rate_limit_holds_across_replicas(
    start_replicas: StartReplicas, krea_fake: KreaFake, database_url: str | None
) -> None:
    replicas = start_replicas(webhook_replica=2)  # every replica tells Krea to deliver webhooks to C
    a_, b_, c_ = replicas
    krea_fake.manual = True
    async with mcp_client(a_) as a:
        jobs = []
        for name in ("rate-limited", "woken"):
            arguments = {"prompt": f"a kingfisher ({name})", "model": "flux-dev", "provider": "krea", "wait_s": 0.2}
            started = output(await a.call_tool("generate_image", arguments))
            assert started["status"] == "running"
            jobs.append(started["job_id"])
        fake_ids = [job.id for job in krea_fake.jobs]
        assert len(fake_ids) == 2
        for fake_id in fake_ids:
            assert krea_fake.job(fake_id).meta["webhook_url"] == f"{c_.base_url}/webhooks/krea"

        async with httpx.AsyncClient(timeout=10) as http:
            # 1. the rate limit: deliveries for one job to C, then to B, within the window: one check at most
            limited = fake_ids[0]
            gap = await wait_for_a_long_poll_gap(krea_fake, limited, 0.5)
            before = len(get_job_polls(krea_fake, limited))
            sent = time.monotonic()
            body = json.dumps({"job_id": limited, "status": "processing"})
            first = await http.post(f"{c_.base_url}/webhooks/krea", content=body)
            second = await http.post(f"{b_.base_url}/webhooks/krea", content=body)
            third = await http.post(f"{c_.base_url}/webhooks/krea", content=body)
            await asyncio.sleep(0.3)
            polls = get_job_polls(krea_fake, limited)
            extra = [t - sent for t in polls[before:] if t >= sent]
            print(
                f"\n{replicas.backend}: rate limit: answers {first.json()}, {second.json()}, {third.json()}; "
                f"A's checks within 0.3 s of the deliveries: {[round(t, 3) for t in extra]} (poll gap {gap:.2f} s)"
            )
            assert first.status_code == second.status_code == third.status_code == 200
            for answer in (second.json(), third.json()):  # within the window: no check, nothing relayed
                assert answer["ok"] is True and not answer["checking"] and not answer.get("relayed"), answer
            assert len(extra) <= 1  # at most the one check the first delivery started

            # 2. the wake: the fake finishes the other job and delivers its webhook to C
            woken = fake_ids[1]
            gap = await wait_for_a_long_poll_gap(krea_fake, woken, 0.8)
            completed = time.monotonic()
            krea_fake.complete(woken)
            store = replicas.open_store()
            try:
                await until(lambda: store.get_job(jobs[1]).status == "succeeded", timeout=20, what="job succeeds")
            finally:
                store.close()
            delay = time.monotonic() - completed
            attempts = [(w.url, w.status_code) for w in krea_fake.webhook_attempts if w.job_id == woken]
            polls = get_job_polls(krea_fake, woken)
            after = [round(t - completed, 3) for t in polls if t >= completed]
            print(
                f"{replicas.backend}: wake: job done {delay * 1000:.0f} ms after the fake finished it; A's last poll "
                f"gap before {gap:.2f} s (its next poll no sooner); webhook deliveries {attempts}; A's checks after "
                f"the finish at {after} s"
            )
            assert attempts and attempts[0][0] == f"{c_.base_url}/webhooks/krea"
            if replicas.backend == "postgres":
                assert delay < min(FAST_WAKE_S, gap), (
                    f"a webhook to C did not wake A ({delay:.2f} s, poll gap {gap:.2f} s): is the cross-replica wake "
                    "bus (PostgreSQL LISTEN/NOTIFY) there?"
                )
                # the rate-limited job's first delivery woke A at once too (one check, soon after)
                # (C follows no wait of it: it relays the wake on the bus)
                assert len(extra) == 1 and first.json()["ok"] is True and first.json().get("relayed") is True
            # on SQLite there is no bus: C's webhook wakes nobody there, and A finds the job by polling

        krea_fake.complete(limited)
        done = output(await a.call_tool("get_image_job", {"job_id": jobs[0], "wait_s": 20}))
        assert done["status"] == "succeeded"
    store = replicas.open_store()
    try:
        assert store.total_charged() == krea_fake.billed == sum(job.price for job in krea_fake.jobs)
    finally:
        store.close()


# --- a replica killed mid-job --------------------------------------------------------------------------------------


async def test_a_replica_killed_mid_job_loses_no_job_another_adopts_it_and_bills_it_once(
    start_replicas: StartReplicas, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    replicas = start_replicas()
    krea_fake.manual = fal_fake.manual = True  # both jobs held at the providers while A dies
    job_ids = {}
    async with mcp_client(replicas[0]) as a:
        for provider in ("krea", "fal"):
            arguments = {"prompt": f"an owl ({provider})", "model": "flux-dev", "provider": provider, "wait_s": 0.3}
            started = output(await a.call_tool("generate_image", arguments))
            assert started["status"] == "running"
            job_ids[provider] = started["job_id"]
        store = replicas.open_store()
        try:
            await until_async(
                lambda: asyncio.to_thread(
                    lambda: all(x.status == "in_flight" for j in job_ids.values() for x in store.attempts_for(j))
                ),
                what="both accepted",
            )
        finally:
            store.close()

    killed = replicas.kill(0)
    assert not killed.alive
    async with mcp_client(replicas[1]) as b, mcp_client(replicas[2]) as c:
        # B is asked about the jobs: it finds A's leases held by a stopped process and adopts them
        for job_id in job_ids.values():
            seen = output(await b.call_tool("get_image_job", {"job_id": job_id, "wait_s": 0.5}))
            assert seen["status"] == "running"
        store = replicas.open_store()
        try:
            owners = [x.lease_owner for j in job_ids.values() for x in store.attempts_for(j)]
        finally:
            store.close()
        assert all(owner is not None and f"/{replicas[1].pid}/" in owner for owner in owners), owners
        [krea_job] = krea_fake.jobs
        [fal_job] = fal_fake.jobs
        krea_fake.complete(krea_job.id)
        fal_fake.complete(fal_job.id)
        for job_id in job_ids.values():  # C asks: B finishes them
            done = output(await c.call_tool("get_image_job", {"job_id": job_id, "wait_s": 20}))
            assert done["status"] == "succeeded" and done["images"]
    billed = krea_fake.billed + fal_fake.billed
    assert billed == krea_job.price + fal_job.price  # billed once each
    store = replicas.open_store()
    try:
        assert store.total_charged() == billed and store.at_risk() == []
    finally:
        store.close()
