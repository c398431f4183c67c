"""Every fault kind × both providers × every moment of a job, one cell at a time, then `jobs resume`.

Kinds: a 5xx, a 429 with Retry-After, a dropped connection, a garbled body. Moments: before the provider
accepts the submission, in its answer to an accepted submission (a 429 there would contradict both APIs,
whose 429 means "not accepted", so that cell is left out), while the job is queued, while it runs, after it
completed (Krea's status, fal's result), while its image downloads; and a local disk fault while the result
is saved. The fakes run on timed phases, long only for the phase a cell aims at, and each cell checks from
the fake's request log that its fault struck inside that phase.

For each cell: the fault fired; at every request a provider saw and every moment it billed, charges + amounts
at risk covered what it had billed; after the call and after resume no reservation is left open, the ledger's
charges equal what the fake billed, no request is paid twice, nothing is left running; and the caller's error
names the provider and, when money may be owed, says so.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.errors import FluxrouteError, PaymentAtRisk, ResultNotSaved
from fluxroute.router import Router
from fluxroute.settings import Settings
from fluxroute.store import JobStore
from fluxroute.types import GenerationResult, ImageRequest
from tests.fakes.fal import FalFake
from tests.fakes.faults import Fault, Faults
from tests.fakes.jobs import Job
from tests.fakes.krea import KreaFake
from tests.fakes.service import FakeService

KINDS = ("5xx", "429", "dropped", "garbled")
MOMENTS = ("before acceptance", "submit answer", "queued", "running", "completed", "download")
TRUNCATED_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-truncated"
LONG = 0.4  # seconds the aimed-at phase lasts; the others pass in 10 ms


@dataclass(frozen=True)
class Side:
    """One provider's fake: its route names, and the phase names of a job queued and running."""

    submit: str
    status: str
    after_completion: str
    queued: tuple[str, ...]
    running: tuple[str, ...]


SIDES = {
    "krea": Side("create", "get_job", "get_job", ("queued", "scheduled"), ("processing", "sampling")),
    "fal": Side("submit", "status", "result", ("IN_QUEUE",), ("IN_PROGRESS",)),
}
CELLS = [
    (provider, moment, kind)
    for provider in SIDES
    for moment in MOMENTS
    for kind in KINDS
    if not (moment == "submit answer" and kind == "429")
] + [(provider, "save", "disk") for provider in SIDES]


def arm(faults: Faults, kind: str, route: str, *, after_accept: bool = False) -> Fault:
    if kind == "5xx":
        return faults.http_error(503 if route == "download" else 500, route=route, after_accept=after_accept)
    if kind == "429":
        return faults.http_error(429, headers={"Retry-After": "0"}, route=route)
    if kind == "dropped":
        return faults.drop(route=route, after_accept=after_accept)
    body = TRUNCATED_PNG if route == "download" else b'{"status": "'
    return faults.garble(route=route, after_accept=after_accept, body=body)


def shape_phases(fake: FakeService, provider: str, moment: str) -> tuple[str, ...]:
    """Make the phase the cell aims at last LONG (the rest 10 ms); the names of that phase."""
    aimed = {"queued": SIDES[provider].queued, "running": SIDES[provider].running}.get(moment, ())
    timings: dict[str, float] = fake.timings  # type: ignore[attr-defined]
    for name in timings:
        timings[name] = LONG / len(aimed) if name in aimed else 0.01
    return aimed


def arm_during(fake: FakeService, route: str, phases: tuple[str, ...], arm_it: Callable[[], Fault]) -> list[Fault]:
    """Arm the fault when a request on `route` arrives while the job is in one of `phases` (none named: once it
    ended), so that this very request meets it. The list holds the fault once armed."""
    armed: list[Fault] = []

    def observer(event: str) -> None:
        jobs = fake.jobs
        if armed or event != route or not jobs:
            return
        if (jobs[0].phase in phases) if phases else jobs[0].terminal:
            armed.append(arm_it())

    fake.observers.append(observer)
    return armed


def struck_in(fake: FakeService, job: Job, route: str, phases: tuple[str, ...]) -> bool:
    """Whether a faulted request on `route` arrived while `job` was in one of `phases` (or, with no phases
    named, after it ended)."""
    history = [*job.history, ("end", float("inf"))]
    for record in fake.request_log:
        if record.route != route or record.fault is None:
            continue
        if not phases:
            return job.finished_at is not None and record.at >= job.finished_at
        for (status, start), (_, end) in itertools.pairwise(history):
            if status in phases and start <= record.at < end:
                return True
    return False


class MoneyWatch:
    """Checks, on the fake's thread at every request it sees and every time it bills, that the ledger's
    charges plus the amounts at risk cover all it has billed; keeps what broke."""

    def __init__(self, store: JobStore, fakes: list[FakeService]) -> None:
        self.store, self.fakes = store, fakes
        self.checks = 0
        self.broken: list[str] = []
        for fake in fakes:
            fake.observers.append(self.check)

    def check(self, event: str) -> None:
        billed = sum((fake.billed for fake in self.fakes), Decimal("0"))
        summary = self.store.spend_summary()
        self.checks += 1
        if summary.spent_today + summary.at_risk_today < billed:
            self.broken.append(
                f"at {event}: charged {summary.spent_today} + at risk {summary.at_risk_today} < {billed}"
            )


