"""`fluxroute generate` killed with SIGKILL at five moments of a job, on Krea and on fal; `fluxroute jobs resume`
(run twice) then collects every paid job, saved and billed once, and leaves nothing running.

The moments: during the submission (the provider created the job, its answer had not arrived), while the job
is queued, while it runs, while its image downloads, and while it is saved (that one is made to fail instead
of timed: the images directory is a file, so the first process exits with an error; the kill there is a
restart). Krea's submission is recovered through its job listing; fal has none, so its amount stays at risk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from fluxroute.store import AttemptRecord, JobStore
from tests.fakes.fal import FalFake
from tests.fakes.krea import KreaFake
from tests.fakes.service import FakeService

PROMPT = "a lighthouse at dusk"
MOMENTS = ("submit", "queued", "running", "download", "save")
OPEN_STATUSES = ("submitting", "in_flight")


@dataclass(frozen=True)
class Side:
    """How one provider's fake names the moments the test aims at."""

    accept_route: str  # the fake's route that creates a job
    first_status: str  # a manual job's status until the test moves it on
    running_status: str
    advances_to_run: int  # `fake.advance` calls from the first status to the running one
    status_route: str  # the route of the status checks the provider makes while following a job


SIDES = {
    "krea": Side("create", "queued", "processing", 2, "get_job"),  # queued -> scheduled -> processing
    "fal": Side("submit", "IN_QUEUE", "IN_PROGRESS", 1, "status"),
}


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Cross-process state can only be observed by looking again; bounded, never open-ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout} s")
        time.sleep(0.02)


