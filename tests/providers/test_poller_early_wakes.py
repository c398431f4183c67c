"""A webhook can come before its job is followed here (a fast job ends before its submission is even recorded):
the poller remembers the job id a while, bounded, and the job's first pause then ends at once."""

from __future__ import annotations

import time

import pytest

from fluxroute.providers import polling
from fluxroute.providers.polling import Poller


async def test_a_webhook_before_the_job_is_followed_ends_its_first_pause_at_once() -> None:
    poller = Poller("krea")
    assert poller.notify("job-1") is False  # nobody follows it yet: remembered
    with poller.follow("job-1", 30.0, timeout_s=60) as pace:
        started = time.monotonic()
        await pace.wakeup.wait(5.0)
        assert time.monotonic() - started < 0.5
    # remembered once: a later follow of the same id waits its schedule again
    with poller.follow("job-1", 30.0, timeout_s=60) as pace:
        started = time.monotonic()
        await pace.wakeup.wait(0.2)
        assert time.monotonic() - started >= 0.19


async def test_early_wakes_expire_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    poller = Poller("fal")
    clock = [1000.0]
    monkeypatch.setattr(polling.time, "monotonic", lambda: clock[0])
    poller.notify("old")
    clock[0] += polling.EARLY_WAKE_TTL_S + 1
    with poller.follow("old", 30.0, timeout_s=60) as pace:
        assert not pace.wakeup._event.is_set()  # expired: no early check
    for i in range(polling.EARLY_WAKES + 50):
        poller.notify(f"job-{i}")
    assert len(poller._early) <= polling.EARLY_WAKES
    with poller.follow(f"job-{polling.EARLY_WAKES + 49}", 30.0, timeout_s=60) as pace:
        assert pace.wakeup._event.is_set()  # the newest is kept
