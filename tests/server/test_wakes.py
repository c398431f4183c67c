"""The wake bus: a webhook one replica receives wakes the replica that follows the job. On PostgreSQL, NOTIFY from
one bus reaches every other bus's listener (two buses = two replicas), a listener whose connection drops comes
back on its own, and a whole webhook round trip between two servers on one database checks the job at once. On
SQLite publishing does nothing (the follower's poll schedule finds the job)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from fluxroute.providers.polling import PollSchedule, WindowSchedule
from fluxroute.router import Router
from fluxroute.server.wakes import LocalWakeBus, PostgresWakeBus, wake_bus
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from fluxroute.types import ImageRequest
from tests.fakes.krea import KreaFake
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tests.server.serving import serving


class Waiter:
    """A Notifiable with one waiter: the job `following` (from any thread, as the bus delivers)."""

    def __init__(self, following: str) -> None:
        self.following = following
        self.woken: list[str] = []
        self.event = threading.Event()

    def notify(self, job_id: str) -> bool:
        if job_id != self.following:
            return False
        self.woken.append(job_id)
        self.event.set()
        return True


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def buses(postgres_url: str) -> Iterator[list[PostgresWakeBus]]:  # noqa: F811
    """Buses on one database, stopped after the test."""
    made: list[PostgresWakeBus] = []
    yield made
    for bus in made:
        bus.stop()


def deliver_to(waiter: Waiter, seen: list[tuple[str, str]]) -> Callable[[str, str], object]:
    def deliver(provider: str, job_id: str) -> object:
        seen.append((provider, job_id))
        return waiter.notify(job_id) if provider == "krea" else False

    return deliver


def test_a_wake_published_by_one_replica_wakes_the_waiter_of_another(
    postgres_url: str,  # noqa: F811
    buses: list[PostgresWakeBus],
) -> None:
    following, elsewhere = Waiter("job-1"), Waiter("job-2")
    seen_a: list[tuple[str, str]] = []
    seen_b: list[tuple[str, str]] = []
    replica_a, replica_b, receiver = (PostgresWakeBus(postgres_url) for _ in range(3))
    buses += [replica_a, replica_b, receiver]
    replica_a.start(deliver_to(following, seen_a))
    replica_b.start(deliver_to(elsewhere, seen_b))
    assert replica_a.listening.wait(10) and replica_b.listening.wait(10)

    assert receiver.publish("krea", "job-1")  # the replica that got the webhook follows neither job

    assert following.event.wait(10)
    assert following.woken == ["job-1"]
    wait_for(lambda: seen_b == [("krea", "job-1")])  # the other replica heard it too, and had no waiter for it
    assert elsewhere.woken == []
    assert seen_a == [("krea", "job-1")]


def test_a_listener_whose_connection_drops_reconnects_and_hears_later_wakes(
    postgres_url: str,  # noqa: F811
    buses: list[PostgresWakeBus],
) -> None:
    import psycopg

    waiter = Waiter("job-7")
    listener, publisher = PostgresWakeBus(postgres_url), PostgresWakeBus(postgres_url)
    buses += [listener, publisher]
    listener.start(deliver_to(waiter, []))
    assert listener.listening.wait(10)
    pid = listener.listener_pid
    assert pid is not None

    with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server drops the listener's connection
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: listener.connections >= 2 and listener.listening.is_set())
    assert listener.listener_pid not in (None, pid)

    assert publisher.publish("krea", "job-7")
    assert waiter.event.wait(10)

    # the publisher's own connection dropping costs it nothing either: the next publish connects again
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            ("fluxroute-wake-publisher",),
        )
    waiter.event.clear()
    assert publisher.publish("krea", "job-7")
    assert waiter.event.wait(10)


def test_a_wake_is_handed_to_the_event_loop_the_bus_was_started_for(
    postgres_url: str,  # noqa: F811
    buses: list[PostgresWakeBus],
) -> None:
    async def main() -> tuple[int, int]:
        loop_thread = threading.get_ident()
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        bus = PostgresWakeBus(postgres_url)
        buses.append(bus)
        bus.start(lambda provider, job_id: got.set_result(threading.get_ident()), asyncio.get_running_loop())
        await asyncio.to_thread(bus.listening.wait, 10)
        assert await asyncio.to_thread(bus.publish, "fal", "req-1")
        return loop_thread, await asyncio.wait_for(got, 10)

    loop_thread, delivered_on = asyncio.run(main())
    assert delivered_on == loop_thread  # an asyncio Event may only be set from its loop's thread


def test_the_bus_follows_the_store_backend(postgres_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert isinstance(wake_bus(Settings(home=tmp_path)), LocalWakeBus)
    on_postgres = wake_bus(Settings(home=tmp_path, database_url=postgres_url))
    assert isinstance(on_postgres, PostgresWakeBus)
    on_postgres.stop()
    store = JobStore.connect(postgres_url)  # a store the caller opened, the settings naming none
    try:
        assert isinstance(wake_bus(Settings(home=tmp_path), store), PostgresWakeBus)
    finally:
        store.close()


def test_on_sqlite_publishing_is_a_harmless_no_op(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bus = wake_bus(Settings(home=tmp_path))
    delivered: list[tuple[str, str]] = []
    bus.start(lambda provider, job_id: delivered.append((provider, job_id)))
    assert bus.publish("krea", "job-1") is False
    bus.stop()
    assert delivered == []


async def test_a_webhook_received_by_one_replica_checks_the_job_at_the_replica_that_follows_it(
    hosted_settings: Settings,
    krea_fake: KreaFake,
    postgres_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two servers on one PostgreSQL store: replica A follows a Krea job, the webhook arrives at replica B; A checks
    the job at once instead of at its next scheduled poll (stretched here to a minute)."""
    for schedule in (PollSchedule, WindowSchedule):
        monkeypatch.setattr(schedule, "next_delay", lambda self, elapsed: 60.0)
    settings = Settings.model_validate({**hosted_settings.model_dump(), "database_url": postgres_url})
    krea_fake.manual = True
    router_a, router_b = Router(settings), Router(settings)
    try:
        async with serving(settings, router=router_a), serving(settings, router=router_b) as url_b:
            generation = asyncio.create_task(
                router_a.generate(ImageRequest.parse({"prompt": "a fox", "provider": "krea"}))
            )
            poller = router_a.provider("krea").poller  # type: ignore[attr-defined]
            while not krea_fake.jobs or krea_fake.jobs[0].id not in poller._paces:  # A waits on the job
                await asyncio.sleep(0.02)
            (job,) = krea_fake.jobs
            krea_fake.complete(job.id)
            async with httpx.AsyncClient(timeout=30) as http:
                answer = await http.post(f"{url_b}/webhooks/krea", content=json.dumps({"job_id": job.id}))
            assert answer.status_code == 200
            assert answer.json() == {"ok": True, "checking": False, "relayed": True}
            result = await asyncio.wait_for(generation, 15)  # long before the next scheduled poll
            assert result.images
    finally:
        await router_a.aclose()
        await router_b.aclose()
        router_a.store.close()
        router_b.store.close()
