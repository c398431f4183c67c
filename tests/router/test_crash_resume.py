"""A generation killed with SIGKILL after the provider accepted its job is resumed: saved and billed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from fluxroute.settings import Settings
from fluxroute.store import JobStore
from tests.fakes.krea import KreaFake


def wait_until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Cross-process state can only be observed by looking again; bounded, never open-ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def fluxroute(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fluxroute", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def krea_env(krea_fake: KreaFake, home: Path) -> dict[str, str]:
    """`fluxroute` run by a person with a Krea key only (the Krea fake's), home under `home`, no config file."""
    env = {k: v for k, v in os.environ.items() if k != "FAL_KEY"}
    return env | {
        "FLUXROUTE_HOME": str(home),
        "FLUXROUTE_CONFIG": "none",
        "KREA_API_TOKEN": krea_fake.token,
        "FLUXROUTE_KREA_BASE_URL": krea_fake.base_url,
    }


def test_killed_generation_is_resumed_saved_and_billed_once(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    home = tmp_path / "crash-home"
    env = krea_env(krea_fake, home)
    krea_fake.manual = True  # the job stays in flight until the test completes it

    first = fluxroute(env, "generate", "a lighthouse at dusk", "--model", "flux-dev", "--json")
    store_file = home / "fluxroute.db"
    wait_until(lambda: store_file.exists() and bool(JobStore(store_file).in_flight_attempts()))
    assert len(krea_fake.jobs) == 1
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    job_id = krea_fake.jobs[0].id
    attempt = JobStore(store_file).in_flight_attempts()[0]
    assert attempt.provider_job_id == job_id
    krea_fake.complete(job_id)

    resumed = fluxroute(env, "jobs", "resume")
    out, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 0, err
    assert "krea flux-1-dev (flux-dev)" in out

    again = fluxroute(env, "jobs", "resume")
    out_again, _ = again.communicate(timeout=30)
    assert "nothing in flight" in out_again

    store = JobStore(store_file)
    job = store.get_job(attempt.job_id)
    assert job.status == "succeeded" and job.result is not None
    saved = [Path(str(image["path"])) for image in job.result["images"]]  # type: ignore[index, union-attr]
    assert saved and all(path.is_file() for path in saved)
    assert store.total_charged() == krea_fake.billed == Decimal("0.007")
    assert len(krea_fake.jobs) == 1, "the job was never submitted twice"
    listing = json.loads(
        subprocess.run(
            [sys.executable, "-m", "fluxroute", "spend", "--json"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert listing["spent_total"] == "0.007"


def test_resume_leaves_a_job_that_a_live_process_follows_and_takes_it_once_let_go(
    hosted_settings: Settings, krea_fake: KreaFake, tmp_path: Path
) -> None:
    """`jobs resume` (or a server starting) beside a live `generate` must not follow the same job: two
    followers would save the image twice, and a Ctrl-C on one would cancel the other's job."""
    home = tmp_path / "live-home"
    env = krea_env(krea_fake, home)
    krea_fake.manual = True
    first = fluxroute(env, "generate", "a lighthouse at dusk", "--model", "flux-dev", "--json")
    store_file = home / "fluxroute.db"
    wait_until(lambda: store_file.exists() and bool(JobStore(store_file).in_flight_attempts()))
    [attempt] = JobStore(store_file).in_flight_attempts()

    beside = fluxroute(env, "jobs", "resume")
    out, err = beside.communicate(timeout=30)
    assert beside.returncode == 0, err
    assert "nothing in flight" in out  # the live process's job is not taken

    krea_fake.complete(krea_fake.jobs[0].id)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    store = JobStore(store_file)
    result = store.get_job(attempt.job_id).result
    assert result is not None and len(result["images"]) == 1  # type: ignore[arg-type]
    assert len(list((home / "images").glob("*.png"))) == 1, "saved once, by the process that followed it"
    assert store.total_charged() == krea_fake.billed == Decimal("0.007")