class Cli:
    """Runs `python -m fluxroute` against one FLUXROUTE_HOME; kills whatever it started that is still running."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.home = Path(env["FLUXROUTE_HOME"])
        self.started: list[subprocess.Popen[str]] = []
        self.stores: list[JobStore] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "fluxroute", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        process = self.start(*args)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def store(self) -> JobStore:
        """The job store the processes write, once the first of them has created it."""
        path = self.home / "fluxroute.db"
        wait_until(path.exists, what="the store is created")
        self.stores.append(JobStore(path))
        return self.stores[-1]

    def close(self) -> None:
        for store in self.stores:
            store.close()
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def cli(tmp_path: Path, krea_fake: KreaFake, fal_fake: FalFake) -> Iterator[Cli]:
    config = tmp_path / "fluxroute.toml"
    # short pauses: the two listings that look for a lost submission, retries; a bounded wait for any job
    config.write_text(
        "reconcile_delay_s = 0.2\nretry_backoff_s = 0.05\nprovider_timeout_s = 20\ncancel_settle_s = 1\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "FLUXROUTE_HOME": str(tmp_path / "home"),
        "FLUXROUTE_CONFIG": str(config),
        "KREA_API_TOKEN": krea_fake.token,
        "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
        "FAL_KEY": fal_fake.key,
        "FLUXROUTE_FAL_BASE_URL": fal_fake.base_url,
    }
    runner = Cli(env)
    yield runner
    runner.close()


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL, "the process ended before it was killed"


def attempts(store: JobStore, status: str) -> list[AttemptRecord]:
    return store.submitting_attempts() if status == "submitting" else store.in_flight_attempts()


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("provider", sorted(SIDES))
def test_generation_killed_at_any_moment_is_collected_and_billed_once(
    provider: str, moment: str, cli: Cli, krea_fake: KreaFake, fal_fake: FalFake
) -> None:
    fake: FakeService = krea_fake if provider == "krea" else fal_fake
    side = SIDES[provider]
    fake.image_scale = 1 / 8
    fake.manual = True  # each job stays in its first status until the test moves it
    home = cli.home
    images = home / "images"
    if moment == "submit":
        # the provider creates the job, then its answer is held past the kill: no id reaches the store
        fake.faults.delay(5, route=side.accept_route, after_accept=True)
    if moment == "download":
        fake.faults.delay(5, route="download")
    if moment == "save":
        home.mkdir(parents=True)
        images.write_text("a file where the images directory should be", encoding="utf-8")

    first = cli.start("generate", PROMPT, "--model", "flux-dev", "--provider", provider, "--json")
    store = cli.store()
    opened = "submitting" if moment == "submit" else "in_flight"
    wait_until(lambda: fake.jobs and attempts(store, opened), what=f"a {opened} attempt and a provider job")
    assert len(fake.jobs) == 1
    job_id = fake.jobs[0].id
    assert fake.job(job_id).status == side.first_status
    (attempt,) = attempts(store, opened)

    if moment == "submit":
        assert attempt.provider_job_id is None
        kill(first)
        fake.complete(job_id)  # the provider runs the job it accepted, and bills it
    elif moment == "queued":
        kill(first)
        fake.complete(job_id)
    elif moment == "running":
        for _ in range(side.advances_to_run):
            fake.advance(job_id)
        assert fake.job(job_id).status == side.running_status
        checks = fake.request_counts[side.status_route]
        wait_until(lambda: fake.request_counts[side.status_route] > checks, what="a status check while running")
        assert fake.job(job_id).status == side.running_status
        kill(first)
        fake.complete(job_id)
    elif moment == "download":
        fake.complete(job_id)
        wait_until(lambda: fake.request_counts["download"] >= 1, what="the image download starts")
        kill(first)
        assert store.total_charged() == 0, "killed before the charge was booked"
    else:  # save: the images were paid for and cannot be written; the process ends with an error
        fake.complete(job_id)
        out, err = first.communicate(timeout=30)
        assert first.returncode == 5, (out, err)
        assert "could not be saved" in err
        failed = store.get_job(attempt.job_id)
        assert failed.status == "failed" and failed.error is not None and "could not be saved" in failed.error
        assert store.total_charged() == fake.billed > 0, "billed before saving, once"
        (still,) = store.in_flight_attempts()
        assert still.id == attempt.id, "the attempt stays in flight for `jobs resume`"
        assert not store.at_risk(), "the charge is booked: nothing is at risk"
        images.unlink()

    assert len(fake.charges) == 1, "the provider billed exactly one job"
    resumed = cli.run("jobs", "resume")
    again = cli.run("jobs", "resume")
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert again.stdout.startswith("nothing in flight")

    job = store.get_job(attempt.job_id)
    assert all(j.status != "running" for j in store.list_jobs()), "no job is left running"
    assert len(fake.jobs) == 1, "the job was never submitted twice"

    if provider == "fal" and moment == "submit":
        # no listing to find the job by: the estimate stays counted as at risk, nothing is charged
        assert job.status == "failed" and job.error is not None and "may still be billed" in job.error
        ((held, amount),) = store.at_risk()
        assert held.id == attempt.id and held.status == "submitting"
        assert amount == attempt.estimated_cost > 0
        assert store.total_charged() == 0
        assert store.total_charged() + amount >= fal_fake.billed
        assert store.spend_summary().at_risk_today == amount
        for output in (resumed.stdout, again.stdout, cli.run("jobs").stdout):
            assert "at risk: 1 job(s)" in output
            assert f"{job.id}  ${amount} at risk: fal may have accepted it" in output
        return

    assert resumed.stdout.startswith(f"{provider} ") and "(flux-dev): $" in resumed.stdout, resumed.stdout
    assert again.stdout.strip() == "nothing in flight", "nothing is left to do, nothing at risk"
    assert job.status == "succeeded" and job.result is not None, job.error
    listed = job.result["images"]
    assert isinstance(listed, list)
    saved = [Path(str(image["path"])) for image in listed]
    assert saved and all(path.is_file() and path.parent == images.resolve() for path in saved)
    assert store.total_charged() == fake.billed > 0
    assert store.spend_summary().charges == 1
    assert not store.at_risk() and not store.submitting_attempts() and not store.in_flight_attempts()
    (final,) = store.attempts_for(job.id)
    assert final.status == "succeeded" and final.provider_job_id == job_id and final.cost == fake.billed
    if moment == "submit":
        assert final.detail is not None and final.detail.get("adopted_from_listing") is True
    assert store.spend_summary().at_risk_today == Decimal(0)