@pytest.mark.parametrize(("provider", "moment", "kind"), CELLS, ids=[" ".join(cell) for cell in CELLS])
async def test_fault_cell(
    hosted_settings: Settings, krea_fake: KreaFake, fal_fake: FalFake, provider: str, moment: str, kind: str
) -> None:
    fake: FakeService = krea_fake if provider == "krea" else fal_fake
    side = SIDES[provider]
    phases = shape_phases(fake, provider, moment)
    if moment == "save":  # the images directory is a file: the first save fails, resume saves again
        hosted_settings.images_dir.parent.mkdir(parents=True, exist_ok=True)
        hosted_settings.images_dir.write_text("not a directory")
        armed = []
    else:
        route = {
            "before acceptance": side.submit,
            "submit answer": side.submit,
            "queued": side.status,
            "running": side.status,
            "completed": side.after_completion,
            "download": "download",
        }[moment]

        def arm_it() -> Fault:
            return arm(fake.faults, kind, route, after_accept=moment == "submit answer")

        armed = arm_during(fake, route, phases, arm_it) if moment in ("queued", "running", "completed") else [arm_it()]
    router = Router(hosted_settings)
    watch = MoneyWatch(router.store, [krea_fake, fal_fake])
    request = ImageRequest(prompt=f"a lighthouse at dusk, {moment}, {kind}", model="flux-dev", provider=provider)
    try:
        outcome: GenerationResult | FluxrouteError
        try:
            outcome = await router.generate(request)
        except FluxrouteError as exc:
            outcome = exc
        after_call = router.store.spend_summary()
        assert after_call.reserved_today == 0, "a reservation was left open after the call"
        # resume as `fluxroute jobs resume` would, once the provider has finished what it accepted
        fake.faults.clear()
        if moment == "save":
            hosted_settings.images_dir.unlink()
        for job in fake.jobs:
            await until_terminal(fake, job)
        resumed = await router.resume_in_flight()
    finally:
        await router.aclose()

    # the fault fired, at the moment the cell aims at
    if moment != "save":
        assert armed and armed[0].hits >= 1, f"{kind} on {route} never fired"
        if moment in ("queued", "running", "completed"):
            assert struck_in(fake, fake.jobs[0], route, phases), f"the fault did not strike while {moment}"
    store = router.store
    jobs = store.list_jobs(limit=10)
    attempts = [a for job in jobs for a in store.attempts_for(job.id)]
    held = {(a.provider, a.provider_job_id): a for a in attempts if a.provider_job_id}
    billed = [(name, job) for name, f in (("krea", krea_fake), ("fal", fal_fake)) for job in f.jobs if job.billed]
    known = [(name, job) for name, job in billed if (name, job.id) in held]
    at_risk = sum((amount for _, amount in store.at_risk()), Decimal("0"))

    assert watch.checks > 0 and watch.broken == [], watch.broken
    total_billed = krea_fake.billed + fal_fake.billed
    assert store.total_charged() + at_risk >= total_billed
    assert store.total_charged() == sum((job.billed for _, job in known), Decimal("0"))  # ledger = billed
    assert len(billed) <= 1, f"paid twice: {billed}"
    assert store.spend_summary().reserved_today == 0, "a reservation leaked"
    for name, job in known:  # no paid result lost
        stored = store.get_job(held[(name, job.id)].job_id)
        assert stored.status == "succeeded" and stored.result is not None
        assert all(Path(str(image["path"])).is_file() for image in stored.result["images"])  # type: ignore[index]
    # nothing left running unless resume is still to collect it (an answer fal never gave: no listing)
    for job in jobs:
        assert job.status in ("succeeded", "failed", "cancelled") or store.at_risk(job.id), job
    print(
        f"{provider} | {moment} | {kind} | fired {sum(f.hits for f in armed)} | "
        f"{type(outcome).__name__} | billed {total_billed} | charged {store.total_charged()} | "
        f"resumed {len(resumed)} | checks {watch.checks}"
    )
    # what the caller saw
    if isinstance(outcome, GenerationResult):
        assert Decimal(str(outcome.cost_usd)) == total_billed
    else:
        message = str(outcome)
        assert provider in message and "Traceback" not in message, message
        if isinstance(outcome, PaymentAtRisk):
            assert "may still be billed" in message
        elif isinstance(outcome, ResultNotSaved):
            assert "could not be saved" in message and any(isinstance(r, GenerationResult) for r in resumed)
        else:
            assert at_risk == 0 and total_billed == 0, f"{type(outcome).__name__} hid money at stake: {message}"


async def until_terminal(fake: FakeService, job: Job, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not fake.job(job.id).terminal:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{job.id} still {job.status}")
        await asyncio.sleep(0.01)


def test_the_matrix_has_every_cell() -> None:
    assert len(CELLS) == 2 * (len(KINDS) * len(MOMENTS) - 1) + 2 == 48
    assert {moment for _, moment, _ in CELLS} == {*MOMENTS, "save"}
